//! Limits of the two browser flows (consent and user sign-in) over real HTTP: the size of
//! `return_to`, the caps on open one-time links, and what the database holds of a flow in
//! progress (digests of state and nonce, never the values).

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::consent::{ConsentHarness, ConsentOptions, location, query_of};
use support::user_login::{UserHarness, UserOptions};

async fn json_of(r: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = r.status();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> reqwest::Response {
    http.post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Every file of the database (main file, WAL, shared memory), concatenated.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("imsgate.sqlite"))
        {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A `return_to` on an allowed origin but longer than 2048 bytes is refused with 400 JSON in
/// both flows; 2048 bytes exactly is accepted. (The 60 KB case is the one that grew the database
/// by 122 MB in 2,000 requests.)
#[tokio::test]
async fn an_over_long_return_to_is_refused_in_both_flows() {
    let consent = ConsentHarness::start(ConsentOptions::default()).await;
    let users = UserHarness::start(UserOptions::default()).await;
    let base = "https://app.partner.test/";
    let at_limit = format!("{base}{}", "a".repeat(2048 - base.len()));
    let over = format!("{at_limit}a");
    let sixty_kb = format!("{base}?deep={}", "a".repeat(60_000));
    for (return_to, ok) in [(&at_limit, true), (&over, false), (&sixty_kb, false)] {
        let flows = [
            (
                consent.http.clone(),
                format!("{}/api/connections", consent.url),
                support::consent::INTERNAL_KEY,
                json!({"account_id": "acct-1", "return_to": return_to}),
            ),
            (
                users.http.clone(),
                format!("{}/api/user-logins", users.url),
                support::user_login::INTERNAL_KEY,
                json!({"user": "user-1", "return_to": return_to}),
            ),
        ];
        for (http, url, key, body) in flows {
            let r = post(&http, url.clone(), key, body).await;
            if ok {
                assert_eq!(r.status(), StatusCode::CREATED, "{url}");
                continue;
            }
            let (status, _, body) = json_of(r).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
            assert_eq!(body["error"], "invalid_return_to", "{url}: {body}");
            let d = body["error_description"].as_str().unwrap();
            assert!(d.contains("at most 2048 bytes"), "{url}: {d}");
            assert!(!d.contains("aaaa"), "the URL is not echoed: {d}");
        }
    }
}

/// An account may hold `max_open_tickets_per_account` open links (a link stays open through the
/// consent it starts, until its callback); the flow `max_open_tickets`. Past either: 429 for the
/// account, 503 for the flow, both JSON with Retry-After; a callback frees a place.
#[tokio::test]
async fn open_connect_links_are_capped_per_account_and_in_total() {
    let h = ConsentHarness::start(ConsentOptions {
        extra_consent: "max_open_tickets_per_account = 2\nmax_open_tickets = 3".into(),
        ..ConsentOptions::default()
    })
    .await;
    let start = |account: &'static str| h.start_connection(account);

    assert_eq!(start("acct-1").await.status(), StatusCode::CREATED);
    // Opened: now a consent session in progress, still one of acct-1's places.
    let (mut browser, consent_query) = h.open_session("acct-1").await;
    let (status, retry_after, body) = json_of(start("acct-1").await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_open_links", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("2 one-time links for this id are already open"),
        "{body}"
    );
    // The first link expires in at most connect_ttl_seconds (300).
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&secs), "{secs}");

    // Another account has places of its own, until the flow's total is reached.
    assert_eq!(start("acct-2").await.status(), StatusCode::CREATED);
    let (status, retry_after, body) = json_of(start("acct-3").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "open_links_capacity_reached", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("limit of 3 open one-time links"),
        "{body}"
    );
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&secs), "{secs}");

    // The callback takes the session (here: the admin cancelled), which frees its place.
    let r = browser
        .get(&format!(
            "{}/consent/callback?admin_consent=false&state={}",
            h.url, consent_query["state"]
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(query_of(&location(&r))["result"], "cancelled");
    assert_eq!(start("acct-3").await.status(), StatusCode::CREATED);
}

/// The documented default: ten open login links per user.
#[tokio::test]
async fn open_login_links_are_capped_per_user_by_default() {
    let h = UserHarness::start(UserOptions::default()).await;
    for _ in 0..10 {
        h.login_url("user-1").await;
    }
    let r = post(
        &h.http,
        format!("{}/api/user-logins", h.url),
        support::user_login::INTERNAL_KEY,
        json!({"user": "user-1", "return_to": support::user_login::RETURN_TO}),
    )
    .await;
    let (status, retry_after, body) = json_of(r).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_open_links", "{body}");
    assert!(retry_after.is_some());
    // Other users are not affected.
    h.login_url("user-2").await;
}

/// While a consent or a sign-in is in progress its state and nonce exist only in the browser's
/// redirect to IMS: the database holds their digests.
#[tokio::test]
async fn state_and_nonce_are_not_in_the_database_files() {
    let consent = ConsentHarness::start(ConsentOptions::default()).await;
    let (_browser, q) = consent.open_session("acct-1").await;
    let users = UserHarness::start(UserOptions::default()).await;
    let (_browser, authorize) = users.open("user-1").await;
    let a = query_of(&authorize);
    for (dir, query) in [(consent.dir.path(), &q), (users.dir.path(), &a)] {
        let bytes = database_bytes(dir);
        let (state, nonce) = (&query["state"], &query["nonce"]);
        assert_eq!((state.len(), nonce.len()), (43, 43), "{query:?}");
        assert!(
            contains(&bytes, "https://app.partner.test/"),
            "the session row is where the test looks"
        );
        assert!(!contains(&bytes, state), "the state is stored in the clear");
        assert!(!contains(&bytes, nonce), "the nonce is stored in the clear");
    }
}
