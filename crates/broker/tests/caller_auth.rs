//! Caller-token authentication for `/api/client-token`: a table of refused tokens (all 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`), and JWKS mode with key rotation.

mod support;

use serde_json::{Value, json};
use support::*;

async fn assert_401(h: &Harness, name: &str, req: reqwest::RequestBuilder) {
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 401, "case {name}");
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer error=\"invalid_token\""),
        "case {name}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "case {name}");
    assert!(body["error_description"].is_string(), "case {name}");
    let _ = h;
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

/// A token with an arbitrary header, signed HS256 with the right key (so only the header is wrong).
fn forged(header: &Value, claims: &Value, sig_key: &str) -> String {
    use hmac_sig::sign;
    let input = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
    format!("{input}.{}", sign(sig_key, &input))
}

mod hmac_sig {
    /// HS256 over `input`, via jsonwebtoken so tests need no second HMAC implementation.
    pub fn sign(key: &str, input: &str) -> String {
        jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap()
    }
}

#[tokio::test]
async fn refused_caller_tokens_table() {
    let h = Harness::start(Options::default()).await;
    let now = now_secs();
    let good = claims("user-1");
    let url = format!("{}/api/client-token", h.url);
    let bearer = |t: String| {
        h.http
            .get(&url)
            .header("Authorization", format!("Bearer {t}"))
    };
    let hs = |c: Value| hs256(&c, CALLER_KEY);

    // Sanity: the good token passes, so every refusal below is due to the one thing changed.
    assert_eq!(bearer(hs(good.clone())).send().await.unwrap().status(), 200);

    let big_sub = "x".repeat(5000);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no header", h.http.get(&url)),
        (
            "token only in the query string",
            h.http
                .get(format!("{url}?access_token={}", hs(good.clone()))),
        ),
        (
            "basic scheme",
            h.http
                .get(&url)
                .header("Authorization", format!("Basic {}", hs(good.clone()))),
        ),
        (
            "scheme without token",
            h.http.get(&url).header("Authorization", "Bearer"),
        ),
        (
            "two authorization headers",
            h.http
                .get(&url)
                .header("Authorization", format!("Bearer {}", hs(good.clone())))
                .header("Authorization", format!("Bearer {}", hs(good.clone()))),
        ),
        ("garbage", bearer("not.a.jwt".into())),
        (
            "wrong key",
            bearer(hs256(&good, "another-shared-key-0123456789abcdefgh")),
        ),
        (
            "expired",
            bearer(hs(with(
                with(good.clone(), "exp", json!(now - 120)),
                "iat",
                json!(now - 700),
            ))),
        ),
        (
            "wrong audience",
            bearer(hs(with(good.clone(), "aud", json!("someone-else")))),
        ),
        (
            "wrong issuer",
            bearer(hs(with(good.clone(), "iss", json!("https://evil.test")))),
        ),
        ("missing sub", bearer(hs(without(good.clone(), "sub")))),
        (
            "empty sub",
            bearer(hs(with(good.clone(), "sub", json!("")))),
        ),
        ("missing exp", bearer(hs(without(good.clone(), "exp")))),
        (
            "exp as string",
            bearer(hs(with(good.clone(), "exp", json!((now + 60).to_string())))),
        ),
        (
            "lives too long",
            bearer(hs(with(good.clone(), "exp", json!(now + 86_400)))),
        ),
        (
            "issued in the future",
            bearer(hs(with(good.clone(), "iat", json!(now + 3600)))),
        ),
        (
            "not yet valid",
            bearer(hs(with(good.clone(), "nbf", json!(now + 3600)))),
        ),
        (
            "oversized",
            bearer(hs(with(good.clone(), "sub", json!(big_sub)))),
        ),
        (
            "alg none",
            bearer(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&good.to_string())
            )),
        ),
        (
            "alg NONE",
            bearer(format!(
                "{}.{}.",
                b64(r#"{"alg":"NONE","typ":"JWT"}"#),
                b64(&good.to_string())
            )),
        ),
        (
            "alg None signed",
            bearer(forged(&json!({"alg": "None"}), &good, CALLER_KEY)),
        ),
        (
            "alg HS512",
            bearer(
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
                    &good,
                    &jsonwebtoken::EncodingKey::from_secret(CALLER_KEY.as_bytes()),
                )
                .unwrap(),
            ),
        ),
        (
            "RS256 from another issuer's key",
            bearer(h.emulator.sign(json!({"typ": "JWT"}), &good)),
        ),
        (
            "two tokens",
            bearer(format!("{} {}", hs(good.clone()), hs(good.clone()))),
        ),
    ];
    for (name, req) in cases {
        assert_401(&h, name, req).await;
    }
    // Lowercase and uppercase scheme names are accepted (RFC 7235: case-insensitive).
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let r = h
            .http
            .get(&url)
            .header("Authorization", format!("{scheme} {}", hs(good.clone())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "scheme {scheme}");
    }
}

#[tokio::test]
async fn jwks_mode_accepts_rs256_and_follows_key_rotation() {
    let h = Harness::start(Options {
        caller_jwks: true,
        ..Options::default()
    })
    .await;
    let url = format!("{}/api/client-token", h.url);
    let send = |t: String| {
        h.http
            .get(&url)
            .header("Authorization", format!("Bearer {t}"))
            .send()
    };
    let c = claims("jwks-user");

    let r = send(h.emulator.sign(json!({"typ": "JWT"}), &c))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let keys_before = h.emulator.count(imsgate_emulator::Endpoint::Keys);

    // A rotated key is unknown until the verifier refetches the JWKS once.
    let new_kid = h.emulator.rotate_keys();
    assert_eq!(h.emulator.current_kid(), new_kid);
    let r = send(h.emulator.sign(json!({"typ": "JWT"}), &c))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "token signed with the rotated key");
    assert_eq!(
        h.emulator.count(imsgate_emulator::Endpoint::Keys),
        keys_before + 1
    );

    // An HS256 token keyed with anything is refused: the allow-list is RS256 only.
    assert_eq!(send(caller("jwks-user")).await.unwrap().status(), 401);
    // A token naming an unknown kid triggers at most one rate-limited refetch, not one per request.
    let before = h.emulator.count(imsgate_emulator::Endpoint::Keys);
    for _ in 0..20 {
        let t = h.emulator.sign(json!({"typ": "JWT"}), &c);
        // Re-sign under a kid that does not exist by editing the header (the signature then
        // fails too, but the kid lookup comes first).
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[0] = b64(r#"{"alg":"RS256","kid":"no-such-kid"}"#);
        assert_eq!(send(parts.join(".")).await.unwrap().status(), 401);
    }
    assert!(
        h.emulator.count(imsgate_emulator::Endpoint::Keys) <= before + 1,
        "unknown kids must not hammer the JWKS endpoint"
    );
    // A key embedded in the header is never used: an attacker's key under the real kid, with its
    // public half in `jwk` and a `jku` pointing at it, must fail signature verification.
    let attacker = imsgate_emulator::keys::SigningKey::generate(h.emulator.current_kid());
    let jwk = attacker.jwk();
    let embedded = attacker.sign(
        json!({"typ": "JWT", "jwk": jwk, "jku": format!("{}/ims/keys", h.emulator.base_url())}),
        &c,
    );
    assert_eq!(send(embedded).await.unwrap().status(), 401);
    // The same attacker token without the embedded key is refused the same way.
    assert_eq!(
        send(attacker.sign(json!({"typ": "JWT"}), &c))
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn jwks_mode_with_es256() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = key.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256", "use": "sig",
        "x": b64_bytes(&point[1..33]), "y": b64_bytes(&point[33..65]),
    }]});
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let h = Harness::start(Options {
        caller_jwks_url: Some((jwks_url, r#"["ES256"]"#)),
        ..Options::default()
    })
    .await;
    let es256 = |header: &str, claims: &Value| {
        let input = format!("{}.{}", b64(header), b64(&claims.to_string()));
        let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64_bytes(sig.as_ref()))
    };
    let url = format!("{}/api/client-token", h.url);
    let send = |t: String| {
        h.http
            .get(&url)
            .header("Authorization", format!("Bearer {t}"))
            .send()
    };
    let c = claims("ec-user");
    assert_eq!(
        send(es256(r#"{"alg":"ES256","kid":"ec-1"}"#, &c))
            .await
            .unwrap()
            .status(),
        200
    );
    // RS256 is not in this deployment's allow-list, even from a real key.
    assert_eq!(
        send(h.emulator.sign(json!({}), &c)).await.unwrap().status(),
        401
    );
    // A valid ES256 signature over claims for another audience is still refused.
    let wrong_aud = with(c.clone(), "aud", json!("other"));
    assert_eq!(
        send(es256(r#"{"alg":"ES256","kid":"ec-1"}"#, &wrong_aud))
            .await
            .unwrap()
            .status(),
        401
    );
    // The header claims ES256 but names no key.
    assert_eq!(
        send(es256(r#"{"alg":"ES256"}"#, &c))
            .await
            .unwrap()
            .status(),
        401
    );
}

fn b64_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
