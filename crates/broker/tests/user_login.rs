//! User sign-in end to end over real HTTP: the broker on SQLite, the emulator's sign-in page, a
//! browser stand-in with a cookie jar; then the internal user-token API: sealed storage,
//! refresh-ahead with single use of the refresh token, failures, and revocation.

mod support;

use std::time::Duration;

use imsgate_emulator::{Endpoint, Fault};
use reqwest::StatusCode;
use serde_json::Value;
use support::consent::{Browser, location, query_of};
use support::user_login::*;
use url::Url;

async fn json(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every file of the database (main file, WAL, shared memory), concatenated.
fn database_bytes(h: &UserHarness) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
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

#[tokio::test]
async fn sign_in_stores_sealed_tokens_that_survive_a_restart() {
    let mut h = UserHarness::start(UserOptions::default()).await;
    let back = h.sign_in("user-1", ADA).await;
    assert!(back.as_str().starts_with(RETURN_TO), "{back}");
    let q = query_of(&back);
    assert_eq!(
        (q["result"].as_str(), q["code"].as_str()),
        ("signed_in", "signed_in")
    );

    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ims_user_id"], ADA);
    assert_eq!(body["token_type"], "bearer");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let verdict = h.validate(&access).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["token"]["user_id"], ADA);

    // Neither the access token nor any refresh token is in the database in the clear.
    let bytes = database_bytes(&h);
    assert!(!bytes.is_empty());
    assert!(!contains(&bytes, &access));
    // The emulator's refresh tokens are `rt-` and 43 base64url characters.
    let refresh_token = regex::bytes::Regex::new(r"rt-[A-Za-z0-9_-]{43}").unwrap();
    assert!(
        !refresh_token.is_match(&bytes),
        "a refresh token is stored in the clear"
    );
    assert!(
        contains(&bytes, "user-1"),
        "the grant row is where the test looks"
    );

    // A restarted broker opens the sealed token without asking IMS again.
    h.emulator.reset_counts();
    h.restart().await;
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], access.as_str());
    assert_eq!(h.emulator.count(Endpoint::Token), 0);

    // Another user of the partner has no grant.
    let (status, body) = json(h.user_token("user-2").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_signed_in"))
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh_and_the_refresh_token_is_used_once() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    let (_, first) = json(h.user_token("user-1").await).await;
    let first = first["access_token"].as_str().unwrap().to_owned();

    for round in 1..=2u64 {
        // Past the refresh point (a fifth of the hour before expiry), still before expiry.
        h.clock.advance(Duration::from_secs(3000));
        h.emulator.reset_counts();
        let calls = (0..40).map(|_| h.user_token("user-1"));
        let responses = futures_util::future::join_all(calls).await;
        let mut tokens = std::collections::HashSet::new();
        for r in responses {
            let (status, body) = json(r).await;
            assert_eq!(status, StatusCode::OK, "round {round}: {body}");
            tokens.insert(body["access_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            tokens.len(),
            1,
            "round {round}: every caller got the same new token"
        );
        assert!(!tokens.contains(&first));
        // One refresh request; the emulator rotates refresh tokens, so a second use of the same
        // one would have failed with invalid_grant and surfaced above.
        assert_eq!(h.emulator.count(Endpoint::Token), 1, "round {round}");
    }
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
        metrics.contains(r#"imsgate_user_token_refreshes_total{result="ok"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn revoke_ends_the_grant_at_ims_and_locally() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", GRACE).await;
    let (_, body) = json(h.user_token("user-1").await).await;
    let access = body["access_token"].as_str().unwrap().to_owned();

    // The internal key is required.
    let r = h
        .http
        .delete(format!("{}/api/users/user-1/token", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    h.emulator.reset_counts();
    let (status, body) = json(h.revoke("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked_at_ims"], true);
    // The refresh token and the access token.
    assert_eq!(h.emulator.count(Endpoint::Revoke), 2);
    let verdict = h.validate(&access).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], "revoked");

    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_signed_in"))
    );
    let (status, _) = json(h.revoke("user-1").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // When IMS cannot be reached the grant is still forgotten locally, and the answer says so.
    h.sign_in("user-2", ADA).await;
    h.emulator.set_fault(
        Endpoint::Revoke,
        Fault::status(503, r#"{"error":"internal_error"}"#),
    );
    let (status, body) = json(h.revoke("user-2").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revoked_at_ims"], false);
    let (status, _) = json(h.user_token("user-2").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refresh_failures_serve_the_valid_token_then_require_a_new_sign_in() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    let (_, body) = json(h.user_token("user-1").await).await;
    let access = body["access_token"].as_str().unwrap().to_owned();

    // IMS down while the token is still valid: the current token is served.
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(503, r#"{"error":"internal_error"}"#),
    );
    h.clock.advance(Duration::from_secs(3000));
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], access.as_str());

    // Past the safety margin there is nothing valid to serve: 503 with Retry-After.
    h.clock.advance(Duration::from_secs(590));
    let r = h.user_token("user-1").await;
    assert!(r.headers().contains_key("retry-after"));
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        )
    );

    // IMS refuses the refresh token: the grant is over and the row is deleted.
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            400,
            r#"{"error":"invalid_grant","error_description":"revoked"}"#,
        ),
    );
    h.clock.advance(Duration::from_secs(2));
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("login_required")),
        "{body}"
    );
    let (status, _) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_offline_access_the_token_lasts_until_it_expires() {
    let h = UserHarness::start(UserOptions {
        scopes: vec!["openid", "AdobeID"],
        token_auth: "client_secret_post",
        ..UserOptions::default()
    })
    .await;
    h.sign_in("user-1", ADA).await;
    h.emulator.reset_counts();
    h.clock.advance(Duration::from_secs(3000));
    let (status, _) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK);
    h.clock.advance(Duration::from_secs(600));
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("login_required"))
    );
    assert_eq!(
        h.emulator.count(Endpoint::Token),
        0,
        "no refresh token, no refresh"
    );
}

/// Tampers with the authorize URL as a man in the browser could; returns where the broker sends
/// the browser after IMS's answer.
async fn tampered(h: &UserHarness, param: &str, value: &str) -> Url {
    let (mut browser, authorize) = h.open("victim").await;
    let mut url = authorize.clone();
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == param {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let callback = h.choose(&mut browser, &url, ADA).await;
    h.finish(&mut browser, &callback).await
}

#[tokio::test]
async fn the_callback_refuses_what_it_must() {
    let h = UserHarness::start(UserOptions::default()).await;

    // The authorize URL carries everything IMS needs, with S256 sent explicitly.
    let (_, authorize) = h.open("user-1").await;
    let q = query_of(&authorize);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], WEB_CLIENT);
    assert_eq!(q["redirect_uri"], format!("{}/user/callback", h.url));
    assert!(q["code_challenge"].len() == 43 && q["state"].len() >= 43 && q["nonce"].len() >= 43);

    // An injected PKCE challenge: the code cannot be exchanged with the session's verifier.
    let back = tampered(&h, "code_challenge", &"x".repeat(43)).await;
    assert_eq!(query_of(&back)["code"], "code_exchange_failed");
    // A different nonce: the id_token does not match the session.
    let back = tampered(&h, "nonce", "attacker-nonce").await;
    assert_eq!(query_of(&back)["code"], "id_token_nonce");
    // A different state: the redirect is not for this session.
    let back = tampered(&h, "state", "attacker-state").await;
    assert_eq!(query_of(&back)["code"], "state_mismatch");
    for who in ["victim"] {
        let (status, _) = json(h.user_token(who).await).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "nothing was stored for {who}"
        );
    }

    // The user denies.
    let (mut browser, authorize) = h.open("user-1").await;
    let callback = h.choose(&mut browser, &authorize, "deny").await;
    let back = h.finish(&mut browser, &callback).await;
    let q = query_of(&back);
    assert_eq!(
        (q["result"].as_str(), q["code"].as_str()),
        ("cancelled", "access_denied")
    );

    // Crafted callbacks against a live session: each consumes it and is refused.
    let cases: Vec<(&str, &str)> = vec![
        ("code=a&code=b&state={state}", "duplicate_parameter"),
        ("code=a&state={state}&state={state}", "duplicate_parameter"),
        (
            "code=a&error=access_denied&state={state}",
            "conflicting_outcome",
        ),
        ("state={state}", "no_outcome"),
        ("code=a", "missing_state"),
        ("code=a&state=other", "state_mismatch"),
        ("error=server_error&state={state}", "server_error"),
        ("error=%3Cb%3E&state={state}", "error"),
        ("code=forged&state={state}", "code_exchange_failed"),
    ];
    for (template, want) in cases {
        let (mut browser, authorize) = h.open("user-1").await;
        let state = query_of(&authorize)["state"].clone();
        let query = template.replace("{state}", &state);
        let r = browser
            .get(&format!("{}/user/callback?{query}", h.url))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{template}");
        let back = location(&r);
        assert!(back.as_str().starts_with(RETURN_TO), "{template}");
        assert_eq!(query_of(&back)["code"], want, "{template}");
        // Replaying the callback finds no session.
        let r = browser
            .get(&format!("{}/user/callback?{query}", h.url))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{template}");
    }

    // No cookie at all.
    let mut stranger = Browser::new(h.http.clone());
    let r = stranger
        .get(&format!("{}/user/callback?code=a&state=b", h.url))
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_session"))
    );
    let (status, _) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A login link works once.
    let login = h.login_url("user-1").await;
    let mut b = h.browser();
    assert_eq!(b.get(&login).await.status(), StatusCode::SEE_OTHER);
    let r = b.get(&login).await;
    assert_eq!(r.status(), StatusCode::GONE);
}

#[tokio::test]
async fn the_internal_api_checks_its_input() {
    let h = UserHarness::start(UserOptions::default()).await;
    let post = |body: &'static str, key: Option<&'static str>| {
        let mut req = h
            .http
            .post(format!("{}/api/user-logins", h.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let cases: Vec<(&str, Option<&str>, StatusCode, &str)> = vec![
        (
            r#"{"user":"u","return_to":"https://app.partner.test/x"}"#,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            r#"{"user":"u","return_to":"https://app.partner.test/x"}"#,
            Some("wrong-key-wrong-key-wrong-key-wrong"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            r#"{"user":"u","return_to":"https://evil.example/x"}"#,
            Some(INTERNAL_KEY),
            StatusCode::BAD_REQUEST,
            "invalid_return_to",
        ),
        (
            r#"{"user":"a b","return_to":"https://app.partner.test/x"}"#,
            Some(INTERNAL_KEY),
            StatusCode::BAD_REQUEST,
            "invalid_user",
        ),
        (
            r#"{"user":"u"}"#,
            Some(INTERNAL_KEY),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            r#"{"user":"u","return_to":"https://app.partner.test/x","extra":1}"#,
            Some(INTERNAL_KEY),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "not json",
            Some(INTERNAL_KEY),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, key, status, code) in cases {
        let r = post(body, key).await.unwrap();
        let (got, json) = json(r).await;
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let r = h
        .http
        .post(format!("{}/api/users/a%20b/token", h.url))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_user"))
    );
    let r = h
        .http
        .get(format!("{}/api/users/u/token", h.url))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn signing_in_again_replaces_and_revokes_the_earlier_grant() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    let (_, first) = json(h.user_token("user-1").await).await;
    let first = first["access_token"].as_str().unwrap().to_owned();
    h.emulator.reset_counts();
    h.sign_in("user-1", GRACE).await;
    assert_eq!(h.emulator.count(Endpoint::Revoke), 1);
    let (status, second) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["ims_user_id"], GRACE);
    // The earlier grant's tokens no longer work at IMS; the new one does.
    assert_eq!(h.validate(&first).await["reason"], "revoked");
    let second = second["access_token"].as_str().unwrap();
    assert_eq!(h.validate(second).await["valid"], true);
}

#[tokio::test]
async fn idle_users_leave_memory_and_come_back_from_sqlite() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    let (_, before) = json(h.user_token("user-1").await).await;
    let vault = &h.broker.state.user_login.as_ref().unwrap().service.vault;
    // Asked for just now: kept.
    assert_eq!(vault.evict_idle(Duration::from_secs(600)), 0);
    assert_eq!(vault.evict_idle(Duration::ZERO), 1);
    h.emulator.reset_counts();
    let (status, after) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["access_token"], before["access_token"]);
    assert_eq!(h.emulator.count(Endpoint::Token), 0);
    // Asking for users who never signed in leaves nothing behind.
    for i in 0..5 {
        let (status, _) = json(h.user_token(&format!("stranger-{i}")).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(vault.cached_users(), 1);
}

#[tokio::test]
async fn a_caller_giving_up_mid_refresh_does_not_lose_the_grant() {
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    h.clock.advance(Duration::from_secs(3000));
    h.emulator.reset_counts();
    // IMS answers the refresh slowly; the caller hangs up first.
    h.emulator
        .set_fault(Endpoint::Token, Fault::latency(Duration::from_millis(800)));
    let impatient = h
        .http
        .post(format!("{}/api/users/user-1/token", h.url))
        .bearer_auth(INTERNAL_KEY)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(impatient.is_err(), "the caller gave up");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.emulator.clear_faults();
    // IMS rotated the refresh token during that request; the broker kept the new one.
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.emulator.count(Endpoint::Token), 1, "no second refresh");
    assert_eq!(
        h.validate(body["access_token"].as_str().unwrap()).await["valid"],
        true
    );
    // Still refreshable later with the rotated refresh token.
    h.clock.advance(Duration::from_secs(3000));
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.emulator.count(Endpoint::Token), 2);
}

#[tokio::test]
async fn rotating_the_token_encryption_key_and_resealing() {
    let mut h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    h.sign_in("user-2", GRACE).await;
    let (_, before) = json(h.user_token("user-1").await).await;

    // A new key first, the old one still listed: old grants open, and show as older.
    support::write_secret(
        h.dir.path(),
        "tokens2.key",
        imsgate_broker::keystore::MasterKey::generate_text().expose(),
    );
    h.config_text = h.config_text.replace(
        r#"token_encryption_keys = ["file:tokens.key"]"#,
        r#"token_encryption_keys = ["file:tokens2.key", "file:tokens.key"]"#,
    );
    h.restart().await;
    let vault = h
        .broker
        .state
        .user_login
        .as_ref()
        .unwrap()
        .service
        .vault
        .clone();
    let grants = vault.grants().await.unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants.iter().all(|g| !g.current_key));
    assert_eq!(grants[0].ims_user_id, ADA);
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["access_token"], before["access_token"]);

    let (done, problems) = vault.reseal_all().await.unwrap();
    assert_eq!((done, problems.len()), (2, 0));
    assert!(vault.grants().await.unwrap().iter().all(|g| g.current_key));
    assert_eq!(
        vault.reseal_all().await.unwrap().0,
        0,
        "nothing left to re-seal"
    );

    // The old key can go now.
    h.config_text = h.config_text.replace(
        r#"["file:tokens2.key", "file:tokens.key"]"#,
        r#"["file:tokens2.key"]"#,
    );
    h.restart().await;
    h.emulator.reset_counts();
    for user in ["user-1", "user-2"] {
        let (status, body) = json(h.user_token(user).await).await;
        assert_eq!(status, StatusCode::OK, "{user}: {body}");
    }
    assert_eq!(h.emulator.count(Endpoint::Token), 0);
}

#[tokio::test]
async fn a_missing_encryption_key_is_a_clear_error_and_loses_nothing() {
    let mut h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    let (_, before) = json(h.user_token("user-1").await).await;
    std::fs::rename(
        h.dir.path().join("tokens.key"),
        h.dir.path().join("tokens.old"),
    )
    .unwrap();
    support::write_secret(
        h.dir.path(),
        "tokens.key",
        imsgate_broker::keystore::MasterKey::generate_text().expose(),
    );
    h.restart().await;
    // The stored grant names a key that is not configured: a 500 with fixed text, the row kept.
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error"))
    );
    let vault = h
        .broker
        .state
        .user_login
        .as_ref()
        .unwrap()
        .service
        .vault
        .clone();
    let (done, problems) = vault.reseal_all().await.unwrap();
    assert_eq!(done, 0);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("not in token_encryption_keys"),
        "{problems:?}"
    );
    // Putting the old key back (after the new one) restores access to the same token.
    h.config_text = h.config_text.replace(
        r#"token_encryption_keys = ["file:tokens.key"]"#,
        r#"token_encryption_keys = ["file:tokens.key", "file:tokens.old"]"#,
    );
    h.restart().await;
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], before["access_token"]);
}

#[tokio::test]
async fn a_slow_ims_never_holds_a_caller_past_the_wait_bound() {
    let h = UserHarness::start(UserOptions {
        caller_wait_ms: 300,
        ..UserOptions::default()
    })
    .await;
    h.sign_in("user-1", ADA).await;
    let (_, body) = json(h.user_token("user-1").await).await;
    let first = body["access_token"].as_str().unwrap().to_owned();
    let slow = Fault {
        times: Some(1),
        ..Fault::latency(Duration::from_millis(1500))
    };

    // Nothing valid to serve (inside the last minute of the hour) and IMS answers after 1.5 s:
    // 503 with Retry-After at the bound, while the refresh goes on.
    h.clock.advance(Duration::from_secs(3590));
    h.emulator.reset_counts();
    h.emulator.set_fault(Endpoint::Token, slow.clone());
    let asked = std::time::Instant::now();
    let r = h.user_token("user-1").await;
    let waited = asked.elapsed();
    assert!(r.headers().contains_key("retry-after"));
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{body}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1000),
        "answered after {waited:?}"
    );
    // Once IMS has answered, the stored result is served: no second refresh.
    tokio::time::sleep_until((asked + Duration::from_millis(2100)).into()).await;
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(h.emulator.count(Endpoint::Token), 1, "one refresh request");
    assert_eq!(h.validate(&second).await["valid"], true);

    // Within the refresh margin but still valid: at the bound the caller gets the current
    // token, and the refreshed one is there afterwards.
    h.clock.advance(Duration::from_secs(3000));
    h.emulator.reset_counts();
    h.emulator.set_fault(Endpoint::Token, slow);
    let asked = std::time::Instant::now();
    let (status, body) = json(h.user_token("user-1").await).await;
    let waited = asked.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], second.as_str());
    assert!(
        waited < Duration::from_millis(1000),
        "answered after {waited:?}"
    );
    tokio::time::sleep_until((asked + Duration::from_millis(2100)).into()).await;
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["access_token"], second.as_str());
    assert_eq!(h.emulator.count(Endpoint::Token), 1, "one refresh request");
}

/// A refresh whose write-back fails (another process holds the database's write lock) keeps the
/// rotated refresh token in memory: idle eviction does not drop it, and the minute's sweep writes
/// it once the database is free, so the user stays signed in across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_write_failed_is_kept_and_written_later() {
    let mut h = UserHarness::start(UserOptions {
        caller_wait_ms: 1000,
        ..UserOptions::default()
    })
    .await;
    h.sign_in("user-1", ADA).await;
    let (status, _) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK);

    let db = h.dir.path().join("imsgate.sqlite");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Due for refresh: IMS rotates the refresh token, the write-back cannot get the lock.
    h.clock.advance(Duration::from_secs(3590));
    h.emulator.reset_counts();
    let _ = h.user_token("user-1").await;
    let vault = &h.broker.state.user_login.as_ref().unwrap().service.vault;
    // Wait for the refresh task to give up on the write (the writer waits about 5 s for the lock).
    let mut failed = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if vault.unsaved() == 1 {
            failed = true;
            break;
        }
    }
    assert!(failed, "the write-back never failed");
    assert_eq!(h.emulator.count(Endpoint::Token), 1);
    // Still the only copy of the rotated refresh token: never evicted while unsaved.
    assert_eq!(
        vault.evict_idle(Duration::ZERO),
        0,
        "an unsaved grant was evicted"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(vault.save_unsaved().await, 1);
    assert_eq!(vault.save_unsaved().await, 0, "written once");
    assert_eq!(vault.evict_idle(Duration::ZERO), 1);

    h.restart().await;
    h.clock.advance(Duration::from_secs(3590));
    let (status, body) = json(h.user_token("user-1").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
