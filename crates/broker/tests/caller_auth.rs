//! Caller-token authentication for `/api/client-token`: a table of refused tokens (all 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`), every documented `caller_auth` example
//! against every algorithm, and JWKS mode with key rotation and its refetch budget.

mod support;

use serde_json::{Value, json};
use support::*;

// The descriptions several cases share; each is listed in docs/http-api.md.
const NO_TOKEN: &str = "no caller token: send it in the Authorization header as `Bearer <token>`";
const NOT_BEARER: &str =
    "the Authorization header is not `Bearer <token>` (one token, no other scheme)";
const HEADER_MALFORMED: &str =
    "the caller token's header is malformed: not a base64url JSON object without repeated keys";
const ALG: &str = "the caller token's algorithm (`alg` header) is missing or not allowed here";
const CRIT: &str =
    "the caller token's header names a JWS extension (`crit`, `b64` or `zip`); none is supported";
const ISS_TYPE: &str = "the caller token's `iss` claim has the wrong type or form";
const AZP: &str = "the caller token's authorized party (`azp`) is wrong or missing (required when `aud` names others too)";

/// Sends `req` and checks the refusal: 401, the Bearer challenge, `invalid_token`, exactly the
/// `want` description, which must not contain the token, any part of it, or any string value
/// from its header or claims; and `want` is listed in docs/http-api.md.
async fn assert_refused(name: &str, req: reqwest::RequestBuilder, want: &str) {
    let built = req.try_clone().unwrap().build().unwrap();
    let mut sent: Vec<String> = Vec::new();
    for v in built.headers().get_all("authorization") {
        sent.push(v.to_str().unwrap().to_owned());
    }
    if let Some(q) = built.url().query() {
        sent.push(q.to_owned());
    }
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
    let got = body["error_description"].as_str().unwrap_or_default();
    assert_eq!(got, want, "case {name}");
    for secret in attacker_strings(&sent) {
        assert!(
            !got.contains(&secret),
            "case {name}: the description echoes {secret:?}"
        );
    }
    let doc = include_str!("../../../docs/http-api.md");
    let generic = regex::Regex::new("`(iss|sub|aud|exp|iat|nbf)`")
        .unwrap()
        .replace_all(want, "`<claim>`");
    assert!(
        doc.contains(want) || doc.contains(generic.as_ref()),
        "case {name}: docs/http-api.md does not list {want:?}"
    );
}

/// What an attacker sent: each header value, each token word, each of its dot-separated parts
/// (8 characters or more), and every string value (4 or more) in a part that decodes to JSON.
fn attacker_strings(sent: &[String]) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= 4 => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    use base64::Engine;
    let mut out = Vec::new();
    for value in sent {
        out.push(value.clone());
        for word in value.split([' ', '=', '&']) {
            out.push(word.to_owned());
            for part in word.split('.').filter(|p| p.len() >= 8) {
                out.push(part.to_owned());
                if let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)
                    && let Ok(json) = serde_json::from_slice::<Value>(&bytes)
                {
                    strings(&json, &mut out);
                }
            }
        }
    }
    // The scheme names are the protocol's words, which the descriptions use too.
    out.retain(|s| s.len() >= 4 && !["bearer", "basic"].contains(&s.to_lowercase().as_str()));
    out
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
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        ("no header", h.http.get(&url), NO_TOKEN),
        (
            "token only in the query string",
            h.http
                .get(format!("{url}?access_token={}", hs(good.clone()))),
            NO_TOKEN,
        ),
        (
            "basic scheme",
            h.http
                .get(&url)
                .header("Authorization", format!("Basic {}", hs(good.clone()))),
            NOT_BEARER,
        ),
        (
            "scheme without token",
            h.http.get(&url).header("Authorization", "Bearer"),
            NOT_BEARER,
        ),
        (
            "two authorization headers",
            h.http
                .get(&url)
                .header("Authorization", format!("Bearer {}", hs(good.clone())))
                .header("Authorization", format!("Bearer {}", hs(good.clone()))),
            "the Authorization header is repeated or is not plain ASCII text",
        ),
        ("garbage", bearer("not.a.jwt".into()), HEADER_MALFORMED),
        (
            "wrong key",
            bearer(hs256(&good, "another-shared-key-0123456789abcdefgh")),
            "the caller token's signature is invalid",
        ),
        (
            "expired",
            bearer(hs(with(
                with(good.clone(), "exp", json!(now - 120)),
                "iat",
                json!(now - 700),
            ))),
            "the caller token has expired (`exp`)",
        ),
        (
            "wrong audience",
            bearer(hs(with(good.clone(), "aud", json!("someone-else")))),
            "the caller token's audience (`aud`) is wrong",
        ),
        (
            "wrong issuer",
            bearer(hs(with(good.clone(), "iss", json!("https://evil.test")))),
            "the caller token's issuer (`iss`) is wrong",
        ),
        (
            "missing sub",
            bearer(hs(without(good.clone(), "sub"))),
            "the caller token has no `sub` claim",
        ),
        (
            "empty sub",
            bearer(hs(with(good.clone(), "sub", json!("")))),
            "the caller token's subject (`sub`) is empty or longer than 256 bytes",
        ),
        (
            "missing exp",
            bearer(hs(without(good.clone(), "exp"))),
            "the caller token has no `exp` claim",
        ),
        (
            "exp as string",
            bearer(hs(with(good.clone(), "exp", json!((now + 60).to_string())))),
            "the caller token's `exp` claim has the wrong type or form",
        ),
        (
            "lives too long",
            bearer(hs(with(good.clone(), "exp", json!(now + 86_400)))),
            "the caller token's lifetime is too long: `exp` is further ahead than the configured maximum",
        ),
        (
            "issued in the future",
            bearer(hs(with(good.clone(), "iat", json!(now + 3600)))),
            "the caller token is not valid yet (`iat` is in the future)",
        ),
        (
            "not yet valid",
            bearer(hs(with(good.clone(), "nbf", json!(now + 3600)))),
            "the caller token is not valid yet (`nbf` is in the future)",
        ),
        (
            "oversized",
            bearer(hs(with(good.clone(), "sub", json!(big_sub)))),
            "the caller token is larger than 4096 bytes",
        ),
        (
            "alg none",
            bearer(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&good.to_string())
            )),
            ALG,
        ),
        (
            "alg NONE",
            bearer(format!(
                "{}.{}.",
                b64(r#"{"alg":"NONE","typ":"JWT"}"#),
                b64(&good.to_string())
            )),
            ALG,
        ),
        (
            "alg None signed",
            bearer(forged(&json!({"alg": "None"}), &good, CALLER_KEY)),
            ALG,
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
            ALG,
        ),
        (
            "RS256 from another issuer's key",
            bearer(h.emulator.sign(json!({"typ": "JWT"}), &good)),
            ALG,
        ),
        (
            "two tokens",
            bearer(format!("{} {}", hs(good.clone()), hs(good.clone()))),
            NOT_BEARER,
        ),
        // Header extensions: none is supported, so naming any refuses the token.
        (
            "crit",
            bearer(forged(
                &json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}),
                &good,
                CALLER_KEY,
            )),
            CRIT,
        ),
        (
            "empty crit",
            bearer(forged(
                &json!({"alg": "HS256", "crit": []}),
                &good,
                CALLER_KEY,
            )),
            CRIT,
        ),
        (
            "b64 false",
            bearer(forged(
                &json!({"alg": "HS256", "b64": false}),
                &good,
                CALLER_KEY,
            )),
            CRIT,
        ),
        // Duplicate JSON keys: the last `alg` would be HS256, the last `sub` another user.
        (
            "duplicate alg in header",
            bearer(forged_raw(
                r#"{"alg":"none","alg":"HS256"}"#,
                &good.to_string(),
            )),
            HEADER_MALFORMED,
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
            "the caller token's claims are malformed: not a base64url JSON object without repeated keys",
        ),
        // Claim shapes before values.
        (
            "iss array of the issuer",
            bearer(hs(with(good.clone(), "iss", json!([ISSUER])))),
            ISS_TYPE,
        ),
        (
            "iss array with another issuer",
            bearer(hs(with(
                good.clone(),
                "iss",
                json!([ISSUER, "https://evil.example"]),
            ))),
            ISS_TYPE,
        ),
        (
            "aud array with an extra audience and no azp",
            bearer(hs(with(
                good.clone(),
                "aud",
                json!([AUDIENCE, "other-audience"]),
            ))),
            AZP,
        ),
        (
            "azp of another party",
            bearer(hs(with(good.clone(), "azp", json!("other-party")))),
            AZP,
        ),
        (
            "aud empty array",
            bearer(hs(with(good.clone(), "aud", json!([])))),
            "the caller token's `aud` claim has the wrong type or form",
        ),
        (
            "sub a number",
            bearer(hs(with(good.clone(), "sub", json!(42)))),
            "the caller token's `sub` claim has the wrong type or form",
        ),
        (
            "iat a string",
            bearer(hs(with(good.clone(), "iat", json!(now.to_string())))),
            "the caller token's `iat` claim has the wrong type or form",
        ),
        (
            "missing iss",
            bearer(hs(without(good.clone(), "iss"))),
            "the caller token has no `iss` claim",
        ),
        (
            "missing aud",
            bearer(hs(without(good.clone(), "aud"))),
            "the caller token has no `aud` claim",
        ),
        (
            "two parts",
            bearer(hs(good.clone()).rsplit_once('.').unwrap().0.to_owned()),
            "the caller token is malformed: a JWT is three base64url parts separated by dots",
        ),
        (
            "claims not JSON",
            bearer(forged_raw(r#"{"alg":"HS256"}"#, "not json at all")),
            "the caller token's claims are malformed: not a base64url JSON object without repeated keys",
        ),
        (
            "signature not base64url",
            bearer(format!("{}!!!!", hs(good.clone()))),
            "the caller token's signature is malformed: not base64url of the algorithm's form",
        ),
    ];
    for (name, req, want) in cases {
        assert_refused(name, req, want).await;
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

/// JWKS mode: the refusals about the signing key say which check failed.
#[tokio::test]
async fn jwks_refusals_say_which_key_check_failed() {
    let keys = support::jwt::TestKeys::default();
    let emulator = start_emulator(300).await;
    let mut set: Value = serde_json::from_str(&keys.jwks()).unwrap();
    // A key for another algorithm (a key marked for encryption is dropped when the set loads).
    let mut rs384 = keys.rsa_jwk("rsa-384");
    rs384["alg"] = json!("RS384");
    set["keys"].as_array_mut().unwrap().push(rs384);
    emulator.set_published_jwks(Some(set.to_string()));
    let table = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_url = \"{}/ims/keys\"\nalgorithms = [\"RS256\", \"ES256\"]",
        emulator.base_url()
    );
    let h = Harness::start_with(
        emulator,
        Options {
            caller_auth: Some(table),
            ..Options::default()
        },
    )
    .await;
    let c = claims("jwks-refusals");
    let url = format!("{}/api/client-token", h.url);
    let bearer = |t: String| {
        h.http
            .get(&url)
            .header("Authorization", format!("Bearer {t}"))
    };
    assert_eq!(
        bearer(keys.sign("RS256", json!({"kid": "rsa-1"}), &c))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no kid",
            keys.sign("RS256", json!({}), &c),
            "the caller token's header has no `kid` naming its signing key",
        ),
        (
            "kid a number",
            keys.sign("RS256", json!({"kid": 7}), &c),
            "the caller token's `kid` header is not a string",
        ),
        (
            "unknown kid",
            keys.sign("RS256", json!({"kid": "no-such-key"}), &c),
            "the caller token's signing key (`kid`) is unknown",
        ),
        (
            "key published for RS384",
            keys.sign("RS256", json!({"kid": "rsa-384"}), &c),
            "the caller token's signing key (`kid`) may not verify its algorithm (the key's `use`, `key_ops`, `alg` or type)",
        ),
        (
            "RS256 naming the EC key",
            keys.sign("RS256", json!({"kid": "ec-1"}), &c),
            "the caller token's signing key (`kid`) may not verify its algorithm (the key's `use`, `key_ops`, `alg` or type)",
        ),
        (
            "ES256 signed by another key",
            support::jwt::TestKeys::default().sign("ES256", json!({"kid": "ec-1"}), &c),
            "the caller token's signature is invalid",
        ),
    ];
    for (name, token, want) in cases {
        assert_refused(name, bearer(token), want).await;
    }
}

/// How the HS256 key file is read, as docs/configuration.md states it: the file's text with
/// surrounding whitespace (a trailing newline from `echo`) removed, used as the key bytes as-is
/// (not base64-decoded), at least 32 bytes; a file that is not UTF-8 text is refused.
#[tokio::test]
async fn the_hs256_key_file_is_its_text_trimmed_and_used_as_is() {
    use base64::Engine;
    let emulator = start_emulator(300).await;
    let build = |contents: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path(), "client.secret", CLIENT_SECRET);
        let path = dir.path().join("caller.key");
        std::fs::write(&path, contents).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = config_text(emulator.base_url(), &Options::default());
        let config = imsgate_broker::config::Config::parse(&text, dir.path()).unwrap();
        imsgate_broker::Broker::build(
            config,
            std::sync::Arc::new(imsgate_broker::clock::SystemClock),
        )
    };
    let c = claims("key-file-user");
    let b64key = "q5kN0m3H1yR8cJx2VtZb7LwPfA9sGdEoUiKhYl4rXn6MjBvCe0WzTgSaQpO1uI2D";
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64key)
        .unwrap();
    // (file contents, key the partner signs with, accepted?)
    let rows: Vec<(&str, Vec<u8>, Vec<u8>, bool)> = vec![
        ("exact", CALLER_KEY.into(), CALLER_KEY.into(), true),
        (
            "trailing newline (echo)",
            format!("{CALLER_KEY}\n").into(),
            CALLER_KEY.into(),
            true,
        ),
        (
            "CRLF and surrounding spaces",
            format!("  {CALLER_KEY} \r\n").into(),
            CALLER_KEY.into(),
            true,
        ),
        (
            "signed with the newline as part of the key",
            format!("{CALLER_KEY}\n").into(),
            format!("{CALLER_KEY}\n").into(),
            false,
        ),
        (
            "base64 text is the key itself",
            format!("{b64key}\n").into(),
            b64key.into(),
            true,
        ),
        (
            "base64 text is not decoded",
            format!("{b64key}\n").into(),
            decoded.clone(),
            false,
        ),
    ];
    for (name, file, signing_key, accepted) in rows {
        let broker = build(&file).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let verifier = &broker.state.client_token.as_ref().unwrap().verifier;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(&signing_key),
        )
        .unwrap();
        let got = verifier.verify(&token).await;
        assert_eq!(got.is_ok(), accepted, "{name}: {got:?}");
        if !accepted {
            assert_eq!(
                got.unwrap_err(),
                imsgate_broker::caller_auth::AuthFailure::Signature,
                "{name}"
            );
        }
    }
    // Too short after trimming, and raw binary (not text): refused at start, saying why.
    let short = build(format!("{}\n", &CALLER_KEY[..31]).as_bytes()).unwrap_err();
    assert!(
        short.iter().any(|p| p.contains("at least 32 bytes")),
        "{short:?}"
    );
    let binary = build(&[0xff, 0xfe, 0x80, 0x81].repeat(16)).unwrap_err();
    assert!(
        binary
            .iter()
            .any(|p| p.contains("client_token.caller_auth.hs256_secret")
                && p.contains("not UTF-8 text")),
        "{binary:?}"
    );
}
