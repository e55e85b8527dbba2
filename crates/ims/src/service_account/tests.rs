//! Assertion claims and keys.

use super::*;

fn pkcs8_pem() -> SecretString {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    SecretString::new(key.serialize_pem())
}

#[test]
fn claims_are_exactly_as_ims_documents() {
    let metascopes = vec![
        "ent_dataservices_sdk".to_owned(),
        "ent_analytics_bulk_ingest_sdk".to_owned(),
    ];
    let c = AssertionClaims {
        org_id: "ORG123@AdobeOrg",
        technical_account_id: "TA456@techacct.adobe.com",
        client_id: "cid",
        ims_base: "https://ims-na1.adobelogin.com/",
        metascopes: &metascopes,
    };
    assert_eq!(
        c.to_json(1_000),
        json!({
            "exp": 1_300,
            "iss": "ORG123@AdobeOrg",
            "sub": "TA456@techacct.adobe.com",
            "aud": "https://ims-na1.adobelogin.com/c/cid",
            "https://ims-na1.adobelogin.com/s/ent_dataservices_sdk": true,
            "https://ims-na1.adobelogin.com/s/ent_analytics_bulk_ingest_sdk": true,
        })
    );
}

#[test]
fn signs_rs256_with_a_pkcs8_key_and_the_signature_verifies() {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let key = AssertionKey::from_pem(&pkcs8_pem()).unwrap();
    let jwt = key.sign(&json!({"sub": "x"}));
    let parts: Vec<&str> = jwt.expose().split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        B64.decode(parts[0]).unwrap(),
        br#"{"alg":"RS256","typ":"JWT"}"#
    );
    let sig = B64.decode(parts[2]).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_der())
        .verify(input.as_bytes(), &sig)
        .unwrap();
    assert!(!format!("{key:?}").contains("BEGIN"));
}

#[test]
fn bad_keys_are_refused_clearly() {
    assert_eq!(
        AssertionKey::from_pem(&SecretString::new("not a key")).unwrap_err(),
        KeyError::NotPem
    );
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert_eq!(
        AssertionKey::from_pem(&SecretString::new(ec.serialize_pem())).unwrap_err(),
        KeyError::NotRsa
    );
}

#[test]
fn the_exchange_form() {
    let secret = SecretString::new("s&c");
    let assertion = SecretString::new("a.b.c");
    let req = JwtExchangeRequest {
        client_id: "cid",
        client_secret: &secret,
        assertion: &assertion,
    }
    .to_http(&Url::parse("https://ims.example/ims/exchange/jwt").unwrap());
    assert_eq!(
        String::from_utf8(req.body).unwrap(),
        "client_id=cid&client_secret=s%26c&jwt_token=a.b.c"
    );
    assert_eq!(req.url.path(), "/ims/exchange/jwt");
}

#[test]
fn a_generated_certificate_matches_its_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["imsgate.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let info = crate::certificate::parse_pem(cert.pem().as_bytes()).unwrap();
    let signing = AssertionKey::from_pem(&SecretString::new(key.serialize_pem())).unwrap();
    assert_eq!(info.public_key, signing.public_key_der());
    assert!(info.not_after > info.not_before);
}
