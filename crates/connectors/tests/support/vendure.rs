//! Live peers for integration tests, started through the project's own scripts under scripts/peers/.
//!
//! Vendure: `scripts/peers/vendure/up.sh <target dir>/peers/vendure 18300`, once per test process
//! (nextest runs every test in its own process; up.sh serialises them with a flock and returns at once
//! when the server is already up). The server is never reset: tests create uniquely named data.
//! The tests' peer always runs on sql.js (`DATABASE_URL` is not passed on to up.sh); the benchmark can
//! start another peer, e.g. on PostgreSQL, with [`start_vendure`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The tests' Vendure: 18300, or `FERRY_TEST_VENDURE_PORT`.
pub fn vendure_port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_VENDURE_PORT", 18300)
}
/// The Vendure peer POSTs its events here (fixed at server start, so a fixed port). scripts/test.sh starts
/// the peer with the same URL. The path is `ferry serve`'s webhook route for a connection named `shop`
/// (crates/cli/tests/webhook_live.rs runs the server there); tests that listen themselves take any path.
/// 18301, or `FERRY_TEST_WEBHOOK_PORT` (with a second peer started on other ports).
pub fn webhook_port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_WEBHOOK_PORT", 18301)
}
pub const WEBHOOK_PATH: &str = "/hooks/shop";
pub const WEBHOOK_SECRET: &str = "ferry-test-webhook-secret";

pub struct VendurePeer {
    pub base_url: String,
    pub admin_api: String,
    pub shop_api: String,
    pub username: String,
    pub password: String,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}


/// Starts (or finds running) the tests' Vendure peer (sql.js, port [`vendure_port`], webhooks to
/// [`webhook_port`]); panics with the script's output when it cannot.
pub fn vendure() -> &'static VendurePeer {
    static PEER: OnceLock<VendurePeer> = OnceLock::new();
    PEER.get_or_init(|| {
        let webhook_url = format!("http://127.0.0.1:{}{WEBHOOK_PATH}", webhook_port());
        start_vendure(&ferry_testkit::peers_dir().join("vendure"), vendure_port(), None, Some(&webhook_url))
    })
}

/// Starts (or finds running) a Vendure peer with `scripts/peers/vendure/up.sh DIR PORT`: on PostgreSQL
/// when `database_url` is given (up.sh's `DATABASE_URL`), else on sql.js whatever the environment says;
/// posting its events to `webhook_url` when given. Panics with the script's output when it cannot.
pub fn start_vendure(dir: &std::path::Path, port: u16, database_url: Option<&str>, webhook_url: Option<&str>) -> VendurePeer {
    let script = workspace_root().join("scripts/peers/vendure/up.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(dir).arg(port.to_string()).env("WEBHOOK_SECRET", WEBHOOK_SECRET);
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    match webhook_url {
        Some(url) => cmd.env("WEBHOOK_URL", url),
        None => cmd.env_remove("WEBHOOK_URL"),
    };
    let out = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {} {port} failed:\n{}{}",
        script.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let base_url = format!("http://127.0.0.1:{port}");
    VendurePeer {
        admin_api: format!("{base_url}/admin-api"),
        shop_api: format!("{base_url}/shop-api"),
        base_url,
        username: "superadmin".into(),
        password: "superadmin".into(),
    }
}

/// `<peers dir>/<name>`: where a Vendure peer of its own (e.g. the benchmark's) keeps its server.
pub fn vendure_peer_dir(name: &str) -> PathBuf {
    ferry_testkit::peers_dir().join(name)
}

/// A short random suffix for unique test data.
pub fn unique() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:x}", n & 0xff_ffff_ffff)
}

/// A bare GraphQL client to look at Vendure independently of the connector (Admin or Shop API).
pub struct Api {
    http: reqwest::Client,
    url: String,
    token: std::sync::Mutex<Option<String>>,
    /// `vendure-token` of a channel other than the default.
    channel_token: Option<String>,
}

impl Api {
    pub fn new(url: &str) -> Self {
        // Below Node's 5 s keep-alive timeout, so a pooled connection is never one the server is closing.
        let http = reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(4)).build().unwrap();
        Api { http, url: url.to_owned(), token: std::sync::Mutex::new(None), channel_token: None }
    }

    /// The same session, asking in the channel of this token from now on.
    pub fn in_channel(mut self, token: &str) -> Self {
        self.channel_token = Some(token.to_owned());
        self
    }

    /// The Admin API, logged in as the superadmin.
    pub async fn admin() -> Self {
        let peer = vendure();
        let api = Api::new(&peer.admin_api);
        api.ok(
            "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ ... on CurrentUser { id } } }",
            serde_json::json!({"u": peer.username, "p": peer.password}),
        )
        .await;
        api
    }

    /// The Shop API, as a fresh (anonymous) session.
    pub fn shop() -> Self {
        Api::new(&vendure().shop_api)
    }

    pub async fn raw(&self, q: &str, vars: serde_json::Value) -> serde_json::Value {
        let mut req = self.http.post(&self.url).json(&serde_json::json!({"query": q, "variables": vars}));
        if let Some(t) = self.token.lock().unwrap().clone() {
            req = req.bearer_auth(t);
        }
        if let Some(channel) = &self.channel_token {
            req = req.header("vendure-token", channel);
        }
        let resp = req.send().await.unwrap();
        if let Some(t) = resp.headers().get("vendure-auth-token") {
            *self.token.lock().unwrap() = Some(t.to_str().unwrap().to_owned());
        }
        resp.json().await.unwrap()
    }

    /// `data`, asserting no GraphQL errors and no ErrorResult anywhere.
    pub async fn ok(&self, q: &str, vars: serde_json::Value) -> serde_json::Value {
        let body = self.raw(q, vars).await;
        assert!(body.get("errors").is_none(), "{q}\n→ {body}");
        assert!(!body.to_string().contains("\"errorCode\""), "{q}\n→ {body}");
        body["data"].clone()
    }
}

/// Who checks out in [`place_order`].
pub enum Buyer<'a> {
    /// A registered customer with this e-mail and the password `secret123`.
    Customer(&'a str),
    /// A guest: e-mail, first and last name given at checkout.
    Guest { email: &'a str, first_name: &'a str, last_name: &'a str },
}

/// Places an order through the Shop API: `variants` (variant id, quantity), an optional coupon, the
/// standard shipping method and the test payment method (settles at once). Returns the order code.
pub async fn place_order(variants: &[(String, i64)], buyer: Buyer<'_>, coupon: Option<&str>) -> String {
    use serde_json::json;
    let shop = Api::shop();
    let order_fields = "... on Order { code state } ... on ErrorResult { errorCode message }";
    if let Buyer::Customer(email) = buyer {
        shop.ok(
            "mutation($u:String!){ login(username:$u, password:\"secret123\"){ ... on CurrentUser { id } ... on ErrorResult { errorCode message } } }",
            json!({"u": email}),
        )
        .await;
    }
    for (id, qty) in variants {
        shop.ok(&format!("mutation($v:ID!,$q:Int!){{ addItemToOrder(productVariantId:$v, quantity:$q){{ {order_fields} }} }}"), json!({"v": id, "q": qty}))
            .await;
    }
    if let Buyer::Guest { email, first_name, last_name } = buyer {
        shop.ok(
            &format!("mutation($i:CreateCustomerInput!){{ setCustomerForOrder(input:$i){{ {order_fields} }} }}"),
            json!({"i": {"emailAddress": email, "firstName": first_name, "lastName": last_name}}),
        )
        .await;
    }
    if let Some(c) = coupon {
        shop.ok(&format!("mutation($c:String!){{ applyCouponCode(couponCode:$c){{ {order_fields} }} }}"), json!({"c": c})).await;
    }
    let addr = json!({"fullName": "Goods In", "company": "Analytical Pty Ltd", "streetLine1": "7 Dock Rd", "city": "Port Botany", "province": "NSW", "postalCode": "2036", "countryCode": "AU"});
    shop.ok(&format!("mutation($i:CreateAddressInput!){{ setOrderShippingAddress(input:$i){{ {order_fields} }} }}"), json!({"i": addr})).await;
    shop.ok(&format!("mutation($i:CreateAddressInput!){{ setOrderBillingAddress(input:$i){{ {order_fields} }} }}"), json!({"i": addr})).await;
    let methods = shop.ok("{ eligibleShippingMethods { id code } }", json!({})).await;
    let sm = methods["eligibleShippingMethods"].as_array().unwrap().iter().find(|m| m["code"] == "standard").unwrap()["id"].clone();
    shop.ok(&format!("mutation($s:[ID!]!){{ setOrderShippingMethod(shippingMethodId:$s){{ {order_fields} }} }}"), json!({"s": [sm]})).await;
    shop.ok(
        "mutation{ transitionOrderToState(state:\"ArrangingPayment\"){ ... on Order { state } ... on OrderStateTransitionError { errorCode message transitionError } } }",
        json!({}),
    )
    .await;
    let paid = shop.ok(&format!("mutation{{ addPaymentToOrder(input:{{method:\"test-pay\", metadata:{{}}}}){{ {order_fields} }} }}"), json!({})).await;
    assert_eq!(paid["addPaymentToOrder"]["state"], "PaymentSettled", "{paid}");
    paid["addPaymentToOrder"]["code"].as_str().unwrap().to_owned()
}
