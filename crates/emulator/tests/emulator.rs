//! The emulator over real HTTP: IMS's answers and error bodies, JWKS, discovery, validation, and
//! the admin API that scripts faults and reads counters.

use std::time::Duration;

use base64::Engine;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

async fn start() -> RunningEmulator {
    Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient {
            client_secrets: vec!["old-secret".into(), "new-secret".into()],
            allowed_org_ids: vec!["CUSTOMER1@AdobeOrg".into()],
            ..EmulatorClient::new("c1", "unused", &["openid", "AdobeID", "firefly_api"], 300)
        }],
        ..Default::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

async fn token(
    e: &RunningEmulator,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .post(format!("{}/ims/token/v3", e.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test]
async fn token_endpoint_table() {
    let e = start().await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", "c1"),
        ("client_secret", "new-secret"),
        ("scope", "openid,firefly_api"),
    ];
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("valid, second secret", ok.to_vec(), 200, None),
        (
            "valid, first secret",
            vec![ok[0], ok[1], ("client_secret", "old-secret"), ok[3]],
            200,
            None,
        ),
        (
            "unknown client",
            vec![ok[0], ("client_id", "nope"), ok[2], ok[3]],
            400,
            Some("invalid_client"),
        ),
        (
            "bad secret",
            vec![ok[0], ok[1], ("client_secret", "wrong"), ok[3]],
            401,
            Some("invalid_client"),
        ),
        (
            "scope not allowed",
            vec![ok[0], ok[1], ok[2], ("scope", "openid,email")],
            400,
            Some("invalid_scope"),
        ),
        (
            "no scope",
            vec![ok[0], ok[1], ok[2]],
            400,
            Some("invalid_scope"),
        ),
        (
            "no grant",
            vec![ok[1], ok[2], ok[3]],
            400,
            Some("invalid_request"),
        ),
        (
            "other grant",
            vec![("grant_type", "password"), ok[1], ok[2], ok[3]],
            400,
            Some("unsupported_grant_type"),
        ),
        (
            "allowed org",
            vec![ok[0], ok[1], ok[2], ok[3], ("org_id", "CUSTOMER1@AdobeOrg")],
            200,
            None,
        ),
        (
            "org not allowed",
            vec![ok[0], ok[1], ok[2], ok[3], ("org_id", "OTHER@AdobeOrg")],
            400,
            Some("invalid_org"),
        ),
    ];
    for (name, form, status, error) in cases {
        let (got, body, headers) = token(&e, &form).await;
        assert_eq!(got, status, "{name}: {body}");
        assert!(headers.contains_key("x-debug-id"), "{name}");
        match error {
            Some(code) => {
                assert_eq!(body["error"], code, "{name}");
                assert!(body["error_description"].is_string(), "{name}");
            }
            None => {
                assert_eq!(body["token_type"], "bearer");
                assert_eq!(body["expires_in"], 300);
                let t = body["access_token"].as_str().unwrap();
                let claims: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(t.split('.').nth(1).unwrap())
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(claims["client_id"], "c1");
                assert_eq!(
                    claims["expires_in"], "300000",
                    "IMS puts milliseconds in the token"
                );
                assert_eq!(claims["scope"], "openid,firefly_api");
                let org = form
                    .iter()
                    .find(|(k, _)| *k == "org_id")
                    .map(|(_, v)| *v)
                    .unwrap_or("EMULATEDORG000000000000@AdobeOrg");
                assert_eq!(claims["org_id"], org, "{name}");
            }
        }
    }
    // HTTP Basic client authentication (client_secret_basic).
    let r = reqwest::Client::new()
        .post(format!("{}/ims/token/v3", e.base_url()))
        .basic_auth("c1", Some("old-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(e.count(imsgate_emulator::Endpoint::Token), 11);
}

#[tokio::test]
async fn keys_discovery_and_validation() {
    let e = start().await;
    let http = reqwest::Client::new();
    let d: Value = http
        .get(format!(
            "{}/ims/.well-known/openid-configuration",
            e.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], e.base_url());
    assert_eq!(
        d["token_endpoint"],
        format!("{}/ims/token/v3", e.base_url())
    );
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));

    let (_, body, _) = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "c1"),
            ("client_secret", "old-secret"),
            ("scope", "openid"),
        ],
    )
    .await;
    let t = body["access_token"].as_str().unwrap().to_owned();
    let validate = |token: String, client: &'static str| {
        let http = http.clone();
        let url = format!("{}/ims/validate_token/v1", e.base_url());
        async move {
            http.post(url)
                .form(&[
                    ("type", "access_token"),
                    ("client_id", client),
                    ("token", &token),
                ])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(validate(t.clone(), "c1").await["valid"], true);
    assert_eq!(validate(t.clone(), "c2").await["valid"], false);
    let mut tampered = t.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    assert_eq!(validate(tampered, "c1").await["reason"], "bad_signature");

    // After one rotation the old key is still published, so the token still validates; after two
    // it is gone.
    let keys: Value = http
        .get(format!("{}/ims/keys", e.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["alg"], "RS256");
    let rotated: Value = http
        .post(format!("{}/__admin/keys/rotate", e.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rotated["kid"], e.current_kid());
    let keys: Value = http
        .get(format!("{}/ims/keys", e.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert_eq!(validate(t.clone(), "c1").await["valid"], true);
    e.rotate_keys();
    assert_eq!(validate(t, "c1").await["valid"], false);
}

#[tokio::test]
async fn admin_api_scripts_faults_and_counts() {
    let e = start().await;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{}/__admin{path}", e.base_url());
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", "c1"),
        ("client_secret", "old-secret"),
        ("scope", "openid"),
    ];

    let r = http
        .put(admin("/faults/token"))
        .body(r#"{"status": 429, "body": "{\"error\":\"too_many_requests\"}", "retry_after": "7", "times": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for _ in 0..2 {
        let (status, body, headers) = token(&e, &good).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"], "too_many_requests");
        assert_eq!(headers["retry-after"], "7");
    }
    assert_eq!(
        token(&e, &good).await.0,
        200,
        "the fault was limited to two requests"
    );

    http.put(admin("/faults/token"))
        .body(r#"{"drop_connection": true}"#)
        .send()
        .await
        .unwrap();
    let dropped = http
        .post(format!("{}/ims/token/v3", e.base_url()))
        .form(&good)
        .send()
        .await;
    let failed = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(
        failed,
        "a dropped connection must not yield a complete response"
    );

    http.put(admin("/faults/token"))
        .body(r#"{"latency_ms": 300}"#)
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(token(&e, &good).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let counters: Value = http
        .get(admin("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["token"], 5);
    assert_eq!(counters["keys"], 0);

    assert_eq!(
        http.delete(admin("/faults")).send().await.unwrap().status(),
        204
    );
    assert_eq!(
        http.post(admin("/counters/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(e.count(imsgate_emulator::Endpoint::Token), 0);

    // Bad admin input is a clear JSON error.
    let r = http
        .put(admin("/faults/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .put(admin("/faults/token"))
        .body(r#"{"status": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_fault");
}

#[tokio::test]
async fn userinfo_accepts_issued_tokens_from_any_origin() {
    let e = start().await;
    let (status, body, _) = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "c1"),
            ("client_secret", "new-secret"),
            ("scope", "openid,AdobeID"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let access = body["access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/ims/userinfo/v2", e.base_url());
    let r = http.get(&url).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["client_id"], "c1");
    // A tampered token, a token signed by nobody we know, and no token at all are refused.
    let tampered = format!("{}x", &access[..access.len() - 1]);
    for auth in [
        Some(format!("Bearer {tampered}")),
        Some("Bearer a.b.c".into()),
        None,
    ] {
        let mut req = http.get(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_token");
    }
    let r = http
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-headers"], "authorization");
}
