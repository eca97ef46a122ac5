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

    pub fn render(&self, depth: &ferry_engine::store::jobs::QueueDepth) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let flows = self.flows.lock().expect("metrics lock");
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
            for (flow, f) in flows.iter() {
                let _ = writeln!(out, "{name}{{flow=\"{}\"}} {}", esc(flow), value(f));
            }
        }
        let _ = writeln!(out, "# HELP ferry_queue_jobs Jobs in the queue by state.\n# TYPE ferry_queue_jobs gauge");
        for (state, n) in [("queued", depth.queued), ("due", depth.due), ("running", depth.running), ("failed", depth.failed)] {
            let _ = writeln!(out, "ferry_queue_jobs{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP ferry_webhooks_total Webhook deliveries by connection and outcome.\n# TYPE ferry_webhooks_total counter");
        for ((conn, outcome), n) in self.webhooks.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "ferry_webhooks_total{{connection=\"{}\",outcome=\"{outcome}\"}} {n}", esc(conn));
        }
        let l = self.latency.lock().expect("metrics lock");
        let name = "ferry_webhook_to_target_seconds";
        let _ = writeln!(out, "# HELP {name} From a webhook's arrival to the end of its targeted sync.\n# TYPE {name} histogram");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", l.buckets[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", l.count, l.sum, l.count);
        out
    }
}
