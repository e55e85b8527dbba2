//! Caller-token authentication for `/api/client-token`: a table of refused tokens (all 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`), every documented `caller_auth` example
//! against every algorithm, and JWKS mode with key rotation and its refetch budget.

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

/// A token with raw header and claims JSON, signed HS256 with the right key.
fn forged_raw(header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    format!("{input}.{}", hmac_sig::sign(CALLER_KEY, &input))
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
        // Header extensions: none is supported, so naming any refuses the token.
        (
            "crit",
            bearer(forged(
                &json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}),
                &good,
                CALLER_KEY,
            )),
        ),
        (
            "empty crit",
            bearer(forged(
                &json!({"alg": "HS256", "crit": []}),
                &good,
                CALLER_KEY,
            )),
        ),
        (
            "b64 false",
            bearer(forged(
                &json!({"alg": "HS256", "b64": false}),
                &good,
                CALLER_KEY,
            )),
        ),
        // Duplicate JSON keys: the last `alg` would be HS256, the last `sub` another user.
        (
            "duplicate alg in header",
            bearer(forged_raw(
                r#"{"alg":"none","alg":"HS256"}"#,
                &good.to_string(),
            )),
        ),
        (
            "duplicate sub in claims",
            bearer(forged_raw(
                r#"{"alg":"HS256"}"#,
                &format!(
                    r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"user-1","sub":"admin","exp":{}}}"#,
                    now + 300
                ),
            )),
        ),
        // Claim shapes before values.
        (
            "iss array of the issuer",
            bearer(hs(with(good.clone(), "iss", json!([ISSUER])))),
        ),
        (
            "iss array with another issuer",
            bearer(hs(with(
                good.clone(),
                "iss",
                json!([ISSUER, "https://evil.example"]),
            ))),
        ),
        (
            "aud array with an extra audience and no azp",
            bearer(hs(with(good.clone(), "aud", json!([AUDIENCE, "other"])))),
        ),
        (
            "azp of another party",
            bearer(hs(with(good.clone(), "azp", json!("other")))),
        ),
        (
            "aud empty array",
            bearer(hs(with(good.clone(), "aud", json!([])))),
        ),
        (
            "sub a number",
            bearer(hs(with(good.clone(), "sub", json!(42)))),
        ),
        (
            "iat a string",
            bearer(hs(with(good.clone(), "iat", json!(now.to_string())))),
        ),
    ];
    for (name, req) in cases {
        assert_401(&h, name, req).await;
    }
    // Accepted shapes under the audience rule, and fractional NumericDates.
    let accepted: Vec<(&str, Value)> = vec![
        (
            "aud array of one",
            with(good.clone(), "aud", json!([AUDIENCE])),
        ),
        (
            "aud array with an extra audience and azp",
            with(
                with(good.clone(), "aud", json!([AUDIENCE, "other"])),
                "azp",
                json!(AUDIENCE),
            ),
        ),
        (
            "fractional exp",
            with(good.clone(), "exp", json!(now as f64 + 300.5)),
        ),
    ];
    for (name, c) in accepted {
        assert_eq!(bearer(hs(c)).send().await.unwrap().status(), 200, "{name}");
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

/// The `[client_token.caller_auth]` tables of every TOML example in docs/configuration.md.
fn documented_caller_auth_tables() -> Vec<toml::Table> {
    let doc = include_str!("../../../docs/configuration.md");
    let mut tables = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find("```toml\n") {
        let start = i + "```toml\n".len();
        let end = start + rest[start..].find("```").expect("closed example");
        let example: toml::Table = toml::from_str(&rest[start..end]).expect("example parses");
        if let Some(ca) = example
            .get("client_token")
            .and_then(|c| c.get("caller_auth"))
            .and_then(toml::Value::as_table)
        {
            tables.push(ca.clone());
        }
        rest = &rest[end + 3..];
    }
    tables
}

/// Every documented `caller_auth` example, configured as written (only the secret file and the
/// JWKS URL point at the test's): a valid token of each allowed algorithm is accepted, a token of
/// every other algorithm refused, each signed with a real key of its kind from the key set.
#[tokio::test]
async fn every_documented_caller_auth_example_accepts_exactly_its_algorithms() {
    let keys = support::jwt::TestKeys::default();
    let tables = documented_caller_auth_tables();
    assert!(tables.len() >= 5, "{} examples found", tables.len());
    let mut seen_mixed = false;
    let mut failures = Vec::new();
    for documented in tables {
        let emulator = start_emulator(300).await;
        emulator.set_published_jwks(Some(keys.jwks()));
        let mut table = documented.clone();
        let allowed: Vec<String> = if table.contains_key("hs256_secret") {
            table.insert("hs256_secret".into(), "file:caller.key".into());
            vec!["HS256".into()]
        } else {
            table.insert(
                "jwks_url".into(),
                format!("{}/ims/keys", emulator.base_url()).into(),
            );
            match table.get("algorithms") {
                Some(list) => list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
                None => vec!["RS256".into()],
            }
        };
        seen_mixed |= allowed.len() > 1;
        let issuer = table["issuer"].as_str().unwrap().to_owned();
        let audience = table["audience"].as_str().unwrap().to_owned();
        let h = Harness::start_with(
            emulator,
            Options {
                caller_auth: Some(toml::to_string(&table).unwrap()),
                ..Options::default()
            },
        )
        .await;
        let now = now_secs();
        let claims = json!({
            "iss": issuer, "aud": audience, "sub": "documented-user", "iat": now, "exp": now + 300,
        });
        for alg in support::jwt::ALL_ALGS {
            let header = json!({"typ": "JWT", "kid": support::jwt::TestKeys::kid_for(alg)});
            let token = keys.sign(alg, header, &claims);
            let got = h.client_token(&token).await.status().as_u16();
            let want = if allowed.iter().any(|a| a == alg) {
                200
            } else {
                401
            };
            if got != want {
                failures.push(format!("{allowed:?}: {alg} token got {got}, want {want}"));
            }
        }
        // The same valid token with `crit` is refused under every example.
        for alg in &allowed {
            let header =
                json!({"typ": "JWT", "kid": support::jwt::TestKeys::kid_for(alg), "crit": ["exp"]});
            let got = h
                .client_token(&keys.sign(alg, header, &claims))
                .await
                .status();
            if got != 401 {
                failures.push(format!("{allowed:?}: {alg} token with crit got {got}"));
            }
        }
    }
    assert!(seen_mixed, "the docs show an RSA-and-EC example");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Unknown kids refetch the key set within a budget: a storm of bogus kids causes a bounded
/// number of fetches, and a genuinely rotated key is accepted within a few seconds of the storm.
#[tokio::test]
async fn a_rotated_key_is_picked_up_within_seconds_despite_bogus_kids() {
    let h = Harness::start(Options {
        caller_jwks: true,
        ..Options::default()
    })
    .await;
    let c = claims("rotation-user");
    let bogus = |i: usize| {
        let t = h.emulator.sign(json!({"typ": "JWT"}), &c);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[0] = b64(&format!(r#"{{"alg":"RS256","kid":"bogus-{i}"}}"#));
        parts.join(".")
    };
    assert_eq!(
        h.client_token(&h.emulator.sign(json!({}), &c))
            .await
            .status(),
        200
    );
    let before = h.emulator.count(imsgate_emulator::Endpoint::Keys);
    // A storm: 200 bogus kids as fast as the broker answers, spread over about two seconds.
    let storm_start = std::time::Instant::now();
    let mut sent = 0;
    while storm_start.elapsed() < std::time::Duration::from_millis(2000) && sent < 200 {
        assert_eq!(h.client_token(&bogus(sent)).await.status(), 401);
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let storm_fetches = h.emulator.count(imsgate_emulator::Endpoint::Keys) - before;
    // The burst of four, plus at most one per refill period of the storm's length.
    assert!(
        storm_fetches <= 5,
        "{storm_fetches} JWKS fetches for {sent} bogus kids"
    );
    // The key rotates; bogus kids keep coming, and the genuine token is accepted within seconds.
    h.emulator.rotate_keys();
    let rotated = std::time::Instant::now();
    let genuine = h.emulator.sign(json!({}), &c);
    let mut accepted = None;
    let mut i = 1000;
    while rotated.elapsed() < std::time::Duration::from_secs(6) {
        let _ = h.client_token(&bogus(i)).await;
        i += 1;
        if h.client_token(&genuine).await.status() == 200 {
            accepted = Some(rotated.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let accepted = accepted.expect("the rotated key was never accepted");
    assert!(
        accepted <= std::time::Duration::from_millis(3500),
        "the rotated key took {accepted:?}"
    );
}
