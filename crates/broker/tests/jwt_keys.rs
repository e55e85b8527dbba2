//! One key-selection rule and one set of claim shapes for every JWT imsgate verifies: a table of
//! hostile key sets × tokens run end to end against caller auth (`/api/client-token`), the
//! consent callback and the sign-in callback, each row on a fresh emulator serving that key set.

mod support;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use support::consent::{ConsentHarness, ConsentOptions, EWA_CLIENT, ORG_A, location, query_of};
use support::jwt::TestKeys;
use support::user_login::{ADA, UserHarness, UserOptions};
use support::*;

/// How the issuer's key set is built from the key the token is signed with.
#[derive(Clone, Copy)]
enum Set {
    /// The signing key's JWK (bare: `kty`, `kid`, `n`, `e`) with these members added.
    Signing(&'static str),
    /// The signing key, and a P-256 key (kid `ec-1`) with these members added.
    WithEc(&'static str),
    /// A P-256 key with these members under the signing key's kid, instead of the signing key.
    EcUnderSigningKid(&'static str),
    /// The signing key, and another RSA key under the same kid.
    DuplicateKid,
}

/// What the token is.
#[derive(Clone, Copy)]
enum Token {
    /// RS256 with the signing key (the emulator's), valid claims.
    Rs256,
    /// ES256 with the P-256 key, kid `ec-1`.
    Es256,
    /// RS256 with valid claims then this edit (iss and aud of the flow passed in).
    Claims(fn(&mut Map<String, Value>, &str, &str)),
}

struct Row {
    name: &'static str,
    set: Set,
    token: Token,
    /// Caller auth accepts it.
    caller: bool,
    /// The consent and sign-in callbacks' result code (`ok` for accepted).
    id_token: &'static str,
    /// Also run through the real sign-in (the emulator signs those id_tokens itself, so only
    /// RS256 rows with unedited claims can).
    sign_in: bool,
}

const fn key_row(name: &'static str, set: Set, caller: bool, id_token: &'static str) -> Row {
    Row {
        name,
        set,
        token: Token::Rs256,
        caller,
        id_token,
        sign_in: true,
    }
}

fn rows() -> Vec<Row> {
    use Set::*;
    vec![
        key_row(
            "use sig, alg RS256",
            Signing(r#"{"use":"sig","alg":"RS256"}"#),
            true,
            "ok",
        ),
        key_row("bare key", Signing("{}"), true, "ok"),
        key_row(
            "key_ops verify",
            Signing(r#"{"key_ops":["verify"]}"#),
            true,
            "ok",
        ),
        key_row(
            "key_ops sign and verify",
            Signing(r#"{"key_ops":["sign","verify"]}"#),
            true,
            "ok",
        ),
        // Keys for another use never verify.
        key_row(
            "use enc",
            Signing(r#"{"use":"enc"}"#),
            false,
            "id_token_unknown_kid",
        ),
        key_row(
            "key_ops encrypt and wrapKey",
            Signing(r#"{"key_ops":["encrypt","wrapKey"]}"#),
            false,
            "id_token_unknown_kid",
        ),
        key_row(
            "key_ops sign only",
            Signing(r#"{"key_ops":["sign"]}"#),
            false,
            "id_token_unknown_kid",
        ),
        key_row(
            "use sig but key_ops encrypt",
            Signing(r#"{"use":"sig","key_ops":["encrypt"]}"#),
            false,
            "id_token_unknown_kid",
        ),
        // Keys bound to another algorithm verify nothing else.
        key_row(
            "alg RS512 on the key",
            Signing(r#"{"alg":"RS512"}"#),
            false,
            "id_token_key_use",
        ),
        key_row(
            "alg RSA-OAEP on the key",
            Signing(r#"{"alg":"RSA-OAEP"}"#),
            false,
            "id_token_key_use",
        ),
        key_row(
            "alg ES256 on an RSA key",
            Signing(r#"{"alg":"ES256"}"#),
            false,
            "id_token_key_use",
        ),
        // The kid names a key of the wrong type.
        key_row(
            "RS256 token, kid names an EC key",
            EcUnderSigningKid("{}"),
            false,
            "id_token_key_use",
        ),
        // Ambiguous kid: the set is refused (there is no earlier good set here).
        key_row("duplicate kid", DuplicateKid, false, "id_token_unknown_kid"),
        // EC keys: fine for ES256 caller tokens; id_tokens are RS256 only.
        Row {
            name: "ES256 token, bare EC key",
            set: WithEc("{}"),
            token: Token::Es256,
            caller: true,
            id_token: "id_token_alg",
            sign_in: false,
        },
        Row {
            name: "ES256 token, EC key marked alg RS256",
            set: WithEc(r#"{"alg":"RS256"}"#),
            token: Token::Es256,
            caller: false,
            id_token: "id_token_alg",
            sign_in: false,
        },
        Row {
            name: "ES256 token, EC key marked use enc",
            set: WithEc(r#"{"use":"enc"}"#),
            token: Token::Es256,
            caller: false,
            id_token: "id_token_alg",
            sign_in: false,
        },
        // Claim shapes.
        Row {
            name: "iss array of the issuer",
            set: Signing("{}"),
            token: Token::Claims(|c, iss, _| {
                c.insert("iss".into(), json!([iss]));
            }),
            caller: false,
            id_token: "id_token_bad_claim",
            sign_in: false,
        },
        Row {
            name: "iss array with another issuer",
            set: Signing("{}"),
            token: Token::Claims(|c, iss, _| {
                c.insert("iss".into(), json!([iss, "https://evil.example"]));
            }),
            caller: false,
            id_token: "id_token_bad_claim",
            sign_in: false,
        },
        Row {
            name: "aud with an extra audience, no azp",
            set: Signing("{}"),
            token: Token::Claims(|c, _, aud| {
                c.insert("aud".into(), json!([aud, "https://other.example"]));
            }),
            caller: false,
            id_token: "id_token_azp",
            sign_in: false,
        },
        Row {
            name: "aud with an extra audience and azp",
            set: Signing("{}"),
            token: Token::Claims(|c, _, aud| {
                c.insert("aud".into(), json!([aud, "https://other.example"]));
                c.insert("azp".into(), json!(aud));
            }),
            caller: true,
            id_token: "ok",
            sign_in: false,
        },
        Row {
            name: "aud array of one",
            set: Signing("{}"),
            token: Token::Claims(|c, _, aud| {
                c.insert("aud".into(), json!([aud]));
            }),
            caller: true,
            id_token: "ok",
            sign_in: false,
        },
        Row {
            name: "sub a number",
            set: Signing("{}"),
            token: Token::Claims(|c, _, _| {
                c.insert("sub".into(), json!(12345));
            }),
            caller: false,
            id_token: "id_token_bad_claim",
            sign_in: false,
        },
        Row {
            name: "exp a string",
            set: Signing("{}"),
            token: Token::Claims(|c, _, _| {
                let exp = c["exp"].as_u64().unwrap();
                c.insert("exp".into(), json!(exp.to_string()));
            }),
            caller: false,
            id_token: "id_token_bad_claim",
            sign_in: false,
        },
        // Freshness: caller tokens are bounded by max_lifetime_seconds instead.
        Row {
            name: "iat older than the id_token maximum age",
            set: Signing("{}"),
            token: Token::Claims(|c, _, _| {
                let now = now_secs();
                c.insert("iat".into(), json!(now - 1000));
            }),
            caller: true,
            id_token: "id_token_too_old",
            sign_in: false,
        },
    ]
}

/// The emulator's current signing key as a bare JWK.
async fn signing_jwk(base_url: &str) -> Value {
    let set: Value = reqwest::get(format!("{base_url}/ims/keys"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut jwk = set["keys"][0].clone();
    let m = jwk.as_object_mut().unwrap();
    m.remove("use");
    m.remove("alg");
    jwk
}

fn merged(mut base: Value, extra: &str) -> Value {
    let extra: Map<String, Value> = serde_json::from_str(extra).unwrap();
    base.as_object_mut().unwrap().extend(extra);
    base
}

/// The key set a row's issuer publishes.
fn key_set(set: Set, signing: &Value, keys: &TestKeys) -> String {
    let kid = signing["kid"].as_str().unwrap();
    let listed = match set {
        Set::Signing(extra) => vec![merged(signing.clone(), extra)],
        Set::WithEc(extra) => vec![signing.clone(), merged(keys.ec_jwk("ec-1"), extra)],
        Set::EcUnderSigningKid(extra) => vec![merged(keys.ec_jwk(kid), extra)],
        Set::DuplicateKid => vec![signing.clone(), keys.rsa_jwk(kid)],
    };
    json!({ "keys": listed }).to_string()
}

/// The token of a row, with `claims` as the flow's valid claims.
fn token(
    row: &Row,
    emulator: &imsgate_emulator::RunningEmulator,
    keys: &TestKeys,
    mut claims: Value,
    iss: &str,
    aud: &str,
) -> String {
    match row.token {
        Token::Rs256 => emulator.sign(json!({"typ": "JWT"}), &claims),
        Token::Es256 => keys.sign("ES256", json!({"typ": "JWT", "kid": "ec-1"}), &claims),
        Token::Claims(edit) => {
            edit(claims.as_object_mut().unwrap(), iss, aud);
            emulator.sign(json!({"typ": "JWT"}), &claims)
        }
    }
}

#[tokio::test]
async fn caller_auth_table() {
    let keys = TestKeys::default();
    let rows = rows();
    let keys = &keys;
    let results = join_all(rows.iter().map(|row| async move {
        let emulator = start_emulator(300).await;
        let signing = signing_jwk(emulator.base_url()).await;
        emulator.set_published_jwks(Some(key_set(row.set, &signing, keys)));
        let jwks_url = format!("{}/ims/keys", emulator.base_url());
        // Only the token's own algorithm is allowed, so each row shows the key rule alone.
        let algorithms = match row.token {
            Token::Es256 => r#"["ES256"]"#,
            _ => r#"["RS256"]"#,
        };
        let h = Harness::start_with(
            emulator,
            Options {
                caller_jwks_url: Some((jwks_url, algorithms)),
                ..Options::default()
            },
        )
        .await;
        let t = token(
            row,
            &h.emulator,
            keys,
            claims("table-user"),
            ISSUER,
            AUDIENCE,
        );
        let got = h.client_token(&t).await.status();
        let want = if row.caller {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        (got != want).then(|| format!("{}: want {want}, got {got}", row.name))
    }))
    .await;
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn consent_callback_table() {
    let keys = TestKeys::default();
    let rows = rows();
    let results = join_all(rows.iter().enumerate().map(|(i, row)| {
        let keys = &keys;
        async move {
            let h = ConsentHarness::start(ConsentOptions::default()).await;
            let signing = signing_jwk(h.emulator.base_url()).await;
            h.emulator
                .set_published_jwks(Some(key_set(row.set, &signing, keys)));
            let account = format!("acct-{i}");
            let (mut browser, q) = h.open_session(&account).await;
            let now = now_secs();
            let iss = h.emulator.id_token_issuer();
            let claims = json!({
                "iss": iss, "sub": "TECHACCT0000@techacct.adobe.com", "aud": EWA_CLIENT,
                "iat": now, "exp": now + 600, "nonce": q["nonce"], "org_id": ORG_A,
            });
            let t = token(row, &h.emulator, keys, claims, &iss, EWA_CLIENT);
            let query = format!(
                "admin_consent=true&state={}&id_token={}",
                q["state"],
                url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
            );
            let r = browser
                .get(&format!("{}/consent/callback?{query}", h.url))
                .await;
            if r.status() != StatusCode::SEE_OTHER {
                return Some(format!("{}: HTTP {}", row.name, r.status()));
            }
            let back = query_of(&location(&r));
            let got = match back["result"].as_str() {
                "linked" => "ok".to_owned(),
                _ => back["code"].clone(),
            };
            let linked = h.connection(&account).await["status"] == "linked";
            if got != row.id_token || linked != (row.id_token == "ok") {
                return Some(format!(
                    "{}: want {}, got {got} (linked: {linked})",
                    row.name, row.id_token
                ));
            }
            None
        }
    }))
    .await;
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn sign_in_callback_table() {
    let keys = TestKeys::default();
    let rows: Vec<Row> = rows().into_iter().filter(|r| r.sign_in).collect();
    assert!(rows.len() >= 10);
    let results = join_all(rows.iter().enumerate().map(|(i, row)| {
        let keys = &keys;
        async move {
            let h = UserHarness::start(UserOptions::default()).await;
            let signing = signing_jwk(h.emulator.base_url()).await;
            h.emulator
                .set_published_jwks(Some(key_set(row.set, &signing, keys)));
            let back = h.sign_in(&format!("user-{i}"), ADA).await;
            let q = query_of(&back);
            let got = match q["result"].as_str() {
                "signed_in" => "ok".to_owned(),
                _ => q["code"].clone(),
            };
            (got != row.id_token).then(|| format!("{}: want {}, got {got}", row.name, row.id_token))
        }
    }))
    .await;
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A sign-in id_token older than `id_token_max_age_seconds` (plus leeway) is refused at the
/// callback: the broker's clock is moved past the token's `iat` while the session is still live.
#[tokio::test]
async fn a_stale_sign_in_id_token_is_refused() {
    let h = UserHarness::start(UserOptions::default()).await;
    let (mut browser, authorize) = h.open("stale-user").await;
    let callback = h.choose(&mut browser, &authorize, ADA).await;
    // Default maximum age 300 s plus 60 s leeway; the session lives 900 s.
    h.clock.advance(std::time::Duration::from_secs(400));
    let back = h.finish(&mut browser, &callback).await;
    let q = query_of(&back);
    assert_eq!(
        (q["result"].as_str(), q["code"].as_str()),
        ("error", "id_token_too_old")
    );
}

/// A key set listing one kid twice is refused whole, counted in a metric, and the keys loaded
/// before stay in use.
#[tokio::test]
async fn a_set_with_a_duplicate_kid_is_refused_and_the_last_good_set_kept() {
    let h = Harness::start(Options {
        caller_jwks: true,
        ..Options::default()
    })
    .await;
    let keys = TestKeys::default();
    let c = claims("dup-user");
    let good = h.emulator.sign(json!({}), &c);
    assert_eq!(h.client_token(&good).await.status(), 200);
    let signing = signing_jwk(h.emulator.base_url()).await;
    h.emulator
        .set_published_jwks(Some(key_set(Set::DuplicateKid, &signing, &keys)));
    // An unknown kid makes the broker refetch, and it gets the ambiguous set.
    let before = h.emulator.count(imsgate_emulator::Endpoint::Keys);
    let unknown = keys.sign("RS256", json!({"kid": "not-yet-known"}), &c);
    assert_eq!(h.client_token(&unknown).await.status(), 401);
    assert_eq!(
        h.emulator.count(imsgate_emulator::Endpoint::Keys),
        before + 1
    );
    // The key the duplicate would have replaced: the old, good one still verifies, and the
    // attacker's twin under the same kid does not.
    let twin = keys.sign("RS256", json!({"kid": signing["kid"]}), &c);
    assert_eq!(h.client_token(&twin).await.status(), 401);
    let good_again = h
        .emulator
        .sign(json!({"typ": "JWT"}), &claims("dup-user-2"));
    assert_eq!(h.client_token(&good_again).await.status(), 200);
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
        metrics.contains(r#"imsgate_jwks_load_failures_total{reason="duplicate_kid"} 1"#),
        "{metrics}"
    );
}
