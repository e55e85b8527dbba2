//! What IMS (or anything between us and IMS) answers: `parse_token_response` in both expiry
//! units, `parse_user_token_response`, `check_revoke_response`, `ImsError::from_response` and its
//! `Display`, and `retry_after::parse`. Responses are untrusted input: a proxy, an outage page or
//! a hostile network can put anything in them.
//!
//! Input: two bytes of HTTP status (big-endian), then `body 0xFF x-debug-id 0xFF Retry-After`;
//! a missing part is a missing header.
#![no_main]

use std::time::{Duration, SystemTime};

use imsgate_ims::HttpResponse;
use imsgate_ims::error::ImsError;
use imsgate_ims::retry_after::{self, MAX_RETRY_AFTER};
use imsgate_ims::token::{ExpiresInUnit, parse_token_response};
use imsgate_ims::user_oauth::{check_revoke_response, parse_user_token_response};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*status);
    let mut it = rest.splitn(3, |b| *b == 0xFF);
    let body = it.next().unwrap_or_default().to_vec();
    let mut headers = Vec::new();
    if let Some(v) = it.next() {
        headers.push((
            "x-debug-id".to_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    if let Some(v) = it.next() {
        let v = String::from_utf8_lossy(v).into_owned();
        if let Some(wait) = retry_after::parse(&v, now()) {
            assert!(wait <= MAX_RETRY_AFTER);
        }
        headers.push(("retry-after".to_owned(), v));
    }
    let resp = HttpResponse {
        status,
        headers,
        body,
    };
    let n = now();
    for unit in [ExpiresInUnit::Seconds, ExpiresInUnit::Milliseconds] {
        match parse_token_response(&resp, n, unit) {
            Ok(t) => {
                assert!((200..300).contains(&status));
                assert!(t.lifetime() > Duration::ZERO);
                let _ = t.expires_at_unix_ms();
            }
            Err(e) => {
                let _ = e.to_string();
                let _ = format!("{e:?}");
            }
        }
    }
    match parse_user_token_response(&resp, n) {
        Ok(t) => assert!(t.access.lifetime() > Duration::ZERO),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let e = ImsError::from_response(&resp, n);
    let _ = e.to_string();
    let _ = e.kind.is_retryable();
    if let Some(wait) = e.retry_after {
        assert!(wait <= MAX_RETRY_AFTER);
    }
    if let Err(e) = check_revoke_response(&resp, n) {
        let _ = e.to_string();
    }
});
