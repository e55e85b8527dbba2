//! A run with known secret values whose captured logs, at every level, contain none of them.

mod support;

use std::time::Duration;

use imsgate_emulator::{Endpoint, Fault};
use serde_json::Value;
use support::*;

// One thread, so every task's events reach the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_secrets_or_tokens() {
    let (capture, _guard) = logs::capture(tracing::Level::TRACE);

    let h = Harness::start(Options {
        lifetime_secs: 2,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    let caller_token = caller("secret-user-id-991");
    let body: Value = h.client_token(&caller_token).await.json().await.unwrap();
    let access_token = body["clientAccessToken"].as_str().unwrap().to_owned();
    // Refused callers, IMS failures with bodies, and a refresh cycle all get logged.
    let forged = hs256(&claims("x"), "wrong-key-wrong-key-wrong-key-wrong");
    assert_eq!(h.client_token(&forged).await.status(), 401);
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            401,
            r#"{"error":"invalid_client","error_description":"invalid client_secret parameter"}"#,
        ),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.emulator.clear_faults();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = h.client_token(&caller_token).await;

    let logs = capture.text();
    assert!(
        logs.contains("IMS token request failed"),
        "the failure was logged: {logs}"
    );
    assert!(
        logs.contains("succeed again after"),
        "the recovery was logged: {logs}"
    );
    for (name, secret) in [
        ("client secret", CLIENT_SECRET),
        ("caller signing key", CALLER_KEY),
        ("access token", access_token.as_str()),
        (
            "access token signature",
            access_token.rsplit('.').next().unwrap(),
        ),
        ("caller token", caller_token.as_str()),
        ("forged caller token", forged.as_str()),
        ("caller's user id", "secret-user-id-991"),
    ] {
        assert!(!logs.contains(secret), "logs contain the {name}");
    }
}

// The consent flow at TRACE: nothing from the id_token, the session or the internal key.
#[tokio::test(flavor = "current_thread")]
async fn consent_logs_never_contain_the_id_token_or_session_material() {
    use support::consent::*;
    let (capture, _guard) = logs::capture(tracing::Level::TRACE);

    let h = ConsentHarness::start(ConsentOptions::default()).await;
    // issue_id_token signs without recording a consent; IMS needs one for org tokens.
    h.emulator.grant_consent(EWA_CLIENT, ORG_B).unwrap();
    let (mut browser, q) = h.open_session("acct-logs").await;
    let session = browser.cookies["__Host-imsgate-consent"].clone();
    let id_token = h
        .emulator
        .issue_id_token(EWA_CLIENT, ORG_B, Some(q["nonce"].as_str()));
    // A refused token is logged (with its reason), then a good one links.
    let bad = h
        .emulator
        .issue_id_token(EWA_CLIENT, ORG_B, Some("wrong-nonce"));
    let r = browser
        .get(&format!(
            "{}/consent/callback?admin_consent=true&state={}&id_token={bad}",
            h.url, q["state"]
        ))
        .await;
    assert_eq!(query_of(&location(&r))["code"], "id_token_nonce");
    let (mut browser, q2) = h.open_session("acct-logs").await;
    let good = h
        .emulator
        .issue_id_token(EWA_CLIENT, ORG_B, Some(q2["nonce"].as_str()));
    let r = browser
        .get(&format!(
            "{}/consent/callback?admin_consent=true&state={}&id_token={good}",
            h.url, q2["state"]
        ))
        .await;
    assert_eq!(query_of(&location(&r))["result"], "linked");
    let token: Value = h.org_token(ORG_B).await.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();

    let logs = capture.text();
    assert!(logs.contains("consent id_token refused"), "{logs}");
    assert!(logs.contains("account linked"), "{logs}");
    for (name, secret) in [
        ("internal API key", INTERNAL_KEY),
        ("web app client secret", EWA_SECRET),
        ("id_token", id_token.as_str()),
        ("refused id_token", bad.as_str()),
        ("linked id_token", good.as_str()),
        ("id_token signature", good.rsplit('.').next().unwrap()),
        ("session id", session.as_str()),
        ("state", q["state"].as_str()),
        ("nonce", q2["nonce"].as_str()),
        ("org id from the id_token", ORG_B),
        ("org access token", access.as_str()),
    ] {
        assert!(!logs.contains(secret), "logs contain the {name}");
    }
}

// User sign-in at TRACE: nothing from the code, the session, the tokens or the client's Basic
// credentials, through a sign-in, a refresh, a refused refresh and a revocation.
#[tokio::test(flavor = "current_thread")]
async fn user_login_logs_never_contain_codes_sessions_or_tokens() {
    use support::consent::{location, query_of};
    use support::user_login::*;
    let (capture, _guard) = logs::capture(tracing::Level::TRACE);

    let h = UserHarness::start(UserOptions::default()).await;
    let (mut browser, authorize) = h.open("user-logs").await;
    let session = browser.cookies["__Host-imsgate-login"].clone();
    let aq = query_of(&authorize);
    let callback = h.choose(&mut browser, &authorize, ADA).await;
    let code = query_of(&callback)["code"].clone();
    let r = browser.get(callback.as_str()).await;
    assert_eq!(query_of(&location(&r))["result"], "signed_in");
    let first: Value = h.user_token("user-logs").await.json().await.unwrap();
    // Signed in now: the broker's clock moves ahead of the emulator's below.
    h.sign_in("user-logs-2", ADA).await;
    let third: Value = h.user_token("user-logs-2").await.json().await.unwrap();
    h.clock.advance(Duration::from_secs(3000));
    let second: Value = h.user_token("user-logs").await.json().await.unwrap();
    assert_ne!(first["access_token"], second["access_token"]);
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            400,
            r#"{"error":"invalid_grant","error_description":"gone"}"#,
        ),
    );
    h.clock.advance(Duration::from_secs(3000));
    assert_eq!(h.user_token("user-logs").await.status(), 409);
    h.emulator.clear_faults();
    assert_eq!(h.revoke("user-logs-2").await.status(), 200);

    let logs = capture.text();
    assert!(logs.contains("refresh token refused"), "{logs}");
    assert!(logs.contains("user signed in with Adobe"), "{logs}");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{WEB_CLIENT}:{WEB_SECRET}"),
    );
    for (name, secret) in [
        ("client secret", WEB_SECRET),
        ("Basic credentials", basic.as_str()),
        ("internal API key", INTERNAL_KEY),
        ("session id", session.as_str()),
        ("state", aq["state"].as_str()),
        ("nonce", aq["nonce"].as_str()),
        ("authorization code", code.as_str()),
        (
            "first access token",
            first["access_token"].as_str().unwrap(),
        ),
        (
            "refreshed access token",
            second["access_token"].as_str().unwrap(),
        ),
        (
            "later access token",
            third["access_token"].as_str().unwrap(),
        ),
        ("IMS user id", ADA),
    ] {
        assert!(!logs.contains(secret), "logs contain the {name}");
    }
    let refresh_token = regex::Regex::new(r"rt-[A-Za-z0-9_-]{43}").unwrap();
    assert!(
        !refresh_token.is_match(&logs),
        "logs contain a refresh token"
    );
}
