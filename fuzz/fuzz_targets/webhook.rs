//! Webhook deliveries: the signature and timestamp check on any headers and body (never a panic; a
//! body signed with the secret and a fresh timestamp always passes, a changed body never does), then the
//! payload parsed as JSON and interpreted as Vendure's webhook events.
#![no_main]
use axum::http::{HeaderMap, HeaderValue};
use chrono::TimeZone;
use ferry_server::webhook::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&sig_len, rest)) = data.split_first() else { return };
    let Some((&ts_len, rest)) = rest.split_first() else { return };
    let (sig, rest) = rest.split_at((sig_len as usize).min(rest.len()));
    let (ts, body) = rest.split_at((ts_len as usize % 24).min(rest.len()));
    let now = chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap();

    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(sig) {
        headers.insert("x-ferry-signature", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(ts) {
        headers.insert("x-ferry-timestamp", v);
    }
    let _ = verify(SECRET, &headers, body, now);

    let mut signed = HeaderMap::new();
    signed.insert("x-ferry-signature", HeaderValue::from_str(&sign(SECRET, body)).unwrap());
    signed.insert("x-ferry-timestamp", HeaderValue::from_str(&now.timestamp().to_string()).unwrap());
    assert!(verify(SECRET, &signed, body, now).is_ok(), "a correctly signed body verifies");
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(verify(SECRET, &signed, &tampered, now).is_err(), "a changed body never verifies");

    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) {
        let states = ["PaymentAuthorized".to_owned(), "PaymentSettled".to_owned()];
        for (_, keys) in ferry_connectors::vendure::webhook_signals(&payload, &states) {
            assert!(keys.iter().all(|k| !k.is_empty()));
        }
    }
});
