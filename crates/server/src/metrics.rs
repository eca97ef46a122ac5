//! Prometheus metrics, rendered by hand in the text exposition format (a handful of counters does not
//! need a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct FlowMetrics {
    synced: u64,
    failed: u64,
    runs: u64,
    run_seconds: f64,
    jobs_failed: u64,
}

/// Buckets (seconds) of the webhook → target latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    flows: Mutex<BTreeMap<String, FlowMetrics>>,
    latency: Mutex<Latency>,
    webhooks: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    pub fn run_finished(&self, flow: &str, synced: u64, failed: u64, took: Duration) {
        let mut flows = self.flows.lock().expect("metrics lock");
        let f = flows.entry(flow.to_owned()).or_default();
        f.synced += synced;
        f.failed += failed;
        f.runs += 1;
        f.run_seconds += took.as_secs_f64();
    }

    pub fn job_failed(&self, flow: &str) {
        self.flows.lock().expect("metrics lock").entry(flow.to_owned()).or_default().jobs_failed += 1;
    }

    pub fn webhook(&self, connection: &str, outcome: &'static str) {
        *self.webhooks.lock().expect("metrics lock").entry((connection.to_owned(), outcome)).or_default() += 1;
    }

    /// From a webhook's arrival to its targeted sync's completion.
    pub fn webhook_latency(&self, took: Duration) {
        let s = took.as_secs_f64();
        let mut l = self.latency.lock().expect("metrics lock");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *b {
                l.buckets[i] += 1;
            }
        }
        l.count += 1;
        l.sum += s;
    }

    /// This workspace's metrics alone, unlabelled.
    pub fn render(&self, depth: &ferry_engine::store::jobs::QueueDepth) -> String {
        render_all(&[(None, self, *depth)])
    }
}

/// The exposition of several workspaces' metrics: each family's HELP and TYPE once, then its samples of
/// every workspace (with a `workspace` label where one is given).
pub fn render_all(parts: &[(Option<&str>, &Metrics, ferry_engine::store::jobs::QueueDepth)]) -> String {
    let mut out = String::new();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    // `workspace="…",` to put first among a sample's labels, or nothing.
    let ws = |w: Option<&str>| w.map(|w| format!("workspace=\"{}\",", esc(w))).unwrap_or_default();
    // A sample's labels: `{a="b"}`, or nothing at all when there are none.
    let labels = |w: Option<&str>, rest: &str| {
        let all = format!("{}{rest}", ws(w));
        let all = all.trim_end_matches(',');
        if all.is_empty() { String::new() } else { format!("{{{all}}}") }
    };
    type Series = (&'static str, &'static str, &'static str, fn(&FlowMetrics) -> String);
    let series: [Series; 5] = [
        ("ferry_records_synced_total", "counter", "Records written (created, updated, retired) per flow.", |f| f.synced.to_string()),
        ("ferry_records_failed_total", "counter", "Records parked as failures per flow.", |f| f.failed.to_string()),
        ("ferry_run_duration_seconds_sum", "counter", "Total seconds spent in runs per flow.", |f| f.run_seconds.to_string()),
        ("ferry_run_duration_seconds_count", "counter", "Runs per flow.", |f| f.runs.to_string()),
        ("ferry_jobs_failed_total", "counter", "Job attempts that failed (retried or given up) per flow.", |f| f.jobs_failed.to_string()),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (w, m, _) in parts {
            for (flow, f) in m.flows.lock().expect("metrics lock").iter() {
                let _ = writeln!(out, "{name}{} {}", labels(*w, &format!("flow=\"{}\"", esc(flow))), value(f));
            }
        }
    }
    let _ = writeln!(out, "# HELP ferry_queue_jobs Jobs in the queue by state.\n# TYPE ferry_queue_jobs gauge");
    for (w, _, depth) in parts {
        for (state, n) in [("queued", depth.queued), ("due", depth.due), ("running", depth.running), ("failed", depth.failed)] {
            let _ = writeln!(out, "ferry_queue_jobs{} {n}", labels(*w, &format!("state=\"{state}\"")));
        }
    }
    let _ = writeln!(out, "# HELP ferry_webhooks_total Webhook deliveries by connection and outcome.\n# TYPE ferry_webhooks_total counter");
    for (w, m, _) in parts {
        for ((conn, outcome), n) in m.webhooks.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "ferry_webhooks_total{} {n}", labels(*w, &format!("connection=\"{}\",outcome=\"{outcome}\"", esc(conn))));
        }
    }
    let name = "ferry_webhook_to_target_seconds";
    let _ = writeln!(out, "# HELP {name} From a webhook's arrival to the end of its targeted sync.\n# TYPE {name} histogram");
    for (w, m, _) in parts {
        let l = m.latency.lock().expect("metrics lock");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{} {}", labels(*w, &format!("le=\"{b}\"")), l.buckets[i]);
        }
        let _ = writeln!(out, "{name}_bucket{} {}", labels(*w, "le=\"+Inf\""), l.count);
        let _ = writeln!(out, "{name}_sum{} {}\n{name}_count{} {}", labels(*w, ""), l.sum, labels(*w, ""), l.count);
    }
    out
}
