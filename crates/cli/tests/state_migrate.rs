//! `ferry state migrate --to postgres://…`: a deployment synced on SQLite moves to PostgreSQL, and the
//! next run there writes nothing — cross-references, hashes, checkpoints, failures, keys and secrets came
//! along.

use ferry_engine::store::postgres::ScratchSchema;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A master key for the test's stored secret (64 hex digits).
const MASTER_KEY: &str = "3f1c9a0b7d2e4f6a8b0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708";

fn run(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_CONFIG")
        .env("FERRY_LOG", "error")
        .env("FERRY_MASTER_KEY", MASTER_KEY)
        .env("TEST_SECRET_VALUE", "s3cret-value")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run ferry");
    eprintln!("$ ferry {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(config, &all);
    // `sync --all` prints one document per flow.
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    if docs.len() == 1 { docs.into_iter().next().unwrap() } else { serde_json::Value::Array(docs) }
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

/// Per flow of a `sync --all --json` report: (written, unchanged, failed).
fn per_flow(report: &serde_json::Value) -> Vec<(String, u64, u64, u64)> {
    let runs = report.as_array().cloned().unwrap_or_else(|| report["runs"].as_array().cloned().unwrap_or_else(|| vec![report.clone()]));
    runs.iter()
        .map(|r| {
            let c = &r["counts"];
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            (r["flow"].as_str().unwrap_or_default().to_owned(), n("created") + n("updated") + n("retired"), n("unchanged"), n("failed"))
        })
        .collect()
}

#[test]
fn a_store_migrated_from_sqlite_to_postgres_makes_the_next_run_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(&root.join("examples/quickstart"), dir.path());
    let config = dir.path().join("ferry.toml");
    // One product row that fails validation: its parked failure must come along.
    let products = dir.path().join("erp/products.csv");
    let mut csv = std::fs::read_to_string(&products).unwrap();
    let header = csv.lines().next().unwrap().to_owned();
    let bad: Vec<&str> = header.split(';').map(|c| if c.contains("Item") || c.to_lowercase().contains("sku") { "BAD-1" } else { "" }).collect();
    csv.push_str(&format!("{}\n", bad.join(";")));
    std::fs::write(&products, csv).unwrap();

    let first = json(&config, &["sync", "--all"]);
    let synced = per_flow(&first);
    assert!(synced.iter().map(|(_, w, _, _)| w).sum::<u64>() > 10, "{first}");
    let failed_before: u64 = synced.iter().map(|(_, _, _, f)| f).sum();
    assert!(failed_before >= 1, "the bad row failed: {first}");
    let out = run(&config, &["keys", "create", "--scope", "read", "--name", "site"]);
    assert!(out.status.success());
    let out = run(&config, &["secrets", "set", "shop-token", "--from-env", "TEST_SECRET_VALUE"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shop_before: Vec<(String, String)> = std::fs::read_dir(dir.path().join("shop"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();

    let scratch = ScratchSchema::new("migrate");
    let out = run(&config, &["state", "migrate", "--to", &scratch.url, "--schema", &scratch.schema]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copied = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(copied.contains("xref") && copied.contains("checkpoints"), "{copied}");
    // Migrating again into the same schema is refused: it holds state now.
    let again = run(&config, &["state", "migrate", "--to", &scratch.url, "--schema", &scratch.schema]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already holds state"));

    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("path = \"ferry-state.db\"", &format!("url = \"{}\"\nschema = \"{}\"", scratch.url, scratch.schema), 1);
    std::fs::write(&config, text).unwrap();
    std::fs::remove_file(dir.path().join("ferry-state.db")).unwrap(); // nothing can still read SQLite

    let second = json(&config, &["sync", "--all"]);
    for (flow, written, unchanged, _) in per_flow(&second) {
        assert_eq!(written, 0, "flow {flow} wrote after the migration: {second}");
        let before = synced.iter().find(|(f, ..)| *f == flow).unwrap();
        assert_eq!(unchanged, before.1 + before.2, "flow {flow}: every record synced before is unchanged");
    }
    for (path, text) in &shop_before {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), text, "{path} was rewritten");
    }
    let failures = json(&config, &["failures", "list"]);
    assert!(failures.to_string().contains("BAD-1") || failures.to_string().contains("line"), "the parked failure came along: {failures}");
    let keys = json(&config, &["keys", "list"]);
    assert!(keys.to_string().contains("site"), "{keys}");
    let secrets = json(&config, &["secrets", "list"]);
    assert!(secrets.to_string().contains("shop-token"), "{secrets}");
    let status = json(&config, &["status"]);
    assert!(status.to_string().contains("products"), "runs came along: {status}");
}
