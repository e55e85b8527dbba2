//! `/api/client-token` end to end over real HTTP against the in-process emulator.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn response_shape_uuid_and_expiry() {
    let h = Harness::start(Options::default()).await;
    let before_ms = now_secs() * 1000;
    let resp = h.client_token(&caller("user-42@partner")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("user-42"),
        "the partner's user id must not leak: {text}"
    );
    let body: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["clientAccessToken", "tokenExpiryTimestampMs", "tokenId"]
    );

    let token = body["clientAccessToken"].as_str().unwrap();
    assert!(
        h.emulator_accepts(token).await,
        "the emulator must accept the token"
    );

    let expiry = body["tokenExpiryTimestampMs"].as_u64().unwrap();
    let lifetime_ms = 300_000;
    assert!(
        expiry >= before_ms + lifetime_ms - 5_000 && expiry <= before_ms + lifetime_ms + 5_000,
        "expiry {expiry}"
    );

    let id = body["tokenId"].as_str().unwrap();
    let ns = uuid::Uuid::parse_str(NAMESPACE).unwrap();
    assert_eq!(
        id,
        uuid::Uuid::new_v5(&ns, b"user-42@partner")
            .hyphenated()
            .to_string()
    );
    assert_eq!(id.len(), 36);
    assert_eq!(id, id.to_lowercase());

    // Stable per user, distinct between users, one IMS token shared by all.
    let again: Value = h
        .client_token(&caller("user-42@partner"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["tokenId"], body["tokenId"]);
    let other: Value = h
        .client_token(&caller("user-43@partner"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(other["tokenId"], body["tokenId"]);
    assert_eq!(other["clientAccessToken"], body["clientAccessToken"]);
    assert_eq!(h.emulator.count(imsgate_emulator::Endpoint::Token), 1);
}

#[tokio::test]
async fn rate_limit_per_user_and_global() {
    let h = Harness::start(Options {
        per_user_per_minute: 3,
        global_per_minute: 5,
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.client_token(&caller("alice")).await.status(), 200);
    }
    let resp = h.client_token(&caller("alice")).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["error_description"].is_string());

    // Bob has his own per-user budget, but the global one (5/min) runs out after two more.
    assert_eq!(h.client_token(&caller("bob")).await.status(), 200);
    assert_eq!(h.client_token(&caller("bob")).await.status(), 200);
    assert_eq!(h.client_token(&caller("carol")).await.status(), 429);

    let metrics = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"imsgate_rate_limit_rejections_total{limit="user_per_minute"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"imsgate_rate_limit_rejections_total{limit="global_per_minute"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let h = Harness::start(Options::default()).await;
    let preflight = |origin: &'static str| {
        h.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/client-token", h.url),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let ok = preflight("https://app.partner.test").await.unwrap();
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.partner.test"
    );
    let allow_headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allow_headers.contains("authorization"));

    let evil = preflight("https://evil.test").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    let get = h
        .http
        .get(format!("{}/api/client-token", h.url))
        .header("Origin", "https://app.partner.test")
        .header("Authorization", format!("Bearer {}", caller("u")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://app.partner.test"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = Harness::start(Options::default()).await;
    let r = h.http.get(format!("{}/nope", h.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let r = h
        .http
        .post(format!("{}/api/client-token", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Harness::start(Options::default()).await;
    let r = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.wait_ready().await;
    assert_eq!(h.client_token(&caller("m")).await.status(), 200);
    assert_eq!(h.client_token("garbage").await.status(), 401);
    let metrics = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"imsgate_http_request_duration_seconds_count{route="/api/client-token",status="200"} 1"#,
        r#"imsgate_http_request_duration_seconds_count{route="/api/client-token",status="401"} 1"#,
        r#"imsgate_ims_request_duration_seconds_count{endpoint="token",outcome="ok",credential="entitlement"} 1"#,
        r#"imsgate_token_cache_events_total{event="hit"}"#,
        r#"imsgate_caller_auth_failures_total{reason="malformed"} 1"#,
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    assert!(!metrics.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn not_ready_while_ims_refuses_then_ready() {
    let emulator = start_emulator(300).await;
    emulator.set_fault(
        imsgate_emulator::Endpoint::Token,
        imsgate_emulator::Fault::status(
            503,
            r#"{"error":"internal_error","error_description":"Please try again later"}"#,
        ),
    );
    let h = Harness::start_with(emulator, Options::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h
        .http
        .get(format!("{}/readyz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_ready");
    // With nothing cached, callers get 503 with Retry-After and no internals.
    let resp = h.client_token(&caller("x")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("internal_error") && !text.contains("Please try again"),
        "{text}"
    );
    h.emulator.clear_faults();
    h.wait_ready().await;
    assert_eq!(h.client_token(&caller("x")).await.status(), 200);
}

#[tokio::test]
async fn wrong_client_secret_is_unavailable_without_leaking_it() {
    let h = Harness::start(Options {
        broker_secret: "wrong-secret-value-123".into(),
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = h.client_token(&caller("x")).await;
    assert_eq!(resp.status(), 503);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("wrong-secret") && !text.contains("invalid_client"),
        "{text}"
    );
}
