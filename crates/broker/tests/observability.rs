//! What operators watch: the log line when IMS recovers after failures, the per-credential token
//! gauges, IMS request metrics labelled by credential, and JWKS fetch counts, all read from a
//! real broker over HTTP against the in-process emulator.

mod support;

use std::time::{Duration, Instant};

use imsgate_emulator::{Endpoint, Fault};
use serde_json::json;
use support::consent::{ConsentHarness, ConsentOptions, ORG_A};
use support::*;

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

async fn poll<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// IMS fails exactly three times (the emulator's limited fault), then answers: one INFO line
/// says the credential's requests succeed again, with the failure count and how long the failures
/// lasted; later routine refreshes log nothing of the kind.
#[tokio::test(flavor = "current_thread")]
async fn recovery_after_ims_failures_is_logged_once_with_count_and_duration() {
    let (capture, _guard) = logs::capture(tracing::Level::INFO);

    let emulator = start_emulator(2).await;
    emulator.set_fault(
        Endpoint::Token,
        Fault {
            times: Some(3),
            ..Fault::status(
                503,
                r#"{"error":"server_error","error_description":"try later"}"#,
            )
        },
    );
    let started = Instant::now();
    let h = Harness::start_with(
        emulator,
        Options {
            lifetime_secs: 2,
            backoff_initial_ms: 100,
            backoff_max_ms: 400,
            ..Options::default()
        },
    )
    .await;
    h.wait_ready().await;
    let failing_for = started.elapsed();
    // Three failures and the success (a routine refresh may follow on a slow machine).
    assert!(h.emulator.count(Endpoint::Token) >= 4);
    let logs = capture.text();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("succeed again"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO");
    let fields = &line["fields"];
    let message = fields["message"].as_str().unwrap();
    let re = regex::Regex::new(
        r"^IMS token requests for credential entitlement succeed again after 3 failures over (\d+\.\d) s$",
    )
    .unwrap();
    let seconds: f64 = re.captures(message).unwrap_or_else(|| panic!("{message}"))[1]
        .parse()
        .unwrap();
    // Three failures a backoff apart: at least the first two backoffs (100 ms, then 200 ms,
    // each with jitter that only lengthens or slightly shortens it), and within the whole wait.
    assert!(
        seconds >= 0.1 && seconds <= failing_for.as_secs_f64() + 0.1,
        "{seconds} s (the test waited {failing_for:?})"
    );
    assert_eq!(fields["failures"], 3);
    assert_eq!(fields["credential"], "entitlement");
    // The 2 s token is refreshed in the background; successes after successes say nothing.
    let before = h.emulator.count(Endpoint::Token);
    poll("a routine refresh", || async {
        h.emulator.count(Endpoint::Token) > before
    })
    .await;
    h.wait_ready().await;
    assert_eq!(
        capture
            .text()
            .lines()
            .filter(|l| l.contains("succeed again"))
            .count(),
        1
    );
}

/// A credential's token gauges hold the current token's expiry and the time it was obtained;
/// the IMS request metrics carry the credential; caller-token key set fetches are counted.
#[tokio::test]
async fn token_gauges_and_credential_labels_and_caller_jwks_fetches() {
    let h = Harness::start(Options {
        caller_jwks: true,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    let r = h
        .client_token(&h.emulator.sign(json!({"typ": "JWT"}), &claims("gauges")))
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let expiry_ms = body["tokenExpiryTimestampMs"].as_u64().unwrap();
    let m = scrape(&h.http, &h.url).await;
    let labels = r#"{credential="entitlement",kind="client"}"#;
    let expiry = sample(
        &m,
        &format!("imsgate_token_expiry_timestamp_seconds{labels}"),
    )
    .unwrap_or_else(|| panic!("no expiry gauge:\n{m}"));
    assert_eq!(expiry as u64, expiry_ms / 1000, "the served token's expiry");
    let refreshed = sample(
        &m,
        &format!("imsgate_token_last_refresh_timestamp_seconds{labels}"),
    )
    .unwrap();
    let now = now_secs() as f64;
    assert!(
        refreshed <= now && refreshed > now - 10.0,
        "{refreshed} vs {now}"
    );
    assert_eq!(
        sample(
            &m,
            r#"imsgate_ims_request_duration_seconds_count{endpoint="token",outcome="ok",credential="entitlement"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"imsgate_jwks_fetches_total{source="caller",outcome="ok"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // A key set that fails to load is counted with its reason, by source.
    h.emulator.set_published_jwks(Some("not json".into()));
    let bogus = {
        let t = h.emulator.sign(json!({"typ": "JWT"}), &claims("gauges"));
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[0] = b64(r#"{"alg":"RS256","kid":"no-such-kid"}"#);
        parts.join(".")
    };
    assert_eq!(h.client_token(&bogus).await.status(), 401);
    let m = scrape(&h.http, &h.url).await;
    assert_eq!(
        sample(
            &m,
            r#"imsgate_jwks_fetches_total{source="caller",outcome="malformed"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // A build is always named.
    assert!(
        m.lines()
            .any(|l| l.starts_with("imsgate_build_info{version=\"")
                && l.contains(",commit=\"")
                && l.ends_with("} 1")),
        "{m}"
    );
}

/// Org tokens are aggregated per credential under `kind="org"` (org ids never become labels),
/// and IMS's keys, fetched to verify the consent id_token, are counted as `source="ims"`.
#[tokio::test]
async fn org_tokens_are_one_series_per_credential_and_ims_jwks_fetches_are_counted() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let _ = h.consent("acct-1", ORG_A, "allow").await;
    let r = h.org_token(ORG_A).await;
    assert_eq!(r.status(), 200);
    let m = scrape(&h.http, &h.url).await;
    let labels = r#"{credential="partner",kind="org"}"#;
    let expiry = sample(
        &m,
        &format!("imsgate_token_expiry_timestamp_seconds{labels}"),
    )
    .unwrap_or_else(|| panic!("{m}"));
    let now = now_secs() as f64;
    // The harness's org tokens live 3599 s.
    assert!((expiry - (now + 3599.0)).abs() < 10.0, "{expiry} vs {now}");
    assert!(!m.contains(ORG_A), "an org id became a label:\n{m}");
    assert_eq!(
        sample(
            &m,
            r#"imsgate_jwks_fetches_total{source="ims",outcome="ok"}"#
        ),
        Some(1.0),
        "{m}"
    );
}

/// A refused caller token's DEBUG line names the failed claim and the expected (configured)
/// value, and never the token or the value the token carried.
#[tokio::test(flavor = "current_thread")]
async fn a_refusal_is_logged_at_debug_with_the_claim_and_the_expected_value() {
    let (capture, _guard) = logs::capture(tracing::Level::DEBUG);
    let h = Harness::start(Options::default()).await;
    let mut c = claims("debug-user");
    c["iss"] = json!("https://attacker.example");
    let token = hs256(&c, CALLER_KEY);
    assert_eq!(h.client_token(&token).await.status(), 401);
    let logs = capture.text();
    let line: serde_json::Value = logs
        .lines()
        .filter(|l| l.contains("caller token refused"))
        .map(|l| serde_json::from_str(l).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no refusal line: {logs}"));
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["fields"]["reason"], "issuer");
    assert_eq!(line["fields"]["field"], "iss");
    assert_eq!(line["fields"]["expected"], ISSUER);
    for leaked in [token.as_str(), "https://attacker.example", "debug-user"] {
        assert!(!logs.contains(leaked), "the log contains {leaked:?}");
    }
}
