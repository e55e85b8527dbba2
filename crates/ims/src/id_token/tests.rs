//! Table-driven id_token checks: one valid token, then one mutation per row.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_800_000_000;
const CLIENT: &str = "partner-client";
const NONCE: &str = "n-0S6_WzA2Mj";
const ISS: &str = "https://ims-na1.adobelogin.com";
const ORG: &str = "C0FFEE0000000000000000@AdobeOrg";
const TA: &str = "B0B0000000000000@techacct.adobe.com";

fn keys() -> &'static (RsaKeyPair, RsaKeyPair) {
    static KEYS: OnceLock<(RsaKeyPair, RsaKeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
        )
    })
}

fn public(key: &RsaKeyPair) -> RsaPublicKey {
    let p = key.public_key();
    RsaPublicKey::from_jwk_components(
        &B64.encode(p.modulus().big_endian_without_leading_zero()),
        &B64.encode(p.exponent().big_endian_without_leading_zero()),
    )
    .unwrap()
}

fn rs256(key: &RsaKeyPair, input: &str) -> String {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    B64.encode(sig)
}

fn hs256(secret: &[u8], input: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    B64.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes()))
}

fn header() -> Value {
    json!({"alg": "RS256", "kid": "ims_na1-key-1", "typ": "JWT"})
}

fn claims() -> Value {
    json!({
        "iss": ISS, "sub": TA, "aud": CLIENT, "iat": NOW - 5, "exp": NOW + 3600,
        "nonce": NONCE, "org_id": ORG, "type": "id_token",
    })
}

/// How a row's token is signed.
enum Sig {
    Good,
    OtherKey,
    /// HS256 keyed with the verifier's RSA public key (the classic algorithm confusion).
    HmacWithPublicKey,
    Empty,
}

fn build(header_json: &str, claims_json: &str, sig: Sig) -> String {
    let input = format!("{}.{}", B64.encode(header_json), B64.encode(claims_json));
    let (good, other) = keys();
    let s = match sig {
        Sig::Good => rs256(good, &input),
        Sig::OtherKey => rs256(other, &input),
        Sig::HmacWithPublicKey => hs256(good.public_key().as_ref(), &input),
        Sig::Empty => String::new(),
    };
    format!("{input}.{s}")
}

fn with(mut v: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    f(v.as_object_mut().unwrap());
    v.to_string()
}

fn verify(token: &str) -> Result<ConsentIdentity, IdTokenError> {
    let issuers = vec![ISS.to_owned(), format!("{ISS}/ims")];
    let expect = Expectations {
        issuers: &issuers,
        client_id: CLIENT,
        nonce_sha256: nonce_digest(NONCE),
        leeway_secs: 60,
        max_age_secs: 300,
    };
    let t = parse(token)?;
    assert_eq!(t.kid(), "ims_na1-key-1");
    t.verify(&public(&keys().0), &expect, NOW)
}

#[test]
fn a_valid_token_yields_the_org_and_technical_account() {
    let token = build(&header().to_string(), &claims().to_string(), Sig::Good);
    let id = verify(&token).unwrap();
    assert_eq!(id.org_id, ORG);
    assert_eq!(id.technical_account, TA);
    assert_eq!(id.expires_at, NOW + 3600);
    assert_eq!(id.issued_at, NOW - 5);
}

#[test]
fn table() {
    use IdTokenError::*;
    let h = || header();
    let c = || claims();
    let hs = h().to_string();
    let cs = c().to_string();
    let ok = |_: ConsentIdentity| ();
    let rows: Vec<(&str, String, Result<(), IdTokenError>)> = vec![
        // Accepted variants.
        (
            "orgId instead of org_id",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("org_id");
                    m.insert("orgId".into(), ORG.into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "org_id and orgId equal",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("orgId".into(), ORG.into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "docs issuer form",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("iss".into(), format!("{ISS}/ims").into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "aud array with azp",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), json!([CLIENT, "other"]));
                    m.insert("azp".into(), CLIENT.into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "aud array of one",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), json!([CLIENT]));
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "no typ",
            build(
                &with(h(), |m| {
                    m.remove("typ");
                }),
                &cs,
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "x5u bare certificate name, as IMS sends",
            build(
                &with(h(), |m| {
                    m.insert("x5u".into(), "ims_na1-key-1.cer".into());
                }),
                &cs,
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "expired within leeway",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("exp".into(), (NOW - 30).into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "iat ahead within leeway",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("iat".into(), (NOW + 30).into());
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        (
            "fractional exp",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("exp".into(), json!((NOW + 10) as f64 + 0.5));
                }),
                Sig::Good,
            ),
            Ok(()),
        ),
        // Algorithms.
        (
            "alg none",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "none".into());
                }),
                &cs,
                Sig::Empty,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg None",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "None".into());
                }),
                &cs,
                Sig::Empty,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg NONE",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "NONE".into());
                }),
                &cs,
                Sig::Empty,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg nOnE signed",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "nOnE".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg rs256 lower case",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "rs256".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "HS256 keyed with the RSA public key",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "HS256".into());
                }),
                &cs,
                Sig::HmacWithPublicKey,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "RS512",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "RS512".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "PS256",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), "PS256".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg missing",
            build(
                &with(h(), |m| {
                    m.remove("alg");
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        (
            "alg not a string",
            build(
                &with(h(), |m| {
                    m.insert("alg".into(), json!(["RS256"]));
                }),
                &cs,
                Sig::Good,
            ),
            Err(AlgorithmNotAllowed),
        ),
        // Signatures.
        (
            "signed by another key",
            build(&hs, &cs, Sig::OtherKey),
            Err(BadSignature),
        ),
        (
            "unsigned RS256",
            build(&hs, &cs, Sig::Empty),
            Err(BadSignature),
        ),
        (
            "claims swapped after signing",
            {
                let good = build(&hs, &cs, Sig::Good);
                let forged = B64.encode(with(c(), |m| {
                    m.insert("org_id".into(), "EVIL@AdobeOrg".into());
                }));
                let parts: Vec<&str> = good.split('.').collect();
                format!("{}.{}.{}", parts[0], forged, parts[2])
            },
            Err(BadSignature),
        ),
        // Keys in the header.
        (
            "jwk in header",
            build(
                &with(h(), |m| {
                    m.insert("jwk".into(), json!({"kty":"RSA","n":"AQAB","e":"AQAB"}));
                }),
                &cs,
                Sig::OtherKey,
            ),
            Err(KeyInHeader),
        ),
        (
            "jku in header",
            build(
                &with(h(), |m| {
                    m.insert("jku".into(), "https://evil.example/keys".into());
                }),
                &cs,
                Sig::OtherKey,
            ),
            Err(KeyInHeader),
        ),
        (
            "x5c in header",
            build(
                &with(h(), |m| {
                    m.insert("x5c".into(), json!(["MIIB"]));
                }),
                &cs,
                Sig::OtherKey,
            ),
            Err(KeyInHeader),
        ),
        (
            "x5u absolute URL",
            build(
                &with(h(), |m| {
                    m.insert("x5u".into(), "https://evil.example/k.cer".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(KeyInHeader),
        ),
        (
            "x5u path",
            build(
                &with(h(), |m| {
                    m.insert("x5u".into(), "//evil.example/k.cer".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(KeyInHeader),
        ),
        // Header extensions and structure.
        (
            "crit",
            build(
                &with(h(), |m| {
                    m.insert("crit".into(), json!(["exp"]));
                }),
                &cs,
                Sig::Good,
            ),
            Err(UnsupportedCritical),
        ),
        (
            "empty crit",
            build(
                &with(h(), |m| {
                    m.insert("crit".into(), json!([]));
                }),
                &cs,
                Sig::Good,
            ),
            Err(UnsupportedCritical),
        ),
        (
            "b64 false",
            build(
                &with(h(), |m| {
                    m.insert("b64".into(), false.into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(UnsupportedCritical),
        ),
        (
            "typ of an access token",
            build(
                &with(h(), |m| {
                    m.insert("typ".into(), "at+jwt".into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(BadClaim("typ")),
        ),
        (
            "kid missing",
            build(
                &with(h(), |m| {
                    m.remove("kid");
                }),
                &cs,
                Sig::Good,
            ),
            Err(MissingKid),
        ),
        (
            "kid not a string",
            build(
                &with(h(), |m| {
                    m.insert("kid".into(), 7.into());
                }),
                &cs,
                Sig::Good,
            ),
            Err(BadClaim("kid")),
        ),
        (
            "duplicate alg in header",
            build(
                r#"{"alg":"RS256","kid":"ims_na1-key-1","alg":"none"}"#,
                &cs,
                Sig::Good,
            ),
            Err(DuplicateKey),
        ),
        (
            "duplicate nonce in claims",
            build(
                &hs,
                &format!(
                    r#"{{"iss":"{ISS}","sub":"{TA}","aud":"{CLIENT}","iat":{},"exp":{},"nonce":"{NONCE}","nonce":"other","org_id":"{ORG}"}}"#,
                    NOW,
                    NOW + 60
                ),
                Sig::Good,
            ),
            Err(DuplicateKey),
        ),
        (
            "duplicate org_id in claims",
            build(
                &hs,
                &format!(
                    r#"{{"iss":"{ISS}","sub":"{TA}","aud":"{CLIENT}","iat":{},"exp":{},"nonce":"{NONCE}","org_id":"EVIL@AdobeOrg","org_id":"{ORG}"}}"#,
                    NOW,
                    NOW + 60
                ),
                Sig::Good,
            ),
            Err(DuplicateKey),
        ),
        (
            "claims not an object",
            build(&hs, "[1,2]", Sig::Good),
            Err(Malformed),
        ),
        (
            "claims not JSON",
            build(&hs, "{nope", Sig::Good),
            Err(Malformed),
        ),
        ("two segments", "a.b".to_owned(), Err(Malformed)),
        (
            "four segments",
            format!("{}.x", build(&hs, &cs, Sig::Good)),
            Err(Malformed),
        ),
        (
            "padded base64",
            {
                let t = build(&hs, &cs, Sig::Good);
                let (head, rest) = t.split_once('.').unwrap();
                format!("{head}==.{rest}")
            },
            Err(Malformed),
        ),
        (
            "oversize",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("pad".into(), "x".repeat(MAX_ID_TOKEN_LEN).into());
                }),
                Sig::Good,
            ),
            Err(TooLarge),
        ),
        // Issuer and audience.
        (
            "wrong issuer",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("iss".into(), "https://evil.example".into());
                }),
                Sig::Good,
            ),
            Err(WrongIssuer),
        ),
        (
            "issuer with trailing slash",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("iss".into(), format!("{ISS}/").into());
                }),
                Sig::Good,
            ),
            Err(WrongIssuer),
        ),
        (
            "issuer missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("iss");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("iss")),
        ),
        (
            "wrong audience",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), "someone-else".into());
                }),
                Sig::Good,
            ),
            Err(WrongAudience),
        ),
        (
            "audience missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("aud");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("aud")),
        ),
        (
            "audience array without us",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), json!(["a", "b"]));
                }),
                Sig::Good,
            ),
            Err(WrongAudience),
        ),
        (
            "extra audience without azp",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), json!([CLIENT, "other"]));
                }),
                Sig::Good,
            ),
            Err(WrongAuthorizedParty),
        ),
        (
            "azp of another client",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("azp".into(), "other".into());
                }),
                Sig::Good,
            ),
            Err(WrongAuthorizedParty),
        ),
        (
            "audience a number",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("aud".into(), 1.into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("aud")),
        ),
        // Time.
        (
            "expired",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("exp".into(), (NOW - 61).into());
                }),
                Sig::Good,
            ),
            Err(Expired),
        ),
        (
            "exp missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("exp");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("exp")),
        ),
        (
            "exp a string",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("exp".into(), "tomorrow".into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("exp")),
        ),
        (
            "exp negative",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("exp".into(), (-1).into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("exp")),
        ),
        (
            "iat in the future",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("iat".into(), (NOW + 61).into());
                }),
                Sig::Good,
            ),
            Err(IssuedInFuture),
        ),
        (
            "iat missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("iat");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("iat")),
        ),
        (
            "nbf in the future",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("nbf".into(), (NOW + 600).into());
                }),
                Sig::Good,
            ),
            Err(NotYetValid),
        ),
        // Nonce.
        (
            "wrong nonce",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("nonce".into(), "other".into());
                }),
                Sig::Good,
            ),
            Err(NonceMismatch),
        ),
        (
            "nonce prefix",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("nonce".into(), NONCE[..4].into());
                }),
                Sig::Good,
            ),
            Err(NonceMismatch),
        ),
        (
            "nonce missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("nonce");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("nonce")),
        ),
        (
            "nonce not a string",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("nonce".into(), json!(null));
                }),
                Sig::Good,
            ),
            Err(BadClaim("nonce")),
        ),
        // Identity claims.
        (
            "sub missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("sub");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("sub")),
        ),
        (
            "sub with markup",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("sub".into(), "<b>x</b>".into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("sub")),
        ),
        (
            "org missing",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("org_id");
                }),
                Sig::Good,
            ),
            Err(MissingClaim("org_id")),
        ),
        (
            "org_id and orgId differ",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("orgId".into(), "EVIL@AdobeOrg".into());
                }),
                Sig::Good,
            ),
            Err(OrgConflict),
        ),
        (
            "orgId a number",
            build(
                &hs,
                &with(c(), |m| {
                    m.remove("org_id");
                    m.insert("orgId".into(), 5.into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("orgId")),
        ),
        (
            "org_id empty",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("org_id".into(), "".into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("org_id")),
        ),
        (
            "org_id with a space",
            build(
                &hs,
                &with(c(), |m| {
                    m.insert("org_id".into(), "A B@AdobeOrg".into());
                }),
                Sig::Good,
            ),
            Err(BadClaim("org_id")),
        ),
    ];
    let mut failures = Vec::new();
    for (name, token, want) in rows {
        let got = verify(&token).map(ok);
        if got != want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn small_keys_and_bad_components_are_refused() {
    assert!(RsaPublicKey::from_jwk_components(&B64.encode([0xC3u8; 128]), "AQAB").is_none());
    assert!(RsaPublicKey::from_jwk_components("not base64!", "AQAB").is_none());
    assert!(RsaPublicKey::from_jwk_components(&B64.encode([0xC3u8; 256]), "").is_none());
    assert!(RsaPublicKey::from_jwk_components(&B64.encode([0xC3u8; 256]), "AQAB").is_some());
}

#[test]
fn codes_are_distinct() {
    use IdTokenError::*;
    let all = [
        TooLarge,
        Malformed,
        DuplicateKey,
        AlgorithmNotAllowed,
        KeyInHeader,
        UnsupportedCritical,
        MissingKid,
        UnknownKid,
        KeyNotUsable,
        BadSignature,
        WrongIssuer,
        WrongAudience,
        WrongAuthorizedParty,
        Expired,
        IssuedInFuture,
        TooOld,
        NotYetValid,
        MissingClaim("x"),
        BadClaim("x"),
        NonceMismatch,
        OrgConflict,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), all.len());
}

/// A sign-in id_token carries the user, not an org; the common checks still apply to it.
#[test]
fn a_sign_in_token_yields_the_user_and_gets_the_same_checks() {
    const USER: &str = "USERA00000000000000000@AdobeID";
    let issuers = vec![ISS.to_owned()];
    let expect = Expectations {
        issuers: &issuers,
        client_id: CLIENT,
        nonce_sha256: nonce_digest(NONCE),
        leeway_secs: 60,
        max_age_secs: 300,
    };
    let verify_user = |claims_json: String, sig: Sig| {
        let token = build(&header().to_string(), &claims_json, sig);
        parse(&token)?.verify_user(&public(&keys().0), &expect, NOW)
    };
    let user_claims = || {
        with(claims(), |c| {
            c.remove("org_id");
            c.insert("sub".into(), USER.into());
            c.insert("email".into(), "ada@example.com".into());
        })
    };
    let id = verify_user(user_claims(), Sig::Good).unwrap();
    assert_eq!(id.user_id, USER);
    assert_eq!(id.expires_at, NOW + 3600);
    let base: Value = serde_json::from_str(&user_claims()).unwrap();
    let cases: Vec<(String, Sig, IdTokenError)> = vec![
        (user_claims(), Sig::OtherKey, IdTokenError::BadSignature),
        (
            with(base.clone(), |c| {
                c.insert("nonce".into(), "other".into());
            }),
            Sig::Good,
            IdTokenError::NonceMismatch,
        ),
        (
            with(base.clone(), |c| {
                c.insert("aud".into(), "someone-else".into());
            }),
            Sig::Good,
            IdTokenError::WrongAudience,
        ),
        (
            with(base.clone(), |c| {
                c.insert("exp".into(), (NOW - 120).into());
            }),
            Sig::Good,
            IdTokenError::Expired,
        ),
        (
            with(base.clone(), |c| {
                c.insert("sub".into(), "<script>".into());
            }),
            Sig::Good,
            IdTokenError::BadClaim("sub"),
        ),
        (
            format!(
                "{},\"sub\":\"{USER}\"}}",
                &user_claims()[..user_claims().len() - 1]
            ),
            Sig::Good,
            IdTokenError::DuplicateKey,
        ),
    ];
    for (claims_json, sig, want) in cases {
        assert_eq!(
            verify_user(claims_json.clone(), sig),
            Err(want),
            "{claims_json}"
        );
    }
}

/// Freshness: an id_token is minted on the redirect that carries it, so one issued longer ago than
/// the flow's maximum age (plus the leeway) is refused even while `exp` is far away, in both flows.
#[test]
fn freshness_table() {
    use IdTokenError::*;
    /// (name, iat, exp, max_age, leeway, want)
    type Row = (&'static str, u64, u64, u64, u64, Result<(), IdTokenError>);
    let rows: &[Row] = &[
        ("just issued", NOW, NOW + 3600, 300, 60, Ok(())),
        ("at the maximum age", NOW - 300, NOW + 3600, 300, 60, Ok(())),
        (
            "within the leeway past it",
            NOW - 360,
            NOW + 3600,
            300,
            60,
            Ok(()),
        ),
        (
            "one second too old",
            NOW - 361,
            NOW + 3600,
            300,
            60,
            Err(TooOld),
        ),
        (
            "a day old, exp still ahead",
            NOW - 86_400,
            NOW + 3600,
            300,
            60,
            Err(TooOld),
        ),
        ("issued at the epoch", 0, NOW + 3600, 300, 60, Err(TooOld)),
        (
            "no leeway, one second over",
            NOW - 31,
            NOW + 3600,
            30,
            0,
            Err(TooOld),
        ),
        (
            "no leeway, exactly at the age",
            NOW - 30,
            NOW + 3600,
            30,
            0,
            Ok(()),
        ),
        (
            "a longer configured age",
            NOW - 3000,
            NOW + 3600,
            3600,
            60,
            Ok(()),
        ),
        (
            "expiry is still checked first",
            NOW - 86_400,
            NOW - 600,
            300,
            60,
            Err(Expired),
        ),
    ];
    let issuers = vec![ISS.to_owned()];
    let mut failures = Vec::new();
    for &(name, iat, exp, max_age, leeway, ref want) in rows {
        let expect = Expectations {
            issuers: &issuers,
            client_id: CLIENT,
            nonce_sha256: nonce_digest(NONCE),
            leeway_secs: leeway,
            max_age_secs: max_age,
        };
        let consent = with(claims(), |m| {
            m.insert("iat".into(), iat.into());
            m.insert("exp".into(), exp.into());
        });
        let user = with(serde_json::from_str(&consent).unwrap(), |m| {
            m.remove("org_id");
        });
        let key = public(&keys().0);
        let got_consent = parse(&build(&header().to_string(), &consent, Sig::Good))
            .and_then(|t| t.verify(&key, &expect, NOW))
            .map(|_| ());
        let got_user = parse(&build(&header().to_string(), &user, Sig::Good))
            .and_then(|t| t.verify_user(&key, &expect, NOW))
            .map(|_| ());
        if got_consent != *want {
            failures.push(format!(
                "consent, {name}: want {want:?}, got {got_consent:?}"
            ));
        }
        if got_user != *want {
            failures.push(format!("sign-in, {name}: want {want:?}, got {got_user:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Claim shapes come before values: an `iss` array holding the right issuer, an `aud` array that
/// adds an audience without `azp`, `sub` as a number, dates as strings are all refused.
#[test]
fn claim_shapes_table() {
    use IdTokenError::*;
    let rows: Vec<(&str, Value, Result<(), IdTokenError>)> = vec![
        (
            "iss array of the issuer",
            json!([ISS]),
            Err(BadClaim("iss")),
        ),
        (
            "iss array with another",
            json!([ISS, "https://evil.example"]),
            Err(BadClaim("iss")),
        ),
        ("iss number", json!(1), Err(BadClaim("iss"))),
    ];
    for (name, iss, want) in rows {
        let c = with(claims(), |m| {
            m.insert("iss".into(), iss);
        });
        let got = verify(&build(&header().to_string(), &c, Sig::Good)).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
    let rows: Vec<(&str, &str, Value, Result<(), IdTokenError>)> = vec![
        ("sub a number", "sub", json!(5), Err(BadClaim("sub"))),
        ("sub an array", "sub", json!([TA]), Err(BadClaim("sub"))),
        (
            "iat a string",
            "iat",
            json!(NOW.to_string()),
            Err(BadClaim("iat")),
        ),
        ("nbf a bool", "nbf", json!(true), Err(BadClaim("nbf"))),
        ("aud empty array", "aud", json!([]), Err(BadClaim("aud"))),
        (
            "aud with a number",
            "aud",
            json!([CLIENT, 1]),
            Err(BadClaim("aud")),
        ),
    ];
    for (name, claim, v, want) in rows {
        let c = with(claims(), |m| {
            m.insert(claim.into(), v);
        });
        let got = verify(&build(&header().to_string(), &c, Sig::Good)).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}
