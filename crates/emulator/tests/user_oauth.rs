//! User OAuth over real HTTP: the sign-in page, its redirects, the `authorization_code` grant with
//! PKCE, rotating refresh tokens, and `/ims/revoke`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use imsgate_ims::user_oauth::s256_challenge;
use serde_json::Value;

const CLIENT: &str = "web-client";
const SECRET: &str = "web-secret";
const REDIRECT: &str = "https://app.example/user/callback";
const ADA: &str = "USERA00000000000000000@AdobeID";

async fn start() -> RunningEmulator {
    Emulator::new(EmulatorConfig {
        clients: vec![EmulatorClient {
            default_redirect_uri: Some(REDIRECT.into()),
            ..EmulatorClient::new(
                CLIENT,
                SECRET,
                &["openid", "AdobeID", "offline_access"],
                3600,
            )
        }],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn verifier(c: char) -> String {
    c.to_string().repeat(50)
}

fn authorize_params(challenge: Option<(&str, Option<&str>)>) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("client_id", CLIENT.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", "openid,AdobeID,offline_access".to_owned()),
        ("response_type", "code".to_owned()),
        ("state", "the-state".to_owned()),
        ("nonce", "the-nonce".to_owned()),
    ];
    if let Some((c, m)) = challenge {
        p.push(("code_challenge", c.to_owned()));
        if let Some(m) = m {
            p.push(("code_challenge_method", m.to_owned()));
        }
    }
    p
}

fn authorize_url(emu: &RunningEmulator, params: &[(&str, String)]) -> url::Url {
    let mut url = url::Url::parse(&format!("{}/ims/authorize/v2", emu.base_url())).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url
}

fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

/// Signs in as `user` through the page's form and returns the redirect's query.
async fn sign_in(
    emu: &RunningEmulator,
    params: &[(&str, String)],
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut form: Vec<(&str, String)> = params.to_vec();
    for (k, v) in extra {
        form.push((k, (*v).to_owned()));
    }
    let resp = http()
        .post(format!("{}/ims/authorize/v2", emu.base_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    query_of(&location)
}

async fn exchange(
    emu: &RunningEmulator,
    code: &str,
    verifier: Option<&str>,
    basic: bool,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v.to_owned()));
    }
    let mut req = http().post(format!("{}/ims/token/v3", emu.base_url()));
    if basic {
        let creds = STANDARD.encode(format!("{CLIENT}:{SECRET}"));
        req = req.header("authorization", format!("Basic {creds}"));
    } else {
        form.push(("client_id", CLIENT.to_owned()));
        form.push(("client_secret", SECRET.to_owned()));
    }
    let resp = req.form(&form).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn refresh(emu: &RunningEmulator, token: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/ims/token/v3", emu.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn validate(emu: &RunningEmulator, token: &str) -> Value {
    http()
        .post(format!("{}/ims/validate_token/v1", emu.base_url()))
        .form(&[
            ("type", "access_token"),
            ("client_id", CLIENT),
            ("token", token),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn sign_in_code_exchange_refresh_rotation_and_revoke() {
    let emu = start().await;
    let v = verifier('a');
    let challenge = s256_challenge(&v);
    let params = authorize_params(Some((&challenge, Some("S256"))));

    let page = http()
        .get(authorize_url(&emu, &params))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(ADA), "the page offers the emulated users");

    let back = sign_in(&emu, &params, &[("user", ADA)]).await;
    assert_eq!(back["state"], "the-state");
    let code = back["code"].clone();

    let (status, body) = exchange(&emu, &code, Some(&v), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let id_token = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id_token["sub"], ADA);
    assert_eq!(id_token["aud"], CLIENT);
    assert_eq!(id_token["nonce"], "the-nonce");
    assert_eq!(claims(&access)["user_id"], ADA);
    assert_eq!(validate(&emu, &access).await["valid"], true);

    // The code is single-use.
    let (status, body) = exchange(&emu, &code, Some(&v), true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A refresh rotates the refresh token; the old one stops working.
    let (status, body) = refresh(&emu, &first_refresh).await;
    assert_eq!(status, 200, "{body}");
    let second_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert!(body.get("id_token").is_none());
    let (status, body) = refresh(&emu, &first_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Revoking the refresh token ends the grant and the access tokens it produced.
    let resp = http()
        .post(format!("{}/ims/revoke", emu.base_url()))
        .form(&[
            ("token", second_refresh.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    let (status, _) = refresh(&emu, &second_refresh).await;
    assert_eq!(status, 400);
    let verdict = validate(&emu, &access).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], "revoked");

    // Revoke needs the client's credentials, and answers 200 for tokens it does not know.
    let resp = http()
        .post(format!("{}/ims/revoke", emu.base_url()))
        .form(&[
            ("token", "x"),
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http()
        .post(format!("{}/ims/revoke", emu.base_url()))
        .form(&[
            ("token", "x"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn pkce_verifier_must_match_the_challenge() {
    let emu = start().await;
    let v = verifier('b');
    let challenge = s256_challenge(&v);
    // (challenge as sent, verifier presented, accepted)
    type Sent<'a> = Option<(String, Option<&'a str>)>;
    let cases: Vec<(Sent, Option<String>, bool)> = vec![
        (
            Some((challenge.clone(), Some("S256"))),
            Some(v.clone()),
            true,
        ),
        (
            Some((challenge.clone(), Some("S256"))),
            Some(verifier('c')),
            false,
        ),
        // The challenge itself is not the verifier.
        (
            Some((challenge.clone(), Some("S256"))),
            Some(challenge.clone()),
            false,
        ),
        (Some((challenge.clone(), Some("S256"))), None, false),
        (
            Some((challenge.clone(), Some("S256"))),
            Some("short".into()),
            false,
        ),
        // Without a method IMS assumes plain: the verifier is compared as is.
        (Some((v.clone(), None)), Some(v.clone()), true),
        (Some((challenge.clone(), None)), Some(v.clone()), false),
        // No PKCE at all: a confidential client may still exchange.
        (None, None, true),
        // A verifier without a challenge: the challenge was stripped on the way.
        (None, Some(v.clone()), false),
    ];
    for (i, (ch, presented, ok)) in cases.into_iter().enumerate() {
        let params = authorize_params(ch.as_ref().map(|(c, m)| (c.as_str(), *m)));
        let back = sign_in(&emu, &params, &[("user", ADA)]).await;
        let (status, body) = exchange(&emu, &back["code"], presented.as_deref(), false).await;
        if ok {
            assert_eq!(status, 200, "case {i}: {body}");
        } else {
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "case {i}"
            );
        }
    }
}

#[tokio::test]
async fn authorize_request_table() {
    let emu = start().await;
    let ch = s256_challenge(&verifier('d'));
    let base = authorize_params(Some((&ch, Some("S256"))));
    let with = |k: &'static str, v: &str| {
        let mut p: Vec<(&str, String)> = base.iter().filter(|(n, _)| *n != k).cloned().collect();
        p.push((k, v.to_owned()));
        p
    };
    let without = |k: &str| -> Vec<(&str, String)> {
        base.iter().filter(|(n, _)| *n != k).cloned().collect()
    };
    // (params, expected: Err(status) for a page, Ok(error code) for a redirect)
    type Params<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(&str, Params, Result<&str, u16>)> = vec![
        ("unknown client", with("client_id", "nobody"), Err(400)),
        (
            "unregistered redirect",
            with("redirect_uri", "https://evil.example/cb"),
            Err(400),
        ),
        (
            "javascript redirect",
            with("redirect_uri", "javascript:alert(1)"),
            Err(400),
        ),
        (
            "implicit flow",
            with("response_type", "token"),
            Ok("unsupported_response_type"),
        ),
        (
            "scope outside the client",
            with("scope", "openid,firefly_api"),
            Ok("invalid_scope"),
        ),
        ("no scope", without("scope"), Ok("invalid_scope")),
        (
            "unknown method",
            with("code_challenge_method", "S512"),
            Ok("invalid_request"),
        ),
        (
            "short challenge",
            with("code_challenge", "abc"),
            Ok("invalid_request"),
        ),
    ];
    for (name, params, want) in cases {
        let resp = http()
            .get(authorize_url(&emu, &params))
            .send()
            .await
            .unwrap();
        match want {
            Err(status) => {
                assert_eq!(resp.status().as_u16(), status, "{name}");
                assert!(resp.headers().get("location").is_none(), "{name}");
            }
            Ok(code) => {
                assert_eq!(resp.status(), 303, "{name}");
                let q = query_of(resp.headers()["location"].to_str().unwrap());
                assert_eq!(q["error"], code, "{name}");
                assert_eq!(q["state"], "the-state", "{name}");
                assert!(!q.contains_key("code"), "{name}");
            }
        }
    }
    // The user may deny.
    let back = sign_in(&emu, &base, &[("action", "deny")]).await;
    assert_eq!(back["error"], "access_denied");
    assert!(!back.contains_key("code"));
}
