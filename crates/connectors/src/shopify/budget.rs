//! The rate budget of Shopify's GraphQL Admin API: a leaky bucket of query-cost points per app and shop.
//!
//! Every answer carries `extensions.cost` = {requestedQueryCost, actualQueryCost, throttleStatus
//! {maximumAvailable, currentlyAvailable, restoreRate}}. A request whose requested cost exceeds what is
//! available is refused with a `THROTTLED` error (nothing was done). The client keeps a [`Budget`]:
//! the last throttle status seen, restored over time at `restoreRate`, minus what requests in flight
//! were estimated to take. Before a request it waits until the bucket holds the request's estimated cost
//! plus a reserve (so the bucket never runs empty and nothing is throttled in a steady run); after a
//! `THROTTLED` answer it waits until the requested cost has been restored, then sends again.
//!
//! The configured plan ([`Plan`]) is only the first guess: the first answer's throttle status replaces it.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Shopify's plans and their documented GraphQL Admin API restore rates (points per second,
/// shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits). The bucket holds 20 seconds of restore
/// (2,000 points at the Standard plan's 100/s, as Shopify's own example throttle status shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Standard,
    Advanced,
    Plus,
    Enterprise,
}

impl Plan {
    pub fn restore_rate(self) -> f64 {
        match self {
            Plan::Standard => 100.0,
            Plan::Advanced => 200.0,
            Plan::Plus => 1000.0,
            Plan::Enterprise => 2000.0,
        }
    }
    pub fn bucket_size(self) -> f64 {
        self.restore_rate() * 20.0
    }
}

/// `extensions.cost` of one answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    pub requested: f64,
    /// `None` when the request was throttled (it did not run).
    pub actual: Option<f64>,
    pub status: ThrottleStatus,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

impl Cost {
    /// The cost block of an answer's body, when it has one with sensible numbers.
    pub fn of(body: &Value) -> Option<Cost> {
        let cost = body.pointer("/extensions/cost")?;
        let t = &cost["throttleStatus"];
        let num = |v: &Value| v.as_f64().filter(|n| n.is_finite() && *n >= 0.0);
        let status = ThrottleStatus {
            maximum_available: num(&t["maximumAvailable"])?,
            currently_available: num(&t["currentlyAvailable"])?,
            restore_rate: num(&t["restoreRate"]).filter(|r| *r > 0.0)?,
        };
        Some(Cost { requested: num(&cost["requestedQueryCost"])?, actual: num(&cost["actualQueryCost"]), status })
    }
}

/// Whether an answer is Shopify's throttle refusal (`errors[].extensions.code == "THROTTLED"`).
pub fn is_throttled(body: &Value) -> bool {
    body["errors"].as_array().into_iter().flatten().any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"))
}

/// What the client knows of the bucket.
#[derive(Clone, Debug)]
pub struct Budget {
    maximum: f64,
    restore_rate: f64,
    /// Points available at `at` (from the last answer, minus estimates of requests sent since).
    available: f64,
    at: Instant,
    /// Points kept in the bucket as a margin for other clients of the same app and shop and for
    /// estimates that were too low: a fraction of the bucket.
    reserve_fraction: f64,
    /// Requested cost last seen per operation: the estimate for its next request.
    estimates: HashMap<String, f64>,
}

/// The estimate of an operation never seen: a mutation costs 10, a modest query about as much.
pub const DEFAULT_ESTIMATE: f64 = 10.0;

impl Budget {
    pub fn new(plan: Plan, reserve_fraction: f64, now: Instant) -> Budget {
        Budget::with(plan.bucket_size(), plan.restore_rate(), reserve_fraction, now)
    }

    pub fn with(maximum: f64, restore_rate: f64, reserve_fraction: f64, now: Instant) -> Budget {
        Budget {
            maximum,
            restore_rate: restore_rate.max(f64::MIN_POSITIVE),
            available: maximum,
            at: now,
            reserve_fraction: reserve_fraction.clamp(0.0, 0.9),
            estimates: HashMap::new(),
        }
    }

    /// Points available at `now`: restored since the last observation, never above the bucket's size.
    pub fn available_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.available + elapsed * self.restore_rate).min(self.maximum)
    }

    pub fn reserve(&self) -> f64 {
        self.maximum * self.reserve_fraction
    }

    /// The estimated cost of the next request of `operation`.
    pub fn estimate(&self, operation: &str) -> f64 {
        self.estimates.get(operation).copied().unwrap_or(DEFAULT_ESTIMATE)
    }

    /// How long to wait before sending a request that costs `cost`, so that the bucket still holds the
    /// reserve after it. A cost the bucket can never hold with the reserve waits for a full bucket
    /// (Shopify then answers whether it runs).
    pub fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        let need = (cost + self.reserve()).min(self.maximum);
        let missing = need - self.available_at(now);
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(missing / self.restore_rate)
    }

    /// A request of `operation` is sent at `now` with estimated cost `cost`: take it from the bucket now,
    /// so concurrent requests pace against each other before their answers arrive.
    pub fn spend(&mut self, cost: f64, now: Instant) {
        self.available = self.available_at(now) - cost;
        self.at = now;
    }

    /// An answer arrived at `now`: the server's throttle status replaces the estimate, and the
    /// operation's requested cost becomes its next estimate.
    pub fn observe(&mut self, operation: &str, cost: &Cost, now: Instant) {
        self.maximum = cost.status.maximum_available.max(1.0);
        self.restore_rate = cost.status.restore_rate;
        self.available = cost.status.currently_available.min(self.maximum);
        self.at = now;
        self.estimates.insert(operation.to_owned(), cost.requested);
    }

    /// After a `THROTTLED` answer: the wait until the requested cost is restored (from the answer's
    /// throttle status), at least a tenth of a second.
    pub fn throttled_wait(cost: &Cost) -> Duration {
        let missing = (cost.requested.min(cost.status.maximum_available) - cost.status.currently_available).max(0.0);
        Duration::from_secs_f64(missing / cost.status.restore_rate).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn answer(requested: f64, actual: Option<f64>, available: f64) -> Value {
        json!({"data": {}, "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available, "restoreRate": 100.0}}}})
    }

    #[test]
    fn plans_carry_shopifys_documented_rates() {
        assert_eq!((Plan::Standard.restore_rate(), Plan::Standard.bucket_size()), (100.0, 2000.0));
        assert_eq!(Plan::Advanced.restore_rate(), 200.0);
        assert_eq!(Plan::Plus.restore_rate(), 1000.0);
        assert_eq!(Plan::Enterprise.restore_rate(), 2000.0);
    }

    #[test]
    fn the_cost_block_is_read_and_a_throttle_is_recognised() {
        let c = Cost::of(&answer(52.0, Some(12.0), 1988.0)).unwrap();
        assert_eq!(c.requested, 52.0);
        assert_eq!(c.actual, Some(12.0));
        assert_eq!(c.status.currently_available, 1988.0);
        assert!(Cost::of(&json!({"data": {}})).is_none());
        let throttled = json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 500, "actualQueryCost": null,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 300.0, "restoreRate": 100.0}}}});
        assert!(is_throttled(&throttled));
        assert!(!is_throttled(&answer(1.0, Some(1.0), 1.0)));
        let c = Cost::of(&throttled).unwrap();
        assert_eq!(c.actual, None);
        // 200 points missing at 100/s
        assert_eq!(Budget::throttled_wait(&c), Duration::from_secs(2));
    }

    #[test]
    fn a_full_bucket_sends_at_once_and_a_drained_one_waits_for_the_shortfall() {
        let t0 = Instant::now();
        let mut b = Budget::new(Plan::Standard, 0.1, t0);
        assert_eq!(b.wait_for(100.0, t0), Duration::ZERO);
        b.observe("Orders", &Cost::of(&answer(300.0, Some(250.0), 150.0)).unwrap(), t0);
        assert_eq!(b.estimate("Orders"), 300.0);
        assert_eq!(b.estimate("Unknown"), DEFAULT_ESTIMATE);
        // needs 300 + 200 reserve, has 150: 350 points at 100/s
        assert_eq!(b.wait_for(300.0, t0), Duration::from_millis(3500));
        // two seconds later 200 more are there
        assert_eq!(b.wait_for(300.0, t0 + Duration::from_secs(2)), Duration::from_millis(1500));
        // and the bucket never holds more than its size
        assert_eq!(b.available_at(t0 + Duration::from_secs(3600)), 2000.0);
    }

    #[test]
    fn requests_in_flight_are_paced_against_each_other() {
        let t0 = Instant::now();
        let mut b = Budget::with(1000.0, 50.0, 0.0, t0);
        b.spend(600.0, t0);
        assert_eq!(b.wait_for(400.0, t0), Duration::ZERO);
        b.spend(400.0, t0);
        assert_eq!(b.wait_for(100.0, t0), Duration::from_secs(2));
    }

    proptest! {
        /// Whatever the state, after waiting the time asked for the request fits with the reserve kept
        /// (or the bucket is full), and waiting any shorter would not have been enough.
        #[test]
        fn the_wait_is_exactly_enough(max in 100.0f64..40000.0, rate in 1.0f64..2000.0, avail_frac in -0.5f64..1.0,
                                      cost in 0.0f64..2000.0, reserve in 0.0f64..0.5, elapsed_ms in 0u64..100_000) {
            let t0 = Instant::now();
            let mut b = Budget::with(max, rate, reserve, t0);
            b.spend(max * (1.0 - avail_frac), t0);
            let now = t0 + Duration::from_millis(elapsed_ms);
            let wait = b.wait_for(cost, now);
            let need = (cost + b.reserve()).min(max);
            let after = b.available_at(now + wait);
            prop_assert!(after + 1e-6 * max >= need, "after waiting {wait:?} only {after} of {need}");
            if wait > Duration::from_millis(1) {
                let before = b.available_at(now + wait - Duration::from_millis(1));
                prop_assert!(before < need, "{before} was already enough");
            }
            prop_assert!(b.available_at(now + wait) <= max);
        }

        /// The wait after a throttle restores at least the requested cost (capped at the bucket).
        #[test]
        fn a_throttled_request_waits_until_its_cost_is_restored(requested in 1.0f64..5000.0, max in 100.0f64..20000.0,
                                                                 avail_frac in 0.0f64..1.0, rate in 1.0f64..2000.0) {
            let available = max * avail_frac;
            let c = Cost { requested, actual: None, status: ThrottleStatus { maximum_available: max, currently_available: available, restore_rate: rate } };
            let wait = Budget::throttled_wait(&c).as_secs_f64();
            prop_assert!(available + wait * rate + 1e-6 >= requested.min(max));
            prop_assert!(wait >= 0.1);
        }
    }
}
