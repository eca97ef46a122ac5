//! Bodies pushed to the records API (`POST /api/v1/records/{stream}`) through the real router and state
//! store: any bytes are answered — 200 with per-record outcomes, or a 4xx in the API's error shape — and
//! never with a 500 (an internal error or a caught panic) or a dropped connection.
#![no_main]
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_engine::Config;
use ferry_engine::schedule::SystemClock;
use ferry_engine::store::KeyStore;
use ferry_engine::store::keys::Scope;
use ferry_model::Stream;
use ferry_server::{AppState, router};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const CONFIG: &str = r#"
[state]
path = "state.db"
[connections.web]
type = "api"
collection = "in"
[connections.shop]
type = "api"
collection = "out"
[flows.products]
source = "web"
target = "shop"
stream = "products"
"#;

struct Rig {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    state: Arc<AppState>,
    token: String,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(CONFIG, dir.path().to_path_buf()).unwrap();
        let (state, token) = rt.block_on(async {
            let state = AppState::open_with(config, Arc::new(SystemClock), |_| {}).await.unwrap();
            let (_, token) = state.store.create_key("fuzz", &[Scope::Read, Scope::Write]).await.unwrap();
            (state, token)
        });
        Rig { rt, _dir: dir, state, token }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let stream = Stream::ALL[pick as usize % Stream::ALL.len()];
    let rig = rig();
    let request = Request::builder()
        .method("POST")
        .uri(format!("/api/v1/records/{stream}?collection=in"))
        .header("authorization", format!("Bearer {}", rig.token))
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, bytes) = rig.rt.block_on(async {
        let response = router(rig.state.clone()).oneshot(request).await.expect("the router always answers");
        let status = response.status();
        (status, response.into_body().collect().await.expect("a whole body").to_bytes())
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}", String::from_utf8_lossy(&bytes));
    let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("answers are JSON");
    if !status.is_success() {
        assert!(answer["error"]["code"].is_string(), "errors have the API's shape: {answer}");
    }
});
