//! The cache under concurrency, refresh and IMS failure, end to end over real HTTP with the
//! in-process emulator and short token lifetimes.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use imsgate_emulator::{Endpoint, Fault};
use serde_json::Value;
use support::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_first_requests_cause_one_ims_request() {
    let emulator = start_emulator(300).await;
    // IMS is slow, so every caller arrives while the first token request is still in flight.
    emulator.set_fault(Endpoint::Token, Fault::latency(Duration::from_millis(800)));
    let h = Harness::start_with(emulator, Options::default()).await;
    let token = caller("burst");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .unwrap();
    let url = format!("{}/api/client-token", h.url);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let req = http
                .get(&url)
                .header("Authorization", format!("Bearer {token}"));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["clientAccessToken"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1, "every caller gets the one token");
    assert_eq!(
        h.emulator.count(Endpoint::Token),
        1,
        "exactly one IMS token request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_a_cold_key_share_one_fetch_and_its_error() {
    // Straight at the cache, on a key nobody warmed: 1000 callers, one request, one shared error.
    let emulator = start_emulator(300).await;
    emulator.set_fault(
        Endpoint::Token,
        Fault {
            latency_ms: 500,
            ..Fault::status(
                500,
                r#"{"error":"internal_error","error_description":"Please try again later"}"#,
            )
        },
    );
    let h = Harness::start_with(emulator, Options::default()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    h.emulator.reset_counts();
    let key = imsgate_broker::cache::TokenKey {
        credential: "entitlement".into(),
        org_id: None,
        scopes: imsgate_ims::ScopeSet::new(["openid", "AdobeID"]),
    };
    let cache = h.broker.state.cache.clone();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.get(key).await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().expect_err("IMS is failing");
        assert_eq!(err.cause.status, Some(500));
    }
    assert_eq!(h.emulator.count(Endpoint::Token), 1);
    // The failure is remembered: an immediate retry does not reach IMS.
    assert!(cache.get(key.clone()).await.is_err());
    assert_eq!(h.emulator.count(Endpoint::Token), 1);
}

/// Polls `/api/client-token` every `every` for `span`, returning (status, latency, body) per call.
async fn poll(h: &Harness, span: Duration, every: Duration) -> Vec<(u16, Duration, Value)> {
    let token = caller("poller");
    let end = Instant::now() + span;
    let mut out = Vec::new();
    while Instant::now() < end {
        let started = Instant::now();
        let r = h.client_token(&token).await;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut body: Value = r.json().await.unwrap();
        body["received_at_ms"] = now_ms().into();
        if let Some(ra) = retry_after {
            body["retry_after_header"] = ra.into();
        }
        out.push((status, started.elapsed(), body));
        tokio::time::sleep(every).await;
    }
    out
}

#[tokio::test]
async fn refresh_happens_before_expiry_without_errors_or_latency_spikes() {
    // A 4 s token refreshes about 0.8 s before expiry.
    let h = Harness::start(Options {
        lifetime_secs: 4,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    // Every later IMS request is slow. A caller that had to wait for a refresh would see it.
    h.emulator
        .set_fault(Endpoint::Token, Fault::latency(Duration::from_millis(500)));
    let results = poll(&h, Duration::from_secs(8), Duration::from_millis(40)).await;
    let mut tokens = HashSet::new();
    for (status, latency, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert!(
            *latency < Duration::from_millis(250),
            "a caller waited {latency:?}"
        );
        let expiry = body["tokenExpiryTimestampMs"].as_u64().unwrap();
        let received = body["received_at_ms"].as_u64().unwrap();
        assert!(
            expiry > received,
            "served an expired token: expiry {expiry} at {received}"
        );
        tokens.insert(body["clientAccessToken"].as_str().unwrap().to_owned());
    }
    // 8 s of 4 s tokens refreshed at about 3.2 s: two or three background refreshes, not more.
    assert!(tokens.len() >= 3, "saw {} tokens", tokens.len());
    let requests = h.emulator.count(Endpoint::Token);
    assert!((3..=4).contains(&requests), "{requests} IMS requests");
}

/// Runs an outage of the given fault through a 3-second token's life: served until expiry, then
/// 503 with Retry-After, then recovery, with a bounded number of IMS requests.
async fn outage(fault: Fault, max_requests_during_outage: u64) {
    let h = Harness::start(Options {
        lifetime_secs: 3,
        request_timeout_ms: 400,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    let first: Value = h.client_token(&caller("o")).await.json().await.unwrap();
    h.emulator.set_fault(Endpoint::Token, fault);
    h.emulator.reset_counts();

    // Longer than a refresh cycle and past expiry.
    let during = poll(&h, Duration::from_secs(5), Duration::from_millis(20)).await;
    let served: Vec<_> = during.iter().filter(|r| r.0 == 200).collect();
    let refused: Vec<_> = during.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(
        served.len() + refused.len(),
        during.len(),
        "only 200 or 503 during an outage"
    );
    assert!(!served.is_empty() && !refused.is_empty());
    // The old token keeps being served until it is close to expiry, never after.
    for (_, _, body) in &served {
        assert_eq!(body["clientAccessToken"], first["clientAccessToken"]);
    }
    let first_refusal = during.iter().position(|r| r.0 == 503).unwrap();
    assert!(
        during[first_refusal..].iter().all(|r| r.0 == 503),
        "once expired, nothing is served"
    );
    for (_, _, body) in &refused {
        assert_eq!(body["error"], "temporarily_unavailable");
        let ra: u64 = body["retry_after_header"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&ra), "retry-after {ra}");
    }
    let calls = h.emulator.count(Endpoint::Token);
    assert!(calls >= 2, "the broker kept retrying ({calls})");
    assert!(
        calls <= max_requests_during_outage,
        "{calls} IMS requests for {} caller requests: a retry storm",
        during.len()
    );

    // IMS comes back: the background retry recovers without any caller's help.
    h.emulator.clear_faults();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = h.client_token(&caller("o")).await;
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_ne!(body["clientAccessToken"], first["clientAccessToken"]);
            assert!(
                h.emulator_accepts(body["clientAccessToken"].as_str().unwrap())
                    .await
            );
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after IMS returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Backoff is 200 ms doubling to 1 s, over about 2.6 s of failures (from the refresh point at about
// 2.4 s to the end of the 5 s window): roughly 5 requests, whatever the callers do.

#[tokio::test]
async fn outage_of_500s() {
    outage(
        Fault::status(
            500,
            r#"{"error":"internal_error","error_description":"Please try again later"}"#,
        ),
        8,
    )
    .await;
}

#[tokio::test]
async fn outage_of_429_honours_retry_after() {
    // Retry-After: 2 stretches the 200 ms backoff: about 2 requests in the window.
    outage(
        Fault {
            retry_after: Some("2".into()),
            ..Fault::status(429, r#"{"error":"too_many_requests"}"#)
        },
        3,
    )
    .await;
}

#[tokio::test]
async fn outage_of_timeouts() {
    outage(Fault::latency(Duration::from_secs(30)), 6).await;
}

#[tokio::test]
async fn outage_of_dropped_connections() {
    outage(
        Fault {
            drop_connection: true,
            ..Fault::default()
        },
        8,
    )
    .await;
}
