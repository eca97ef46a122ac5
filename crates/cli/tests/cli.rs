//! The `ferry` binary end to end on real files: the quickstart, poison rows, dry runs, and `kill -9` at
//! random instants of large syncs.

#[path = "support/orders_csv.rs"]
mod support;

use ferry_model::Stream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ferry() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_CONFIG").env("FERRY_LOG", "error");
    c
}

fn run(config: &Path, args: &[&str]) -> Output {
    let out = ferry().arg("--config").arg(config).args(args).output().expect("run ferry");
    eprintln!("$ ferry {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_report(config: &Path, args: &[&str]) -> (serde_json::Value, i32) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(config, &all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    (v, out.status.code().unwrap_or(-1))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root().join("examples/quickstart"), dir.path());
    let config = dir.path().join("ferry.toml");
    (dir, config)
}

fn counts(report: &serde_json::Value) -> (u64, u64, u64, u64) {
    let c = &report["counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    (n("created"), n("updated"), n("unchanged"), n("failed"))
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn quickstart_first_run_creates_second_writes_nothing_one_price_change_writes_one() {
    let (dir, config) = quickstart();
    let (first, code) = json_report(&config, &["sync", "products"]);
    assert_eq!(code, 0);
    let (created, _, _, failed) = counts(&first);
    assert!(created >= 10 && failed == 0, "{first}");

    let (second, code) = json_report(&config, &["sync", "products"]);
    assert_eq!(code, 0);
    assert_eq!(counts(&second), (0, 0, created, 0), "an unchanged re-sync writes nothing");
    let shop = dir.path().join("shop/products.jsonl");
    let lines_before = std::fs::read_to_string(&shop).unwrap().lines().count();

    replace_in(&dir.path().join("erp/products.csv"), ";49,95;", ";52,50;");
    let (third, code) = json_report(&config, &["sync", "products"]);
    assert_eq!(code, 0);
    assert_eq!(counts(&third), (0, 1, created - 1, 0));
    assert_eq!(std::fs::read_to_string(&shop).unwrap().lines().count(), lines_before + 1, "exactly one record written");
}

#[test]
fn a_bad_row_fails_alone_with_record_and_field_named_and_exit_code_2() {
    let (dir, config) = quickstart();
    replace_in(&dir.path().join("erp/products.csv"), ";49,95;", ";49,9x5;");
    let out = run(&config, &["sync", "products"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains("1 failed"), "{text}");
    assert!(text.contains("price.amount"), "the field is named: {text}");
    let (list, _) = json_report(&config, &["failures", "list"]);
    let failure = &list[0];
    assert_eq!(failure["field"], "price.amount");
    assert!(failure["key"].as_str().unwrap().len() > 1, "the record is named");
    let materialized = ferry_connectors::jsonl::materialize(&dir.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert!(materialized.len() >= 9, "the rest of the batch went through");

    // fix the row: the failure heals on the next run
    replace_in(&dir.path().join("erp/products.csv"), ";49,9x5;", ";49,95;");
    let (report, code) = json_report(&config, &["sync", "products"]);
    assert_eq!((code, counts(&report).0), (0, 1));
    let (list, _) = json_report(&config, &["failures", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn dry_run_shows_the_field_diff_and_writes_nothing() {
    let (dir, config) = quickstart();
    run(&config, &["sync", "products"]);
    replace_in(&dir.path().join("erp/products.csv"), ";49,95;", ";52,50;");
    let shop = dir.path().join("shop/products.jsonl");
    let before = std::fs::read(&shop).unwrap();
    let out = run(&config, &["sync", "products", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("1 would be updated"), "{text}");
    assert!(text.contains("price.amount: \"49.95\" → \"52.5\""), "{text}");
    assert_eq!(std::fs::read(&shop).unwrap(), before, "dry run wrote nothing");
}

#[test]
fn the_published_schema_is_current() {
    let out = ferry().arg("schema").output().unwrap();
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("docs/model.schema.json")).unwrap()).unwrap();
    assert_eq!(generated, published, "run `ferry schema > docs/model.schema.json`");
}

#[test]
fn init_writes_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    let out = ferry().args(["init"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let config = ferry_engine::Config::load(&path).unwrap();
    assert!(config.flows.contains_key("products"));
    let again = ferry().args(["init"]).arg(&path).output().unwrap();
    assert!(!again.status.success(), "does not overwrite without --force");
}

/// Runs ferry and kills it with SIGKILL after `after`; true when it was still running (killed mid-run).
fn kill_during(config: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = ferry()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    running
}

const BIG_CONFIG: &str = r#"
[state]
path = "state.db"
[connections.erp]
type = "csv"
path = "erp"
[connections.shop]
type = "jsonl"
path = "shop"
fsync = false
[flows.products]
source = "erp"
target = "shop"
stream = "products"
batch_size = 200
[flows.products.mapping]
set = { "price.currency" = "AUD", "price.tax_inclusive" = true }
"#;

fn big_catalogue(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("erp")).unwrap();
    let mut csv = String::from("sku,name,price.amount,brand\n");
    for i in 0..n {
        csv.push_str(&format!("SKU{i:06},Product {i},{}.{:02},Brand {}\n", 1 + i % 300, i % 100, i % 7));
    }
    std::fs::write(dir.join("erp/products.csv"), csv).unwrap();
    std::fs::write(dir.join("ferry.toml"), BIG_CONFIG).unwrap();
    dir.join("ferry.toml")
}

#[test]
fn kill_9_in_the_middle_of_a_large_sync_then_rerun_equals_a_clean_sync() {
    const N: usize = 40_000;
    let clean = tempfile::tempdir().unwrap();
    let clean_config = big_catalogue(clean.path(), N);
    assert_eq!(run(&clean_config, &["sync", "products"]).status.code(), Some(0));

    let crashed = tempfile::tempdir().unwrap();
    let config = big_catalogue(crashed.path(), N);
    let mut killed_mid_run = 0;
    for delay_ms in [150, 400, 700, 1100] {
        killed_mid_run += kill_during(&config, &["sync", "products"], Duration::from_millis(delay_ms)) as u32;
    }
    assert!(killed_mid_run > 0, "at least one kill landed mid-run");
    let (report, code) = json_report(&config, &["sync", "products"]);
    assert_eq!(code, 0, "{report}");

    let a = ferry_connectors::jsonl::materialize(&clean.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    let b = ferry_connectors::jsonl::materialize(&crashed.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(a.len(), N);
    assert!(a == b, "the target after kills + rerun equals a clean sync");
    let (again, _) = json_report(&config, &["sync", "products"]);
    assert_eq!(counts(&again), (0, 0, N as u64, 0), "and its state agrees: nothing left to write");
}

#[test]
fn kill_9_during_an_order_import_never_delivers_an_order_twice() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    let mut orders = String::new();
    for i in 0..N {
        let o = serde_json::json!({
            "number": format!("WEB-{i:05}"), "placed_at": "2026-11-20T10:00:00Z", "currency": "AUD",
            "prices_include_tax": true, "customer": {"email": format!("buyer{i}@example.com")},
            "lines": [{"sku": "A", "quantity": "2", "unit_price": "5.50", "total": "11"},
                      {"sku": "B", "quantity": "1", "unit_price": "20", "total": "20"}],
            "totals": {"subtotal": "31", "tax": "2.82", "total": "31"}});
        orders.push_str(&o.to_string());
        orders.push('\n');
    }
    std::fs::write(dir.path().join("shop/orders.jsonl"), orders).unwrap();
    std::fs::write(
        dir.path().join("ferry.toml"),
        r#"
[state]
path = "state.db"
[connections.shop]
type = "jsonl"
path = "shop"
[connections.erp]
type = "csv"
path = "erp"
fsync = false
[flows.orders]
source = "shop"
target = "erp"
stream = "orders"
batch_size = 50
"#,
    )
    .unwrap();
    let config = dir.path().join("ferry.toml");
    let mut killed_mid_run = 0;
    for delay_ms in [120, 300, 500, 800] {
        killed_mid_run += kill_during(&config, &["sync", "orders"], Duration::from_millis(delay_ms)) as u32;
    }
    assert!(killed_mid_run > 0, "at least one kill landed mid-run");
    let (report, code) = json_report(&config, &["sync", "orders"]);
    assert_eq!(code, 0, "{report}");

    let lines = support::assert_each_order_line_once(&dir.path().join("erp/orders.csv"));
    assert_eq!(lines, 2 * N, "every line of every order arrived exactly once");
}

#[test]
fn prune_forgets_old_runs_and_compacts_the_jsonl_shop_and_a_dry_run_changes_nothing() {
    let (dir, config) = quickstart();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[retention]\nruns_keep = 1\n");
    std::fs::write(&config, text).unwrap();
    assert_eq!(json_report(&config, &["sync", "products"]).1, 0);
    replace_in(&dir.path().join("erp/products.csv"), ";49,95;", ";52,50;");
    assert_eq!(json_report(&config, &["sync", "products"]).1, 0);
    let shop = dir.path().join("shop/products.jsonl");
    let before = std::fs::read_to_string(&shop).unwrap();
    let products = before.lines().count() - 1; // one product was written twice

    let (dry, code) = json_report(&config, &["prune", "--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!((dry["dry_run"].as_bool(), dry["runs"].as_u64()), (Some(true), Some(1)), "{dry}");
    let compacted = dry["compacted"].as_array().unwrap();
    assert_eq!(compacted.len(), 1, "only the products file exists: {dry}");
    assert_eq!((compacted[0]["lines_before"].as_u64(), compacted[0]["lines_after"].as_u64()), (Some(products as u64 + 1), Some(products as u64)));
    assert_eq!(std::fs::read_to_string(&shop).unwrap(), before, "a dry run rewrites nothing");
    let (status, _) = json_report(&config, &["status", "products"]);
    assert_eq!(status[0]["runs"].as_array().unwrap().len(), 2, "a dry run removes nothing");

    let out = run(&config, &["prune"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("removed 1 run(s)"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("{} → {products} lines", products + 1)), "{}", stdout(&out));
    let after = std::fs::read_to_string(&shop).unwrap();
    assert_eq!(after.lines().count(), products);
    assert_eq!(after.matches("\"SPD-1001\"").count(), 1);
    assert!(after.contains("\"52.5\""), "the latest price stays");
    let (status, _) = json_report(&config, &["status", "products"]);
    assert_eq!(status[0]["runs"].as_array().unwrap().len(), 1, "the newest run stays");
    // the compacted shop is still the flow's target: nothing to write, nothing duplicated
    let (again, code) = json_report(&config, &["sync", "products"]);
    assert_eq!((code, counts(&again).0 + counts(&again).1), (0, 0), "{again}");
}

/// `--key` names the canonical key (after the mapping). The defect: the quickstart's mapping renames
/// `ItemCode` to `sku`, and `ferry sync products --key SPD-1001` wrote all 21 products.
#[test]
fn key_selects_the_canonical_key_the_mapping_makes_for_dry_runs_too() {
    let (dir, config) = quickstart();
    let (dry, code) = json_report(&config, &["sync", "products", "--key", "SPD-1001", "--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    let planned: Vec<&str> = dry["planned"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(planned, ["SPD-1001"], "{dry}");
    let (report, code) = json_report(&config, &["sync", "products", "--key", "SPD-1001"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(counts(&report), (1, 0, 0, 0), "{report}");
    let shop = ferry_connectors::jsonl::materialize(&dir.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(shop.keys().collect::<Vec<_>>(), ["SPD-1001"]);
}

/// The defect: a header-only customers export deleted all 10 customers with `on_missing = "delete"` and
/// exit code 0. Now the run stops (exit 1) naming the file, and retires nothing.
#[test]
fn a_header_only_export_retires_nothing_and_exits_1_naming_the_file() {
    let (dir, config) = quickstart();
    replace_in(&config, "[flows.customers]\nsource = \"erp\"", "[flows.customers]\non_missing = \"delete\"\nsource = \"erp\"");
    let (first, code) = json_report(&config, &["sync", "customers"]);
    assert_eq!(code, 0, "{first}");
    let synced = counts(&first).0;
    assert!(synced >= 2, "{first}");
    let export = dir.path().join("erp/customers.csv");
    let header = std::fs::read_to_string(&export).unwrap().lines().next().unwrap().to_owned();
    std::fs::write(&export, format!("{header}\n")).unwrap();

    let (report, code) = json_report(&config, &["sync", "customers"]);
    assert_eq!(code, 1, "{report}");
    let aborted = report["aborted"].as_str().unwrap();
    assert!(aborted.contains("customers.csv") && aborted.contains("--allow-empty-source"), "{aborted}");
    assert_eq!(report["counts"]["retired"], 0);
    let shop = ferry_connectors::jsonl::materialize(&dir.path().join("shop/customers.jsonl"), Stream::Customers).unwrap();
    assert_eq!(shop.len() as u64, synced, "every customer is still in the shop");

    // Allowed explicitly (and past the share, which an empty export always exceeds): retired.
    let (report, code) = json_report(&config, &["sync", "customers", "--allow-empty-source", "--force-retire"]);
    assert_eq!((code, report["counts"]["retired"].as_u64()), (0, Some(synced)), "{report}");
}

/// A run killed with -9 does not stay "running": `ferry status` shows it interrupted.
#[test]
fn a_killed_run_shows_as_interrupted_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = big_catalogue(dir.path(), 40_000);
    let mut killed = 0;
    // Early enough that a kill lands mid-run on a fast, idle machine (40,000 records sync in under 1 s).
    for delay_ms in [100, 250, 500] {
        killed += kill_during(&config, &["sync", "products"], Duration::from_millis(delay_ms)) as u32;
    }
    assert!(killed > 0, "at least one kill landed mid-run");
    let (status, code) = json_report(&config, &["status"]);
    assert_eq!(code, 0);
    let runs = status[0]["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["status"] != "running"), "{status}");
    let interrupted: Vec<_> = runs.iter().filter(|r| r["status"] == "interrupted").collect();
    assert!(!interrupted.is_empty(), "{status}");
    // A run killed last is found by `status` (its process no longer exists); one killed earlier was found by
    // the next run, which took its flow's lease over. Either way the error says what happened.
    for run in &interrupted {
        let error = run["error"].as_str().unwrap();
        assert!(error.contains("stopped without finishing (killed?)"), "{status}");
        assert!(error.contains("no longer exists") || error.contains("lease passed to"), "{status}");
    }
    let text = stdout(&run(&config, &["status"]));
    assert!(text.contains("interrupted"), "{text}");
}

/// A folder with `erp/` (CSV, the given files) and `shop/` (JSONL) and a config with one flow per
/// `(name, stream, extra flow lines)`.
fn small_setup(files: &[(&str, &str)], flows: &[(&str, &str, &str)], csv_options: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("erp").join(name), text).unwrap();
    }
    let mut config = format!("[connections.erp]\ntype = \"csv\"\npath = \"erp\"\n{csv_options}\n[connections.shop]\ntype = \"jsonl\"\npath = \"shop\"\n");
    for (name, stream, extra) in flows {
        config.push_str(&format!("[flows.{name}]\nsource = \"erp\"\ntarget = \"shop\"\nstream = \"{stream}\"\n{extra}\n"));
    }
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_issues_mixed_line_ending_file_parks_three_failures_with_their_own_lines_and_payloads() {
    let (_dir, config) = small_setup(&[("products.csv", "sku,name\r\n,bad1\n,bad2\r\n,bad3\r\n")], &[("products", "products", "")], "");
    let (report, code) = json_report(&config, &["sync", "products"]);
    assert_eq!((code, report["counts"]["failed"].as_u64()), (2, Some(3)));
    let (list, _) = json_report(&config, &["failures", "list"]);
    let mut seen: Vec<(String, String, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let field = f["field"].as_str().unwrap_or("null").to_owned();
            (f["position"].as_str().unwrap().to_owned(), f["source"]["name"].as_str().unwrap().to_owned(), field, f["attempts"].as_u64().unwrap())
        })
        .collect();
    seen.sort();
    let want = |line: u32, name: &str| (format!("products.csv line {line}"), name.to_owned(), "sku".to_owned(), 1);
    assert_eq!(seen, [want(2, "bad1"), want(3, "bad2"), want(4, "bad3")]);
}

#[test]
fn exit_codes_are_distinct_and_usage_errors_are_64() {
    let (_dir, config) = small_setup(&[], &[], "");
    assert_eq!(run(&config, &["--no-such-flag"]).status.code(), Some(64));
    assert_eq!(run(&config, &["sync", "--all", "extra"]).status.code(), Some(64));
    assert_eq!(run(&config, &["--help"]).status.code(), Some(0));
    assert_eq!(run(&config, &["schedule", "x", "--count", "0"]).status.code(), Some(64));
    // An empty config: `sync --all` says there is nothing to sync instead of exiting 0 silently.
    let out = run(&config, &["sync", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to sync") && stderr(&out).contains("no enabled flows"), "{}", stderr(&out));
}

#[test]
fn each_cause_is_printed_once_and_logs_have_no_colour_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&dir.path().join("missing.toml"), &["status"]);
    let err = stderr(&out);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.starts_with("error: cannot read config") && !err.contains("error: :"), "{err}");
    // A bad config names its problem once, without an empty prefix.
    std::fs::write(dir.path().join("bad.toml"), "[flows.x]\nsource = 1\n").unwrap();
    let err = stderr(&run(&dir.path().join("bad.toml"), &["status"]));
    assert!(err.starts_with("error: config ") && !err.contains(": :"), "{err}");

    // Warnings logged on stderr (a pipe here) carry no ANSI escapes, with or without NO_COLOR.
    let (_dir, config) = small_setup(&[("products.csv", "sku,name\n,bad\n")], &[("products", "products", "")], "");
    for no_color in [None, Some("1")] {
        let mut cmd = ferry();
        cmd.env("FERRY_LOG", "warn").arg("--config").arg(&config).args(["sync", "products"]);
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert!(err.contains("record failed") && !err.contains('\u{1b}'), "{err:?}");
    }
}

#[test]
fn describe_lists_every_type_and_json_means_json() {
    let (_dir, config) = small_setup(&[], &[], "");
    let text = stdout(&run(&config, &["describe"]));
    for name in ["csv", "jsonl", "tryton", "vendure", "shopify", "medusa", "sql", "api"] {
        assert!(text.lines().any(|l| l.starts_with(&format!("{name}: "))), "{name} missing: {text}");
    }
    let (list, code) = json_report(&config, &["describe"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["csv", "jsonl", "tryton", "vendure", "shopify", "medusa", "sql", "api"]);
    let (one, _) = json_report(&config, &["describe", "api"]);
    assert_eq!(one[0]["name"], "api");
    let (check, code) = json_report(&config, &["check"]);
    assert_eq!((code, check["ok"].as_bool()), (0, Some(true)), "{check}");
    assert_eq!(check["connections"][0]["connection"], "erp");
    let (bench, code) = json_report(&config, &["bench", "--records", "50"]);
    assert_eq!((code, bench["phases"][1]["read"].as_u64()), (0, Some(50)), "{bench}");
}

#[test]
fn check_and_sync_refuse_a_bad_schedule_and_schedule_lists_both_sydney_changes() {
    for (extra, named) in [("schedule = \"every tuesday\"", "every tuesday"), ("schedule = \"0 * * * *\"\nschedule_timezone = \"Mars/Olympus\"", "Mars/Olympus")] {
        let (_dir, config) = small_setup(&[("products.csv", "sku,name\nA,a\n")], &[("products", "products", extra)], "");
        for args in [&["check"][..], &["sync", "products"]] {
            let out = run(&config, args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(stderr(&out).contains(named) && stderr(&out).contains("flows.products.schedule"), "{}", stderr(&out));
        }
    }
    let (_dir, config) = small_setup(&[], &[("hourly", "products", "schedule = \"0 * * * *\"\nschedule_timezone = \"Australia/Sydney\"")], "");
    // 5 April 2026: 03:00 AEDT goes back to 02:00 AEST, and both 02:00s fire.
    let (list, code) = json_report(&config, &["schedule", "hourly", "--from", "2026-04-05T01:30", "--count", "3"]);
    assert_eq!(code, 0);
    let utc: Vec<&str> = list["firings"].as_array().unwrap().iter().map(|f| f["utc"].as_str().unwrap()).collect();
    assert_eq!(utc, ["2026-04-04T15:00:00Z", "2026-04-04T16:00:00Z", "2026-04-04T17:00:00Z"]);
    // 4 October 2026: 02:00 AEST jumps to 03:00 AEDT; the skipped 02:00 fires at 03:00 (once).
    let out = run(&config, &["schedule", "hourly", "--from", "2026-10-04T00:30", "--count", "3"]);
    let lines: Vec<String> = stdout(&out).lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        lines,
        [
            "2026-10-04T01:00:00+10:00 AEST 2026-10-03T15:00:00Z",
            "2026-10-04T03:00:00+11:00 AEDT 2026-10-03T16:00:00Z",
            "2026-10-04T04:00:00+11:00 AEDT 2026-10-03T17:00:00Z"
        ]
    );
    let out = run(&config, &["schedule", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_header_read_with_the_wrong_delimiter_is_named_by_check_and_sync() {
    let (_dir, config) = small_setup(&[("prices.csv", "price_list,sku,amount\nRETAIL,A,1\nRETAIL,B,2\n")], &[("prices", "prices", "")], "delimiter = \";\"");
    let out = run(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("prices: prices.csv: the header row read with delimiter \";\" has one column (\"price_list,sku,amount\"); with \",\" it has 3 columns: set delimiter = \",\""), "{}", stdout(&out));
    let (report, code) = json_report(&config, &["sync", "prices"]);
    assert_eq!(code, 2);
    let warnings: Vec<&str> = report["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings.iter().filter(|w| w.contains("set delimiter = \",\"")).count(), 1, "{warnings:?}");
}

#[test]
fn a_duplicated_key_is_named_with_both_lines_everywhere_or_fails_the_row() {
    let products = "sku,name\nA,first\nB,b\nA,second\n";
    let (dir, config) = small_setup(&[("products.csv", products)], &[("products", "products", "")], "");
    let out = run(&config, &["sync", "products"]);
    assert_eq!(out.status.code(), Some(0));
    let warning = "key A read twice: at products.csv line 2 and at products.csv line 4; the later one wins";
    assert!(stdout(&out).contains(warning), "{}", stdout(&out));
    let shop = ferry_connectors::jsonl::materialize(&dir.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(shop["A"]["name"], "second");
    let status = stdout(&run(&config, &["status"]));
    assert!(status.contains(warning), "{status}");
    let (status, _) = json_report(&config, &["status"]);
    assert!(status[0]["runs"][0]["warnings"][0].as_str().unwrap().contains("key A read twice"), "{status}");
    std::fs::write(dir.path().join("erp/products.csv"), "sku,name\nC,c\nC,c2\n").unwrap();
    let (report, _) = json_report(&config, &["sync", "products"]);
    assert_eq!(report["duplicates"][0], serde_json::json!({"key": "C", "first": "products.csv line 2", "again": "products.csv line 3"}));

    // on_duplicate = "fail": the first row is kept, the later one parked, exit code 2.
    let (dir, config) = small_setup(&[("products.csv", products)], &[("products", "products", "on_duplicate = \"fail\"")], "");
    let (report, code) = json_report(&config, &["sync", "products"]);
    assert_eq!((code, report["counts"]["failed"].as_u64()), (2, Some(1)));
    let shop = ferry_connectors::jsonl::materialize(&dir.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(shop["A"]["name"], "first");
    let (list, _) = json_report(&config, &["failures", "list"]);
    assert_eq!(list[0]["source"]["name"], "second");
    assert_eq!(list[0]["position"], "products.csv line 4");
}

#[test]
fn stock_without_a_status_is_published_with_the_one_its_quantities_imply() {
    let stock = "sku,location,on_hand,available\nA,MEL,0,\nB,MEL,-2,\nC,MEL,12,\nD,MEL,3,\nE,MEL,9,0\n";
    let mapping = "[flows.stock.mapping]\ndefaults = { \"low_stock_threshold\" = \"5\" }";
    let (dir, config) = small_setup(&[("stock.csv", stock)], &[("stock", "stock", mapping)], "");
    assert_eq!(run(&config, &["sync", "stock"]).status.code(), Some(0));
    let shop = ferry_connectors::jsonl::materialize(&dir.path().join("shop/stock.jsonl"), Stream::Stock).unwrap();
    let status = |k: &str| shop[k]["status"].as_str().unwrap().to_owned();
    assert_eq!(
        [status("A@MEL"), status("B@MEL"), status("C@MEL"), status("D@MEL"), status("E@MEL")],
        ["temporarily_out", "temporarily_out", "in_stock", "low", "temporarily_out"]
    );
}

#[test]
fn check_fails_when_a_flow_could_not_read_its_stream() {
    // The folder is fine; the flow's file is not there: `check` said ok, then `sync` failed.
    let (dir, config) = small_setup(&[("stock.csv", "sku,on_hand\nA,1\n")], &[("products", "products", ""), ("stock", "stock", "")], "");
    let (report, code) = json_report(&config, &["check"]);
    assert_eq!(code, 1, "{report}");
    let by_name = |n: &str| report["connections"].as_array().unwrap().iter().find(|c| c["connection"] == n).cloned().unwrap();
    assert_eq!(by_name("erp")["ok"], true, "a missing file is a flow's problem, not the folder's");
    let products = by_name("flow products");
    assert_eq!(products["ok"], false);
    assert!(products["details"][0].as_str().unwrap().contains("products.csv: cannot open"), "{products}");
    assert_eq!(by_name("flow stock")["details"][0], "reads stock from erp: readable");
    // The sync says why once: in its summary, not again in a log line.
    let out = run(&config, &["sync", "products"]);
    assert_eq!(out.status.code(), Some(1));
    let both = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(both.matches("No such file or directory").count(), 1, "{both}");
    // Once the file is there, both the check and the sync pass.
    std::fs::write(dir.path().join("erp/products.csv"), "sku,name\nA,a\n").unwrap();
    assert_eq!(run(&config, &["check"]).status.code(), Some(0));
    assert_eq!(run(&config, &["sync", "products"]).status.code(), Some(0));
}
