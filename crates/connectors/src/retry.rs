//! Per-request handling of transient HTTP failures for the live connectors' clients (Tryton JSON-RPC,
//! Vendure GraphQL).
//!
//! - `Retry-After` (delta-seconds or an HTTP date, RFC 9110 §10.2.3) is honoured, capped at
//!   [`MAX_RETRY_AFTER`] so a misbehaving server cannot park a run for hours.
//! - Idempotent requests (reads, searches, find-by-key, login) are retried inside the client, a few
//!   times with backoff and jitter, so a few failing calls slow a run instead of aborting it.
//! - Non-idempotent requests (creates, workflow buttons, mutations) are re-sent only when the server
//!   certainly did not act on them: the connection could not be opened, or the answer was 429 (the
//!   server refused the request). Anything else is left to the engine, whose find-by-key before create
//!   makes a repeated write safe.

use ferry_engine::backoff::Backoff;
use std::time::{Duration, SystemTime};

/// The longest wait a `Retry-After` header can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` value as a wait from `now`: delta-seconds (`"2"`) or an HTTP date (any of the three
/// formats RFC 9110 requires recipients to accept). A date in the past is no wait; the result is capped
/// at [`MAX_RETRY_AFTER`]. `None` for anything else (the caller falls back to its own backoff).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // more digits than a u64 holds is still "a very long time": the cap applies
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The `Retry-After` of an answer, when present and readable.
pub fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// `HTTP 502 Bad Gateway`, `HTTP 429 Too Many Requests (retry after 2s)`: one message per status.
pub fn status_message(status: u16, retry_after: Option<Duration>) -> String {
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut msg = format!("HTTP {status} {reason}").trim_end().to_owned();
    if let Some(wait) = retry_after {
        msg.push_str(&format!(" (retry after {}s)", wait.as_secs_f64()));
    }
    msg
}

/// Whether a request may be sent again after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, searches, login: sending it twice does no harm.
    Safe,
    /// Creates, buttons, mutations: re-sent only when the server certainly did not act on it.
    Unsafe,
}

/// Why a request failed transiently, as far as a re-send is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransientCause {
    /// The connection could not be opened: the request never left.
    NotSent,
    /// HTTP 429: the server refused the request without acting on it.
    Refused,
    /// Timeout, dropped connection, 5xx: the server may have acted on it.
    Unknown,
}

/// Bounded per-request retries: `attempts` sends in all, backoff with jitter between them unless the
/// server said how long to wait.
#[derive(Clone, Copy, Debug)]
pub struct RequestRetry {
    pub attempts: u32,
    pub backoff: Backoff,
}

impl RequestRetry {
    /// 4 sends, 0.25 s, 0.5 s, 1 s (± jitter) apart: with 10 % of calls failing independently, one
    /// request in 10,000 still fails and goes to the engine's own retry.
    pub const DEFAULT: RequestRetry = RequestRetry { attempts: 4, backoff: Backoff { base: Duration::from_millis(250), max: Duration::from_secs(4) } };

    /// Whether the failed send number `attempt` (from 1) should be followed by another.
    pub fn should_retry(&self, attempt: u32, idempotency: Idempotency, cause: TransientCause) -> bool {
        attempt < self.attempts && (idempotency == Idempotency::Safe || cause != TransientCause::Unknown)
    }

    /// The wait after failed send number `attempt`: the server's `Retry-After` (already capped) when
    /// given, otherwise exponential backoff with jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or_else(|| self.backoff.delay(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds_are_read_and_capped() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3600", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn http_dates_in_all_three_formats_are_a_wait_from_now() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let now = at(784_111_777 - 5);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), Some(Duration::from_secs(5)));
        // a date already past is no wait; one far ahead is capped
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 + 100)), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 - 86_400)), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn garbage_is_no_answer() {
        let now = SystemTime::now();
        for value in ["", "soon", "-1", "1.5", "2s", "Sun, 06 Nov 1994", "Mon, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn the_header_is_found_on_an_answer() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after_of(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after_of(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn one_message_per_status() {
        assert_eq!(status_message(502, None), "HTTP 502 Bad Gateway");
        assert_eq!(status_message(503, None), "HTTP 503 Service Unavailable");
        assert_eq!(status_message(429, Some(Duration::from_secs(2))), "HTTP 429 Too Many Requests (retry after 2s)");
        assert_eq!(status_message(599, None), "HTTP 599");
    }

    #[test]
    fn only_safe_requests_are_resent_when_the_server_may_have_acted() {
        let r = RequestRetry::DEFAULT;
        assert!(r.should_retry(1, Idempotency::Safe, TransientCause::Unknown));
        assert!(!r.should_retry(1, Idempotency::Unsafe, TransientCause::Unknown));
        assert!(r.should_retry(1, Idempotency::Unsafe, TransientCause::Refused));
        assert!(r.should_retry(1, Idempotency::Unsafe, TransientCause::NotSent));
        assert!(!r.should_retry(r.attempts, Idempotency::Safe, TransientCause::Refused), "bounded");
    }

    #[test]
    fn the_servers_wait_wins_over_backoff_and_is_capped() {
        let r = RequestRetry::DEFAULT;
        assert_eq!(r.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(r.delay(1, Some(Duration::from_secs(600))), MAX_RETRY_AFTER);
        let d = r.delay(2, None);
        assert!(d >= Duration::from_millis(250) && d <= Duration::from_millis(500), "{d:?}");
    }
}
