//! The csv and jsonl connectors on folders of a real OpenSSH server (scripts/peers/sshd/up.sh, port
//! 18302, Debian's sshd with a throw-away host key and user key): a products export read over SFTP and
//! synced through the engine into JSONL on the server; files still being written left alone; archiving
//! after commit; orders published by temporary name + rename; a connection dropped mid-read; host keys
//! that do not match refused.

mod support;

use ferry_connectors::jsonl::materialize;
use ferry_connectors::registry;
use ferry_engine::{BuildContext, Config, Connector, ConnectorError, ErrorKind, ReadItem, ReadMode, ReadRequest, RunOptions, RunReport, WriteAction, WriteRecord, Workspace, holder_id, run::NoProgress};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::sshd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn build(kind: &str, options: Value) -> Arc<dyn Connector> {
    registry().build(kind, &options, &BuildContext::new(format!("sftp-{kind}"), std::env::temp_dir())).unwrap()
}

/// Everything a read yields, or its first error.
async fn read(c: &dyn Connector, stream: Stream, checkpoint: Option<Value>) -> Result<Vec<ReadItem>, ConnectorError> {
    let mut items = c.read(ReadRequest { stream: Some(stream), checkpoint, keys: None });
    let mut out = Vec::new();
    while let Some(item) = items.next().await {
        out.push(item?);
    }
    Ok(out)
}

fn records(items: &[ReadItem]) -> Vec<Value> {
    items.iter().filter_map(|i| if let ReadItem::Record(r) = i { Some(r.data.clone()) } else { None }).collect()
}

fn checkpoint(items: &[ReadItem]) -> Option<Value> {
    items.iter().find_map(|i| if let ReadItem::Checkpoint(c) = i { Some(c.clone()) } else { None })
}

fn products_csv(rows: usize, price: &str) -> String {
    let mut text = String::from("sku,name,price.amount\n");
    for i in 0..rows {
        text.push_str(&format!("SFTP-{i:06},Product {i},{price}\n"));
    }
    text
}

async fn sync(ws: &Workspace, flow: &str) -> RunReport {
    let options = RunOptions { holder: holder_id(), ..Default::default() };
    let report = ws.sync(flow, &options, &NoProgress).await.unwrap_or_else(|e| panic!("sync {flow}: {e}"));
    assert!(report.aborted.is_none(), "sync {flow} aborted: {report:#?}");
    assert!(report.failures.is_empty(), "sync {flow}: failures {:#?}", report.failures);
    report
}

/// A products flow from a CSV folder on the server into a JSONL folder on the server.
async fn workspace(state: &std::path::Path, erp: &sshd::Folder, erp_extra: &str, shop: &sshd::Folder) -> Workspace {
    let config = format!(
        r#"
[state]
path = "{state}/ferry.db"

[connections.erp]
type = "csv"
{erp}
[connections.shop]
type = "jsonl"
{shop}
[flows.products]
source = "erp"
target = "shop"
stream = "products"
[flows.products.mapping]
set = {{ "price.currency" = "AUD", "price.tax_inclusive" = true }}
"#,
        state = state.display(),
        erp = erp.toml(erp_extra),
        shop = shop.toml(""),
    );
    Workspace::open(Config::parse(&config, state.to_owned()).unwrap(), registry()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_products_export_read_over_sftp_is_synced_through_the_engine_into_jsonl_on_the_server() {
    let (erp, shop) = (sshd::folder("erp"), sshd::folder("shop"));
    erp.put("products.csv", &products_csv(3, "19.95"));
    let state = tempfile::tempdir().unwrap();
    let ws = workspace(state.path(), &erp, "pickup = \"rename\"", &shop).await;

    let report = sync(&ws, "products").await;
    assert_eq!((report.counts.read, report.counts.created), (3, 3), "{report:#?}");
    let synced = materialize(&shop.local.join("products.jsonl"), Stream::Products).unwrap();
    assert_eq!(synced.keys().cloned().collect::<Vec<_>>(), ["SFTP-000000", "SFTP-000001", "SFTP-000002"]);
    assert_eq!(synced["SFTP-000001"]["price"]["amount"], "19.95");
    assert_eq!(shop.names(""), ["products.jsonl"], "no temporary file is left behind");
    assert_eq!(erp.names(""), ["products.csv"], "without archive, the export stays where it is");

    let report = sync(&ws, "products").await;
    assert_eq!((report.counts.read, report.counts.created, report.counts.updated), (3, 0, 0), "an unchanged export writes nothing");

    let mut changed = products_csv(3, "19.95");
    changed = changed.replace("SFTP-000002,Product 2,19.95", "SFTP-000002,Product 2,21.25");
    erp.put("products.csv", &changed);
    let report = sync(&ws, "products").await;
    assert_eq!((report.counts.created, report.counts.updated), (0, 1), "{report:#?}");
    let synced = materialize(&shop.local.join("products.jsonl"), Stream::Products).unwrap();
    assert_eq!(synced["SFTP-000002"]["price"]["amount"], "21.25");
    assert_eq!(ws.flow("products").unwrap().source.location(Stream::Products).unwrap(), format!("{}/products.csv", erp.url));

    // The JSONL folder on the server read back as a source, and compacted there (4 lines → 3).
    let feed = build("jsonl", shop.options(json!({"pickup": "rename"})));
    let items = read(feed.as_ref(), Stream::Products, None).await.unwrap();
    assert_eq!(records(&items).len(), 3);
    let compacted = feed.compact(Stream::Products, false).await.unwrap().unwrap();
    assert_eq!((compacted.lines_before, compacted.lines_after), (4, 3));
    assert_eq!(compacted.target, format!("{}/products.jsonl", shop.url));
    assert_eq!(std::fs::read_to_string(shop.local.join("products.jsonl")).unwrap().lines().count(), 3);
    assert_eq!(materialize(&shop.local.join("products.jsonl"), Stream::Products).unwrap(), synced);
    assert_eq!(shop.names(""), ["products.jsonl"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_still_being_written_is_not_picked_up() {
    // Done marker, delivery folder (archive): without the marker there is nothing to read yet, and the run says why.
    let erp = sshd::folder("marker");
    erp.put("products.csv", &products_csv(3, "5.00"));
    let c = build("csv", erp.options(json!({"pickup": "done_marker", "archive": "processed"})));
    let items = read(c.as_ref(), Stream::Products, None).await.unwrap();
    assert!(records(&items).is_empty(), "{items:?}");
    assert!(
        matches!(&items[..], [ReadItem::Warning(w)] if w.contains("no done marker products.csv.done") && w.contains(&erp.url)),
        "{items:?}"
    );
    erp.put("products.csv.done", "");
    let items = read(c.as_ref(), Stream::Products, None).await.unwrap();
    assert_eq!(records(&items).len(), 3);

    // Done marker, export folder (snapshot): a run without the marker fails (transiently) instead of reading.
    let erp = sshd::folder("marker-snapshot");
    erp.put("products.csv", &products_csv(3, "5.00"));
    let c = build("csv", erp.options(json!({"pickup": "done_marker"})));
    let err = read(c.as_ref(), Stream::Products, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.message.contains("no done marker") && err.endpoint.ends_with("/products.csv"), "{err}");

    // Settle time: the file grows while Ferry waits; what is read is the whole file, never its first half.
    let erp = sshd::folder("settle");
    let whole = products_csv(2000, "7.50");
    let cut = whole.len() / 2 + 3; // in the middle of a row
    erp.put("products.csv", &whole[..cut]);
    let path = erp.local.join("products.csv");
    let rest = whole[cut..].to_owned();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(rest.as_bytes()).unwrap();
    });
    let c = build("csv", erp.options(json!({"pickup": "settle", "settle_seconds": 1})));
    let items = read(c.as_ref(), Stream::Products, None).await.unwrap();
    writer.join().unwrap();
    let bad: Vec<_> = items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).collect();
    assert!(bad.is_empty(), "a half-written row was read: {bad:?}");
    assert_eq!(records(&items).len(), 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_file_is_archived_once_its_records_are_committed_and_read_again_after_a_killed_run() {
    let erp = sshd::folder("archive");
    erp.put("products.csv", &products_csv(3, "4.00"));
    let c = build("csv", erp.options(json!({"archive": "processed", "pickup": "rename"})));
    assert_eq!(c.describe().stream(Stream::Products).unwrap().read, Some(ReadMode::Incremental));

    let first = read(c.as_ref(), Stream::Products, None).await.unwrap();
    assert_eq!(records(&first).len(), 3);
    let cp = checkpoint(&first).expect("the file's checkpoint follows its records");
    assert!(matches!(first.last(), Some(ReadItem::Checkpoint(_))));
    // Taken: renamed to a unique in-flight name, so a new delivery cannot be mistaken for it.
    let taken = erp.names("");
    assert!(taken.len() == 1 && taken[0].starts_with(".products.csv.ferry-reading-"), "{taken:?}");
    assert_eq!(cp, json!({"file": taken[0]}));
    // A run killed before it committed leaves the checkpoint where it was: the file is read again, whole.
    let again = read(c.as_ref(), Stream::Products, None).await.unwrap();
    assert_eq!(records(&again).len(), 3);
    assert_eq!(erp.names(""), taken);
    // Committed: the next read moves it to the archive and finds nothing new.
    let after = read(c.as_ref(), Stream::Products, Some(cp.clone())).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(erp.names(""), ["processed"]);
    let archived = erp.names("processed");
    assert!(archived.len() == 1 && archived[0].starts_with("products-") && archived[0].ends_with(".csv"), "{archived:?}");
    // Nothing delivered: nothing read, no error (a delivery folder is often empty).
    assert!(read(c.as_ref(), Stream::Products, Some(cp.clone())).await.unwrap().is_empty());

    // Through the engine: the run after the one that read the file archives it; a new delivery, even one
    // of the same size written within the same second, is read.
    let shop = sshd::folder("archive-shop");
    erp.put("products.csv", &products_csv(3, "4.00"));
    let state = tempfile::tempdir().unwrap();
    let ws = workspace(state.path(), &erp, "archive = \"processed\"\npickup = \"rename\"", &shop).await;
    assert_eq!(sync(&ws, "products").await.counts.created, 3);
    let report = sync(&ws, "products").await;
    assert_eq!(report.counts.read, 0, "{report:#?}");
    assert_eq!(erp.names(""), ["processed"]);
    assert_eq!(erp.names("processed").len(), 2);
    erp.put("products.csv", &products_csv(3, "4.00").replace("SFTP-000000,Product 0,4.00", "SFTP-000000,Product 0,4.40"));
    let report = sync(&ws, "products").await;
    assert_eq!((report.counts.read, report.counts.updated, report.counts.retired), (3, 1, 0), "{report:#?}");
}

fn order(number: &str) -> Record {
    let data = json!({
        "number": number, "placed_at": "2026-12-03T01:02:03Z", "status": "confirmed", "currency": "AUD", "prices_include_tax": false,
        "customer": {"email": "buyer@example.com", "first_name": "Sam", "last_name": "Buyer"},
        "lines": [{"sku": "SP-1", "quantity": "2", "unit_price": "10.00", "total": "20.00"},
                  {"sku": "SP-2", "quantity": "1", "unit_price": "5.50", "total": "5.50"}],
        "totals": {"subtotal": "25.50", "tax": "2.55", "total": "28.05"},
        "shipping_address": {"name": "Sam Buyer", "street": ["1 Long St", "Unit 2"], "city": "Sydney", "postcode": "2000", "country": "AU"},
    });
    Record::parse(Stream::Orders, data, number).unwrap()
}

fn batch(numbers: &[String]) -> Vec<WriteRecord> {
    numbers.iter().map(|n| WriteRecord { key: n.clone(), target_id: None, record: order(n), previous: None }).collect()
}

/// Every order number in a CSV orders file, checking each row is whole (28 columns).
fn order_rows(text: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("a reader on the server saw a broken file ({e}): {text:?}"));
            assert_eq!(r.len(), ferry_connectors::csv::ORDER_COLUMNS.len(), "a reader on the server saw a cut row: {text:?}");
            r[0].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_are_published_by_temporary_name_and_rename_and_written_once() {
    use std::os::unix::fs::MetadataExt;
    let out = sshd::folder("orders");
    let c = build("csv", out.options(json!({})));
    let path = out.local.join("orders.csv");

    // A reader on the server reads the file over and over while batches are written: it only ever sees
    // whole files (header, complete rows, both lines of every order).
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut versions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let rows = order_rows(&text);
                    assert_eq!(rows.len() % 2, 0, "an order without its second line: {text:?}");
                    versions.insert(rows.len());
                }
            }
            versions.len()
        })
    };
    let mut inodes = Vec::new();
    let mut all = Vec::new();
    for b in 0..15 {
        let numbers: Vec<String> = (0..4).map(|i| format!("SFTP-{b:02}-{i}")).collect();
        let outcomes = c.write(Stream::Orders, batch(&numbers)).await.unwrap();
        assert!(outcomes.iter().all(|o| o.result.as_ref().unwrap().action == WriteAction::Created), "{outcomes:?}");
        inodes.push(std::fs::metadata(&path).unwrap().ino());
        all.extend(numbers);
    }
    stop.store(true, Ordering::Relaxed);
    let versions = watcher.join().expect("the reader never saw a half-written file");
    assert!(versions >= 2, "the reader saw the file grow ({versions} versions)");
    inodes.dedup();
    assert_eq!(inodes.len(), 15, "every batch replaced the file (a rename), none wrote into it in place");
    assert_eq!(out.names(""), ["orders.csv"], "no temporary file is left behind");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().next().unwrap(), ferry_connectors::csv::ORDER_COLUMNS.join(","));
    assert_eq!(order_rows(&text).len(), 2 * all.len());

    // Exactly once, also for a new process (a fresh connection with no cross-reference): found by key, not written again.
    let fresh = build("csv", out.options(json!({})));
    let found = fresh.find_by_key(Stream::Orders, &all[..3]).await.unwrap();
    assert_eq!(found.len(), 3);
    let outcomes = fresh.write(Stream::Orders, batch(&all[..4])).await.unwrap();
    assert!(outcomes.iter().all(|o| o.result.as_ref().unwrap().action == WriteAction::Unchanged), "{outcomes:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "nothing was written twice");

    // The importer takes the file away (as ERPs do): the next batch starts a new file with its header.
    std::fs::rename(&path, out.local.join("imported.csv")).unwrap();
    c.write(Stream::Orders, batch(&["SFTP-NEW-1".to_owned()])).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(order_rows(&text), ["SFTP-NEW-1", "SFTP-NEW-1"]);
}

/// A TCP relay to the SSH server that cuts each of its first `cut` connections once `after` bytes went
/// through it (both ways). Returns its port and the number of connections it accepted.
async fn cutting_relay(cut: usize, after: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let limit = if n <= cut { after } else { usize::MAX };
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", sshd::port())).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let moved = Arc::new(AtomicUsize::new(0));
                let mut up = tokio::spawn(pipe(client_read, server_write, moved.clone(), limit));
                let mut down = tokio::spawn(pipe(server_read, client_write, moved, limit));
                // Whichever way stops first, the other is stopped too: both sockets close mid-transfer.
                tokio::select! {
                    _ = &mut up => down.abort(),
                    _ = &mut down => up.abort(),
                }
            });
        }
    });
    (port, accepted)
}

/// Copies until EOF, an error, or `limit` bytes moved through the connection in both directions together.
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, moved: Arc<AtomicUsize>, limit: usize) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let k = from.read(&mut buf).await.unwrap_or(0);
        if k == 0 || moved.fetch_add(k, Ordering::SeqCst) + k > limit || to.write_all(&buf[..k]).await.is_err() {
            return;
        }
    }
}

/// A csv connection to `folder` through the relay on `port` (the host key pinned: known_hosts names the real port).
fn via_relay(folder: &sshd::Folder, port: u16) -> Arc<dyn Connector> {
    let mut o = folder.options(json!({"pickup": "rename", "timeout_seconds": 3, "host_key_fingerprint": sshd::host_fingerprint()}));
    o["path"] = json!(folder.url.replace(&format!(":{}/", sshd::port()), &format!(":{port}/")));
    o.as_object_mut().unwrap().remove("known_hosts_path");
    build("csv", o)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_mid_read_is_read_again_on_a_new_one_or_fails_naming_the_file() {
    let erp = sshd::folder("drop");
    erp.put("products.csv", &products_csv(20_000, "3.30")); // about 650 KB
    let through = |port: u16| via_relay(&erp, port);

    let (port, accepted) = cutting_relay(1, 200_000).await;
    let items = read(through(port).as_ref(), Stream::Products, None).await.unwrap();
    assert_eq!(records(&items).len(), 20_000, "the whole file, read again on a new connection");
    assert!(accepted.load(Ordering::SeqCst) >= 2, "the first connection was cut");

    let (port, _) = cutting_relay(usize::MAX, 200_000).await;
    let err = read(through(port).as_ref(), Stream::Products, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.endpoint.ends_with("/products.csv") && err.message.contains("failed 3 times"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_or_changed_host_key_is_refused() {
    let erp = sshd::folder("hostkey");
    erp.put("products.csv", &products_csv(1, "1.00"));
    let dir = tempfile::tempdir().unwrap();
    let refused = |err: &ConnectorError, needle: &str| {
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(err.message.contains(needle), "{err}");
    };

    // Unknown: not in the known_hosts file (the default is ~/.ssh/known_hosts; here an empty one).
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let c = build("csv", erp.options(json!({"known_hosts_path": empty, "pickup": "rename"})));
    refused(&read(c.as_ref(), Stream::Products, None).await.unwrap_err(), "not in known_hosts");
    let report = c.check().await.unwrap();
    assert!(!report.ok && report.details[0].contains("refusing an unknown host"), "{report:?}");

    // Changed: known_hosts holds another key for this host and port (a re-installed server, or an attacker).
    let other = std::fs::read_to_string(sshd::peer_dir().join("user_ed25519.pub")).unwrap();
    let other_key: Vec<&str> = other.split_whitespace().take(2).collect();
    let changed = dir.path().join("known_hosts_changed");
    std::fs::write(&changed, format!("[127.0.0.1]:{} {}\n", sshd::port(), other_key.join(" "))).unwrap();
    let c = build("csv", erp.options(json!({"known_hosts_path": changed, "pickup": "rename"})));
    refused(&read(c.as_ref(), Stream::Products, None).await.unwrap_err(), "refused");

    // A pinned fingerprint that is not the server's.
    let c = build("csv", erp.options(json!({"host_key_fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "pickup": "rename"})));
    refused(&read(c.as_ref(), Stream::Products, None).await.unwrap_err(), "does not match the pinned host_key_fingerprint");

    // The right ones connect.
    let c = build("csv", erp.options(json!({"host_key_fingerprint": sshd::host_fingerprint(), "pickup": "rename"})));
    assert_eq!(records(&read(c.as_ref(), Stream::Products, None).await.unwrap()).len(), 1);
    let report = c.check().await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sftp_example_config_runs_against_a_real_server() {
    // examples/sftp-erp/ferry.toml with its server, key and known_hosts pointed at the test peer.
    let erp = sshd::folder("example");
    for sub in ["outbox", "inbox"] {
        std::fs::create_dir(erp.local.join(sub)).unwrap();
        sshd::give(&erp.local.join(sub));
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sftp-erp/ferry.toml");
    // As `$(cat key)` passes it to `ferry secrets set --from-env`: without the final newline.
    let key = std::fs::read_to_string(sshd::peer_dir().join("user_ed25519")).unwrap().trim_end().to_owned();
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("sftp://ferry@erp.example.com:22/srv/erp", &erp.url)
        // The secret as `prepare_config` resolves it from the state store: the key's text in the option.
        .replace("private_key = { secret = \"erp-sftp-key\" }", &format!("private_key = '''{key}'''"))
        .replace("known_hosts_path = \"known_hosts\"", &format!("known_hosts_path = \"{}\"", sshd::peer_dir().join("known_hosts").display()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shop")).unwrap();
    let ws = Workspace::open(Config::parse(&text, dir.path().to_owned()).unwrap(), registry()).await.unwrap();

    // The ERP's export, still without its done marker: nothing is read yet.
    let outbox = sshd::Folder { local: erp.local.join("outbox"), url: format!("{}/outbox", erp.url) };
    outbox.put("products.csv", "ItemCode;Description;SellPrice\nEX-1;Spade;19,95\nEX-2;Rake;1.249,00\n");
    let report = sync(&ws, "products").await;
    assert_eq!(report.counts.read, 0);
    assert!(report.warnings.iter().any(|w| w.contains("no done marker products.csv.done")), "{:?}", report.warnings);
    outbox.put("products.csv.done", "");
    let report = sync(&ws, "products").await;
    assert_eq!(report.counts.created, 2, "{report:#?}");
    let shop = materialize(&dir.path().join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(shop["EX-2"]["price"]["amount"], "1249");
    sync(&ws, "products").await;
    assert_eq!(outbox.names("processed").len(), 1, "archived once committed");

    // A web order in the shop goes to the ERP's inbox as orders.csv, under the renamed order-number column.
    let mut line = serde_json::to_string(&order("WEB-EX-1")).unwrap();
    line.push('\n');
    std::fs::write(dir.path().join("shop/orders.jsonl"), line).unwrap();
    assert_eq!(sync(&ws, "orders").await.counts.created, 1);
    assert_eq!(sync(&ws, "orders").await.counts.created, 0);
    let orders = std::fs::read_to_string(erp.local.join("inbox/orders.csv")).unwrap();
    assert!(orders.starts_with("Belegnummer;placed_at;") && orders.matches("WEB-EX-1;").count() == 2, "{orders}");
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_written_while_connections_keep_dropping_arrive_exactly_once() {
    // Every connection is cut after 100 KB (the orders file stays under 70 KB, so one upload fits in a
    // connection), at whatever point the transfer then is: an upload, its answer, a rename. The
    // connector makes new connections; a batch that still failed is retried the engine's way (keys looked
    // up first, only the missing ones written).
    let out = sshd::folder("drop-orders");
    let (port, accepted) = cutting_relay(usize::MAX, 100_000).await;
    let c = via_relay(&out, port);
    let mut numbers = Vec::new();
    for b in 0..6 {
        let batch_numbers: Vec<String> = (0..20).map(|i| format!("DROP-{b}-{i:02}")).collect();
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 10, "batch {b} never got through");
            let found = match c.find_by_key(Stream::Orders, &batch_numbers).await {
                Ok(found) => found,
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
                    continue;
                }
            };
            let missing: Vec<String> = batch_numbers.iter().filter(|n| !found.contains_key(*n)).cloned().collect();
            if missing.is_empty() {
                break;
            }
            match c.write(Stream::Orders, batch(&missing)).await {
                Ok(outcomes) => assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}"),
                Err(e) => assert_eq!(e.kind, ErrorKind::Transient, "{e}"),
            }
        }
        numbers.extend(batch_numbers);
    }
    assert!(accepted.load(Ordering::SeqCst) >= 2, "connections were cut and made again");
    let text = std::fs::read_to_string(out.local.join("orders.csv")).unwrap();
    let mut rows = order_rows(&text);
    rows.sort();
    let mut expected: Vec<String> = numbers.iter().flat_map(|n| [n.clone(), n.clone()]).collect();
    expected.sort();
    assert_eq!(rows, expected, "every order exactly once (two lines each)");
}
