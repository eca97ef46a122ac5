//! Test support shared by Ferry's crates. Dev-only: nothing here ships in the `ferry` binary.
//!
//! [`SmtpSink`] is a real SMTP server (aiosmtpd) writing a Maildir, for tests that send e-mail.
//!
//! [`FaultProxy`] is an HTTP/1 proxy that sits between a connector and a real live peer (Tryton, Vendure)
//! and injects the faults production networks produce: 5xx answers, 429 with `Retry-After`, requests
//! that hang past the client's timeout, and — the one that tests exactly-once logic — requests that reach
//! the peer, get committed and answered, and whose answer is then lost ([`Fault::DropAfterForward`]).
//!
//! ```no_run
//! use ferry_testkit::{Fault, FaultProxy, RetryAfter};
//! let proxy = FaultProxy::start("http://127.0.0.1:18000");
//! // 10 % of requests fail, reproducibly.
//! proxy.set_random(0.10, &[Fault::Status(502), Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }], 42);
//! // The next sale create is applied by Tryton but its answer never arrives.
//! proxy.fail_matching("model.sale.sale.create", Fault::DropAfterForward, 1);
//! let url = proxy.url(); // point the connector here
//! # drop(url);
//! ```

pub mod smtp;
pub use smtp::SmtpSink;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where the tests' live peers live: `FERRY_PEERS_DIR` (as scripts/test.sh sets it), else
/// `<CARGO_TARGET_DIR or target>/peers`. Relative paths are taken from the workspace root.
pub fn peers_dir() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let absolute = |p: std::path::PathBuf| if p.is_absolute() { p } else { root.join(p) };
    if let Some(dir) = std::env::var_os("FERRY_PEERS_DIR").filter(|d| !d.is_empty()) {
        return absolute(dir.into());
    }
    absolute(std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| "target".into())).join("peers")
}

/// A test peer's port: `default`, or the environment variable `name` when set (a second peer on other
/// ports, e.g. to try a change to its script while the shared one serves other test runs).
pub fn peer_port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a port number")),
        _ => default,
    }
}

/// A fault the proxy injects instead of (or after) forwarding a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status (e.g. 502) without forwarding upstream.
    Status(u16),
    /// Answer 429 with a `Retry-After` header, without forwarding upstream.
    TooManyRequests { retry_after: RetryAfter },
    /// Hold the request unanswered (not forwarded) for the proxy's hold time (see
    /// [`FaultProxy::set_hold`], default 300 s: longer than any client timeout), then drop the connection.
    Timeout,
    /// Forward the request, let upstream apply and answer it, then drop the connection without
    /// answering: the endpoint did the work but the client never learns it.
    DropAfterForward,
}

impl Fault {
    /// A short name for statistics: `status-502`, `429`, `timeout`, `drop-after-forward`.
    pub fn label(&self) -> String {
        match self {
            Fault::Status(s) => format!("status-{s}"),
            Fault::TooManyRequests { .. } => "429".to_owned(),
            Fault::Timeout => "timeout".to_owned(),
            Fault::DropAfterForward => "drop-after-forward".to_owned(),
        }
    }
}

/// The `Retry-After` header of an injected 429.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta-seconds: `Retry-After: 2`.
    Seconds(u64),
    /// An HTTP date this long after the answer is sent: `Retry-After: Wed, 02 Dec 2026 16:00:02 GMT`.
    DateIn(Duration),
    /// The header verbatim (for garbage such as `soon`).
    Raw(String),
    /// No `Retry-After` header at all.
    Absent,
}

impl RetryAfter {
    fn header_value(&self) -> Option<String> {
        match self {
            RetryAfter::Seconds(s) => Some(s.to_string()),
            // HTTP dates have whole seconds: round up so the client never waits less than asked.
            RetryAfter::DateIn(d) => Some(httpdate::fmt_http_date(SystemTime::now() + *d + Duration::from_millis(999))),
            RetryAfter::Raw(s) => Some(s.clone()),
            RetryAfter::Absent => None,
        }
    }
}

/// Counts of what the proxy saw and did, for assertions and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received.
    pub requests: u64,
    /// Requests forwarded upstream (including those answered and then dropped).
    pub forwarded: u64,
    /// Faults injected, all kinds.
    pub faults: u64,
    /// Faults injected per [`Fault::label`].
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Per needle given to [`FaultProxy::fail_matching`] or [`FaultProxy::watch`]: requests whose body
    /// contained it, and faults injected on them (by any rule).
    pub needles: BTreeMap<String, NeedleStats>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeedleStats {
    pub seen: u64,
    pub faulted: u64,
}

impl ProxyStats {
    /// Requests whose body contained `needle` (0 when the needle was never registered).
    pub fn seen(&self, needle: &str) -> u64 {
        self.needles.get(needle).map_or(0, |n| n.seen)
    }

    /// Faults injected on requests whose body contained `needle`.
    pub fn faulted(&self, needle: &str) -> u64 {
        self.needles.get(needle).map_or(0, |n| n.faulted)
    }
}

struct MatchRule {
    needle: String,
    fault: Fault,
    remaining: usize,
}

struct RandomFaults {
    share: f64,
    kinds: Vec<Fault>,
    rng: StdRng,
}

struct State {
    rules: Vec<MatchRule>,
    random: Option<RandomFaults>,
    hold: Duration,
    stats: ProxyStats,
}

impl State {
    /// Counts the request and decides its fault. Matching rules come first (in the order they were
    /// added); the random draw is made for every other request so a seed gives the same sequence.
    fn decide(&mut self, body: &[u8]) -> Option<Fault> {
        self.stats.requests += 1;
        let text = String::from_utf8_lossy(body);
        let contained: Vec<String> = self.stats.needles.keys().filter(|n| text.contains(n.as_str())).cloned().collect();
        for n in &contained {
            if let Some(s) = self.stats.needles.get_mut(n) {
                s.seen += 1;
            }
        }
        let matched = self.rules.iter_mut().find(|r| r.remaining > 0 && text.contains(r.needle.as_str())).map(|r| {
            r.remaining -= 1;
            r.fault.clone()
        });
        let fault = match matched {
            Some(f) => Some(f),
            None => self.random.as_mut().and_then(|r| {
                let hit = r.rng.random::<f64>() < r.share;
                (hit && !r.kinds.is_empty()).then(|| r.kinds[r.rng.random_range(0..r.kinds.len())].clone())
            }),
        };
        if let Some(f) = &fault {
            self.stats.faults += 1;
            *self.stats.faults_by_kind.entry(f.label()).or_default() += 1;
            for n in &contained {
                if let Some(s) = self.stats.needles.get_mut(n) {
                    s.faulted += 1;
                }
            }
        }
        fault
    }
}

/// A fault-injecting HTTP/1 proxy on `127.0.0.1:<free port>`, forwarding to one upstream. It runs on a
/// thread of its own with its own tokio runtime, so sync tests, `#[tokio::test]` tests and tests that
/// spawn the `ferry` binary can all use it. Stops (dropping every open connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The injected error that makes hyper close a connection without answering.
#[derive(Debug)]
struct Dropped(&'static str);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Dropped {}

impl FaultProxy {
    /// Starts the proxy forwarding to `upstream` (e.g. `"http://127.0.0.1:18000"`). Panics when no local
    /// port can be bound (this is test support).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fault proxy: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("fault proxy: non-blocking listener");
        let addr = listener.local_addr().expect("fault proxy: local address");
        let state = Arc::new(Mutex::new(State {
            rules: Vec::new(),
            random: None,
            hold: Duration::from_secs(300),
            stats: ProxyStats::default(),
        }));
        let (shutdown, stop) = watch::channel(false);
        let upstream = upstream.trim_end_matches('/').to_owned();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fault proxy: tokio runtime");
                runtime.block_on(serve(listener, upstream, thread_state, stop));
                // Dropping the runtime here cancels every connection still open (held timeouts included).
            })
            .expect("fault proxy: thread");
        FaultProxy { addr, state, shutdown, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults on a `share` (0.0..=1.0) of the requests no [`FaultProxy::fail_matching`] rule takes,
    /// drawn uniformly from `kinds`; the same seed and request order give the same faults.
    pub fn set_random(&self, share: f64, kinds: &[Fault], seed: u64) {
        self.lock().random = Some(RandomFaults { share: share.clamp(0.0, 1.0), kinds: kinds.to_vec(), rng: StdRng::seed_from_u64(seed) });
    }

    /// The next `times` requests whose body contains `needle` get `fault`; other requests pass (or take
    /// their random chance). Also starts counting `needle` in [`ProxyStats::needles`].
    pub fn fail_matching(&self, needle: &str, fault: Fault, times: usize) {
        let mut state = self.lock();
        state.stats.needles.entry(needle.to_owned()).or_default();
        state.rules.push(MatchRule { needle: needle.to_owned(), fault, remaining: times });
    }

    /// Counts requests whose body contains `needle` without injecting anything.
    pub fn watch(&self, needle: &str) {
        self.lock().stats.needles.entry(needle.to_owned()).or_default();
    }

    /// How long a [`Fault::Timeout`] holds its request before dropping the connection.
    pub fn set_hold(&self, hold: Duration) {
        self.lock().hold = hold;
    }

    /// Removes every rule and the random faults; statistics are kept.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.random = None;
    }

    pub fn stats(&self) -> ProxyStats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this file; the counters are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, upstream: String, state: Arc<Mutex<State>>, mut stop: watch::Receiver<bool>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("fault proxy: tokio listener");
    let client = reqwest::Client::builder()
        // The client under test owns the timeouts; the proxy waits as long as upstream takes.
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .expect("fault proxy: HTTP client");
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let (upstream, state, client) = (upstream.clone(), state.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, upstream.clone(), state.clone(), client.clone()));
            // An error here is either the client going away or a fault dropping the connection.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(req: Request<Incoming>, upstream: String, state: Arc<Mutex<State>>, client: reqwest::Client) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped("request body unreadable"))?.to_bytes();
    let (fault, hold) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        (s.decide(&body), s.hold)
    };
    match fault {
        Some(Fault::Status(code)) => return Ok(plain_answer(code, None)),
        Some(Fault::TooManyRequests { retry_after }) => return Ok(plain_answer(429, retry_after.header_value())),
        Some(Fault::Timeout) => {
            tokio::time::sleep(hold).await;
            return Err(Dropped("held past the client's timeout"));
        }
        Some(Fault::DropAfterForward) | None => {}
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => return Ok(plain_answer(502, None).map(|_| Full::new(Bytes::from(format!("fault proxy: upstream unreachable: {e}"))))),
    };
    {
        state.lock().unwrap_or_else(|p| p.into_inner()).stats.forwarded += 1;
    }
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(|_| Dropped("upstream answer unreadable"))?;
    if fault == Some(Fault::DropAfterForward) {
        // Upstream has applied the request and answered; the client never hears of it.
        return Err(Dropped("answer dropped after forwarding"));
    }
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !is_hop_by_hop(name.as_str()) {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
}

fn plain_answer(status: u16, retry_after: Option<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("fault proxy: injected HTTP {status}"))));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    if let Some(value) = retry_after.and_then(|v| hyper::header::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
    }
    response
}

/// Headers that describe one hop's connection, not the message (RFC 9110 §7.6.1), plus `host` and
/// `content-length`, which are set again for the body actually sent on each hop.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host" | "content-length"
    )
}

#[cfg(test)]
mod tests;
