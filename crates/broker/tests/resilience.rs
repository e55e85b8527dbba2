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

/// The longest a caller may take to be answered while IMS is slow: the default 2 s caller wait
/// plus generous slack for a loaded machine. Not a benchmark; a bound.
const CALLER_BOUND: Duration = Duration::from_millis(3500);

/// IMS's answer time in the slow-IMS tests: far beyond the caller wait, within the IMS timeout.
const SLOW: Duration = Duration::from_secs(5);

fn retry_after_header(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ims_gets_client_token_callers_a_quick_503_then_the_new_token() {
    // A 7 s token refreshes at about 5.5 s and stops being served at 6.65 s; IMS then takes 5 s.
    // (The broker counts a token's life from when it sent the request, so the lifetime must
    // outlast the latency for the new token to be servable.)
    let h = Harness::start(Options {
        lifetime_secs: 7,
        request_timeout_ms: 8000,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    let token = caller("slow");
    let first: Value = h.client_token(&token).await.json().await.unwrap();
    h.emulator.set_fault(Endpoint::Token, Fault::latency(SLOW));
    h.emulator.reset_counts();
    let slow_since = Instant::now();

    // Poll until the new token arrives. Before that, every answer is the old token or a 503 with
    // Retry-After, and none takes longer than the caller wait.
    let mut refused = 0;
    // `imsgate token` (`Broker::token`), started just after the old token lapses, waits for that
    // same request instead of giving up after the caller wait.
    let lapse_ms = first["tokenExpiryTimestampMs"].as_u64().unwrap() - 350;
    let script = {
        let broker = h.broker.clone();
        tokio::spawn(async move {
            let delay = (lapse_ms + 100).saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let started = Instant::now();
            (broker.token("entitlement").await, started.elapsed())
        })
    };
    let new = loop {
        assert!(
            slow_since.elapsed() < SLOW + Duration::from_secs(9),
            "the new token never arrived"
        );
        let started = Instant::now();
        let r = h.client_token(&token).await;
        let waited = started.elapsed();
        let status = r.status().as_u16();
        let retry_after = retry_after_header(&r);
        let body: Value = r.json().await.unwrap();
        assert!(
            waited < CALLER_BOUND,
            "a caller waited {waited:?} for IMS ({status} {})",
            body["error"]
        );
        if status == 200 && body["clientAccessToken"] != first["clientAccessToken"] {
            // Checked now: the new token's own refresh is due soon after.
            assert_eq!(
                h.emulator.count(Endpoint::Token),
                1,
                "one IMS request in all"
            );
            break body;
        }
        if status == 503 {
            refused += 1;
            assert_eq!(body["error"], "temporarily_unavailable");
            assert!(
                retry_after.is_some_and(|s| s >= 1),
                "503 without Retry-After"
            );
            // Whatever the number of callers, the one refresh is the only IMS request.
            assert_eq!(h.emulator.count(Endpoint::Token), 1);
        } else {
            assert_eq!(status, 200, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refused > 0, "the old token lapsed while IMS was slow");
    eprintln!(
        "{refused} callers refused; new token {:?} after IMS became slow",
        slow_since.elapsed()
    );
    assert!(
        h.emulator_accepts(new["clientAccessToken"].as_str().unwrap())
            .await
    );
    let (script, waited) = script.await.unwrap();
    assert_eq!(
        script.expect("a token").token.secret.expose(),
        new["clientAccessToken"]
    );
    assert!(
        waited > Duration::from_secs(2),
        "the script waited {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ims_gets_org_token_callers_a_quick_503_then_the_token() {
    use support::consent::{ConsentHarness, ConsentOptions, ORG_A};
    let h = ConsentHarness::start(ConsentOptions {
        request_timeout_ms: 8000,
        ..ConsentOptions::default()
    })
    .await;
    h.consent("acct-1", ORG_A, "allow").await;
    h.emulator.set_fault(Endpoint::Token, Fault::latency(SLOW));
    h.emulator.reset_counts();
    let slow_since = Instant::now();

    // The first callers for the org start one fetch and are told to come back.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let http = h.http.clone();
            let url = format!("{}/api/orgs/{ORG_A}/token", h.url);
            tokio::spawn(async move {
                let started = Instant::now();
                let r = http
                    .post(url)
                    .bearer_auth(support::consent::INTERNAL_KEY)
                    .send()
                    .await
                    .unwrap();
                let retry_after = retry_after_header(&r);
                (r.status().as_u16(), retry_after, started.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (status, retry_after, waited) = t.await.unwrap();
        assert!(
            waited < CALLER_BOUND,
            "a caller waited {waited:?} ({status})"
        );
        assert_eq!(status, 503);
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "503 without Retry-After"
        );
    }
    assert_eq!(h.emulator.count(Endpoint::Token), 1, "one IMS request");

    // Callers coming back join that fetch and get its token once IMS answers.
    let body: Value = loop {
        assert!(
            slow_since.elapsed() < SLOW + Duration::from_secs(6),
            "the token never arrived"
        );
        let started = Instant::now();
        let r = h.org_token(ORG_A).await;
        let waited = started.elapsed();
        assert!(waited < CALLER_BOUND, "a caller waited {waited:?}");
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        h.emulator_accepts(body["access_token"].as_str().unwrap())
            .await
    );
    assert_eq!(
        h.emulator.count(Endpoint::Token),
        1,
        "one IMS request in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_callers_are_served_within_seconds_of_recovery() {
    // The default backoff cap (60 s), a shorter first step so the outage need not last minutes.
    let h = Harness::start(Options {
        lifetime_secs: 2,
        backoff_initial_ms: 100,
        backoff_max_ms: 60_000,
        request_timeout_ms: 400,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            503,
            r#"{"error":"server_error","error_description":"Service Unavailable"}"#,
        ),
    );
    h.emulator.reset_counts();
    let token = caller("outage");
    // Eight seconds: the token lapses at about 1.9 s, and the backoff without any change would
    // have grown past 10 s by the end.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(8) {
        let r = h.client_token(&token).await;
        if outage.elapsed() > Duration::from_secs(2) {
            assert_eq!(r.status(), 503, "no valid token during the outage");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // IMS recovers just after a failed attempt: the worst moment, a whole backoff step away.
    let n = h.emulator.count(Endpoint::Token);
    while h.emulator.count(Endpoint::Token) == n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    h.emulator.clear_faults();
    let recovered = Instant::now();
    let during = h.emulator.count(Endpoint::Token);
    loop {
        let r = h.client_token(&token).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(20),
            "no recovery 20 s after IMS returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = recovered.elapsed();
    eprintln!(
        "first caller served {took:?} after IMS recovered; {during} IMS requests in {:?} of outage",
        recovered - outage
    );
    assert!(
        took < Duration::from_secs(5),
        "callers refused for {took:?} after IMS recovered"
    );
    // Quick recovery without hammering: a request every 2 to 4 s once the token had lapsed.
    assert!(during <= 15, "{during} IMS requests during the outage");
}
