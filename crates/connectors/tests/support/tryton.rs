//! Brings up the project's own Tryton (scripts/peers/tryton/up.sh) once per test process and hands out
//! connected connectors. up.sh holds a flock for its whole run, so the parallel test processes of
//! `cargo nextest` (or test threads) wait for one bring-up and then share one server; tests create
//! their own uniquely named data and reset nothing.


use ferry_connectors::tryton::{Options, Tryton};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::OnceLock;

/// The test server's port: 18000, or `FERRY_TEST_TRYTON_PORT` (a second peer, e.g. one a change to
/// scripts/peers/tryton is tried on while the shared one keeps serving other test runs).
pub fn port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_TRYTON_PORT", 18000)
}
pub const PASSWORD: &str = "admin-pass-123";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// `<peers dir>/tryton` (see [`ferry_testkit::peers_dir`]).
pub fn peer_dir() -> PathBuf {
    ferry_testkit::peers_dir().join("tryton")
}

/// Runs up.sh once per process; panics with its output when the bring-up fails.
pub fn ensure_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script = workspace().join("scripts/peers/tryton/up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(peer_dir())
            .arg(port().to_string())
            .env("TRYTON_ADMIN_PASSWORD", PASSWORD)
            .output()
            .expect("run scripts/peers/tryton/up.sh");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn options(extra: Value) -> Options {
    let mut v = json!({
        "url": format!("http://127.0.0.1:{}", port()),
        "database": "tryton",
        "username": "admin",
        "password": PASSWORD,
    });
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    serde_json::from_value(v).expect("valid test options")
}

/// `[connections.NAME]` of a Tryton connection to the test server at `url` (the server itself, or a fault
/// proxy in front of it), for tests and benchmarks that run Ferry from a config. `extra`: more option lines.
pub fn connection_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[connections.{name}]\ntype = \"tryton\"\nurl = \"{url}\"\ndatabase = \"tryton\"\nusername = \"admin\"\npassword = \"{PASSWORD}\"\n{extra}\n")
}

/// A config importing canonical orders from a JSONL folder `web` into the Tryton at `url` (flow `orders`),
/// state in `state.db`: `erp_options` and `flow_options` are more option lines.
pub fn web_orders_into_tryton_toml(url: &str, erp_options: &str, flow_options: &str) -> String {
    format!(
        "[state]\npath = \"state.db\"\n[connections.web]\ntype = \"jsonl\"\npath = \"web\"\n{}[flows.orders]\nsource = \"web\"\ntarget = \"erp\"\nstream = \"orders\"\n{flow_options}\n",
        connection_toml("erp", url, erp_options)
    )
}

/// A connector to the test server (brought up first).
pub fn tryton(extra: Value) -> Tryton {
    ensure_up();
    Tryton::new(options(extra), "test").expect("connector")
}

/// A short random suffix so every test's data is its own.
pub fn uniq() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{n:08X}")
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn dec(s: &str) -> Value {
    json!({"__class__": "Decimal", "decimal": s})
}

pub fn none() -> Map<String, Value> {
    Map::new()
}

/// Thin helpers over the connector's own RPC client to set up test data in Tryton.
pub struct Setup<'a>(pub &'a Tryton);

impl Setup<'_> {
    pub async fn id(&self, model: &str, domain: Value) -> i64 {
        let ids = self.0.rpc().search(model, domain.clone(), 0, Some(1), json!([["id", "ASC"]]), &none()).await.unwrap();
        *ids.first().unwrap_or_else(|| panic!("no {model} matching {domain}"))
    }

    pub async fn unit(&self) -> i64 {
        self.0.rpc().call("ir.model.data", "get_id", vec![json!("product"), json!("uom_unit")], &none()).await.unwrap().as_i64().unwrap()
    }

    pub async fn category(&self, name: &str, parent: Option<i64>) -> i64 {
        self.0.rpc().create("product.category", vec![json!({"name": name, "parent": parent})], &none()).await.unwrap()[0]
    }

    /// A goods template `code` with one variant per suffix (`""` for a single variant); returns the
    /// variants' ids in suffix order.
    pub async fn product(&self, code: &str, name: &str, list_price: &str, cost: &str, categories: &[i64], suffixes: &[&str]) -> Vec<i64> {
        let unit = self.unit().await;
        let goods = self.id("product.category", json!([["name", "=", "Goods"], ["accounting", "=", true]])).await;
        let variants: Vec<Value> = suffixes.iter().map(|s| json!({"suffix_code": s, "cost_price": dec(cost)})).collect();
        let template = self
            .0
            .rpc()
            .create(
                "product.template",
                vec![json!({
                    "name": name, "code": code, "type": "goods", "default_uom": unit, "salable": true, "sale_uom": unit,
                    "list_price": dec(list_price), "account_category": goods,
                    "categories": [["add", categories]],
                    "products": [["create", variants]],
                })],
                &none(),
            )
            .await
            .unwrap()[0];
        let rows = self.0.rpc().search_read("product.product", json!([["template", "=", template]]), 0, None, json!([["id", "ASC"]]), &["suffix_code"], &none()).await.unwrap();
        suffixes
            .iter()
            .map(|s| {
                rows.iter()
                    .find(|r| r.get("suffix_code").and_then(Value::as_str).unwrap_or("") == *s)
                    .and_then(|r| r["id"].as_i64())
                    .expect("variant created")
            })
            .collect()
    }

    /// Sets on-hand stock in warehouse WH with a confirmed inventory.
    pub async fn stock(&self, product: i64, quantity: i64) {
        let wh = self.0.rpc().search_read("stock.location", json!([["type", "=", "warehouse"], ["code", "=", "WH"]]), 0, Some(1), Value::Null, &["storage_location"], &none()).await.unwrap();
        let storage = wh[0]["storage_location"].as_i64().unwrap();
        let ctx = self.0.rpc().context().await.unwrap();
        let inv = self
            .0
            .rpc()
            .create("stock.inventory", vec![json!({"location": storage, "company": ctx["company"], "lines": [["create", [{"product": product, "quantity": quantity}]]]})], &none())
            .await
            .unwrap();
        self.0.rpc().button("stock.inventory", "confirm", &inv, &none()).await.unwrap();
    }

    pub async fn read_one(&self, model: &str, id: i64, fields: &[&str]) -> Map<String, Value> {
        self.0.rpc().read(model, &[id], fields, &none()).await.unwrap().remove(0)
    }

    /// Ships a confirmed sale the way a warehouse does in Tryton: waits for the shipment the sale's
    /// processing creates (queued after `confirm`), sets the first carrier and `tracking` as the
    /// shipping reference, then assigns, picks, packs and finishes it. Returns (shipment id, number).
    pub async fn ship_sale(&self, sale: i64, tracking: &str) -> (i64, String) {
        let mut shipment = None;
        for _ in 0..150 {
            let sl = self.read_one("sale.sale", sale, &["shipments"]).await;
            if let Some(x) = sl["shipments"].as_array().and_then(|a| a.first()).and_then(Value::as_i64) {
                shipment = Some(x);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let shipment = shipment.unwrap_or_else(|| panic!("Tryton created no shipment for sale {sale}"));
        let carrier = self.id("carrier", json!([])).await;
        self.0.rpc().write("stock.shipment.out", &[shipment], json!({"carrier": carrier, "shipping_reference": tracking}), &none()).await.unwrap();
        for step in ["assign_try", "pick", "pack", "do"] {
            self.0.rpc().button("stock.shipment.out", step, &[shipment], &none()).await.unwrap_or_else(|e| panic!("shipment {shipment} {step}: {e}"));
        }
        let number = self.read_one("stock.shipment.out", shipment, &["number"]).await["number"].as_str().unwrap().to_owned();
        (shipment, number)
    }
}
