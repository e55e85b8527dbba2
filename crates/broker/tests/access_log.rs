//! Request ids, client addresses behind trusted proxies, and the access log, over real HTTP with
//! the log captured as JSON.

mod support;

use serde_json::Value;
use support::*;

fn is_generated(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4)
}

fn token_id(sub: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::parse_str(NAMESPACE).unwrap(), sub.as_bytes()).to_string()
}

async fn harness(extra_server: &str) -> Harness {
    let h = Harness::start(Options {
        extra_server: extra_server.to_owned(),
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    h
}

// One thread, so every task's events reach the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn request_ids_and_client_addresses_follow_the_trusted_proxy_rule() {
    let (logs, _guard) = logs::capture(tracing::Level::TRACE);
    let trusting = harness(r#"trusted_proxies = ["127.0.0.1"]"#).await;
    let default = harness("").await;
    let long = "r".repeat(128);
    let too_long = "r".repeat(129);
    // (peer is trusted, x-request-id sent, x-forwarded-for sent, id kept, client address logged)
    type Case<'a> = (bool, Option<&'a str>, Option<&'a str>, bool, &'a str);
    let cases: &[Case] = &[
        (
            true,
            Some("nginx-0f1e2d3c4b5a6978"),
            None,
            true,
            "127.0.0.1",
        ),
        (true, Some(&long), None, true, "127.0.0.1"),
        (true, None, Some("203.0.113.7"), false, "203.0.113.7"),
        (
            true,
            Some("abc-1"),
            Some("198.51.100.66, 203.0.113.7"),
            true,
            "203.0.113.7",
        ),
        (
            true,
            Some("abc-2"),
            Some("203.0.113.7, 127.0.0.1"),
            true,
            "203.0.113.7",
        ),
        // Hostile ids from a trusted proxy are replaced.
        (true, Some(&too_long), None, false, "127.0.0.1"),
        (true, Some("two words"), None, false, "127.0.0.1"),
        (true, Some("x\ty"), None, false, "127.0.0.1"),
        (true, Some("caf\u{e9}"), None, false, "127.0.0.1"),
        (true, Some(""), None, false, "127.0.0.1"),
        // Nothing forwarded is believed from an untrusted peer (the default).
        (
            false,
            Some("nginx-0f1e2d3c4b5a6978"),
            None,
            false,
            "127.0.0.1",
        ),
        (false, Some("abc"), Some("203.0.113.7"), false, "127.0.0.1"),
    ];
    let caller = caller("access-log-user");
    for (i, (trusted, sent_id, xff, kept, client)) in cases.iter().enumerate() {
        let h = if *trusted { &trusting } else { &default };
        let mut req = h
            .http
            .get(format!("{}/api/client-token", h.url))
            .header("Authorization", format!("Bearer {caller}"));
        if let Some(id) = sent_id {
            req = req.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id.as_bytes()).unwrap(),
            );
        }
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", *xff);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "case {i}");
        let got = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        if *kept {
            assert_eq!(Some(got.as_str()), *sent_id, "case {i}");
        } else {
            assert!(is_generated(&got), "case {i}: {got:?} is a fresh id");
        }
        let line = logs.access_for(&got);
        assert_eq!(line["client_ip"], *client, "case {i}: {line}");
        assert_eq!(line["method"], "GET", "case {i}");
        assert_eq!(line["route"], "/api/client-token", "case {i}");
        assert_eq!(line["status"], 200, "case {i}");
        assert_eq!(line["token_id"], token_id("access-log-user"), "case {i}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "case {i}");
    }
    // Every response carries an id, errors and unrouted paths included, and the log names the
    // route template, never the raw path.
    for (path, route, status) in [
        ("/healthz", "/healthz", 200),
        ("/nope/ticket-abcdef-123456", "(unmatched)", 404),
    ] {
        let r = default
            .http
            .get(format!("{}{path}", default.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let line = logs.access_for(&id);
        assert_eq!(line["route"], route);
        assert_eq!(line["status"], status);
        assert!(line.get("token_id").is_none(), "{line}");
    }
    assert!(!logs.text().contains("ticket-abcdef-123456"));
    // A refused caller: 401 logged without a tokenId, and the handler's own debug line carries
    // the request id through the span.
    let forged = hs256(&claims("x"), "wrong-key-wrong-key-wrong-key-wrong");
    let r = default.client_token(&forged).await;
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = logs.access_for(&id);
    assert_eq!(line["status"], 401);
    assert!(line.get("token_id").is_none(), "{line}");
    let refused = logs
        .lines()
        .into_iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("caller token refused"))
        })
        .expect("the refusal is logged");
    assert_eq!(refused["span"]["request_id"], id.as_str(), "{refused}");

    let text = logs.text();
    for (name, secret) in [
        ("caller token", caller.as_str()),
        ("forged caller token", forged.as_str()),
        ("caller's user id", "access-log-user"),
        ("caller signing key", CALLER_KEY),
        ("client secret", CLIENT_SECRET),
    ] {
        assert!(!text.contains(secret), "logs contain the {name}");
    }
    let body: Value = trusting.client_token(&caller).await.json().await.unwrap();
    let access_token = body["clientAccessToken"].as_str().unwrap();
    assert!(
        !logs.text().contains(access_token),
        "logs contain the access token"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_access_log_can_be_turned_off_and_ids_are_still_returned() {
    let (logs, _guard) = logs::capture(tracing::Level::TRACE);
    let h = harness("access_log = false").await;
    let r = h.client_token(&caller("quiet-user")).await;
    assert_eq!(r.status(), 200);
    assert!(is_generated(r.headers()["x-request-id"].to_str().unwrap()));
    assert!(logs.access().is_empty(), "{:?}", logs.access());
}

#[tokio::test(flavor = "current_thread")]
async fn consent_routes_are_logged_by_template_without_tickets() {
    use support::consent::*;
    let (logs, _guard) = logs::capture(tracing::Level::TRACE);
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let connect = h.connect_url("acct-access").await;
    let ticket = connect.rsplit('/').next().unwrap().to_owned();
    let mut browser = h.browser();
    let r = browser.get(&connect).await;
    assert_eq!(r.status(), 303);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = logs.access_for(&id);
    assert_eq!(line["route"], "/connect/{ticket}");
    assert_eq!(line["status"], 303);
    let text = logs.text();
    assert!(!text.contains(&ticket), "logs contain the connect ticket");
    assert!(
        !text.contains(INTERNAL_KEY),
        "logs contain the internal key"
    );
}
