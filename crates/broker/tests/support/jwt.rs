//! Keys a test holds the private half of, published as JWKs, and tokens signed with any JWS
//! algorithm (or none), for relying-party tests against hostile key sets.
#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};

use super::{CALLER_KEY, b64};

fn b64_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An RSA key, a P-256 key and a P-384 key.
pub struct TestKeys {
    pub rsa: RsaKeyPair,
    pub ec: EcdsaKeyPair,
    pub ec384: EcdsaKeyPair,
}

impl Default for TestKeys {
    fn default() -> Self {
        Self {
            rsa: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            ec: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            ec384: EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
        }
    }
}

/// Every algorithm name a relying party might be offered.
pub const ALL_ALGS: [&str; 11] = [
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384",
    "EdDSA",
];

impl TestKeys {
    /// The RSA public key as a bare JWK (`kty`, `kid`, `n`, `e`; no `use`, `alg` or `key_ops`).
    pub fn rsa_jwk(&self, kid: &str) -> Value {
        let p = self.rsa.public_key();
        json!({
            "kty": "RSA", "kid": kid,
            "n": b64_bytes(p.modulus().big_endian_without_leading_zero()),
            "e": b64_bytes(p.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The P-256 public key as a bare JWK.
    pub fn ec_jwk(&self, kid: &str) -> Value {
        let point = self.ec.public_key().as_ref().to_vec();
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64_bytes(&point[1..33]), "y": b64_bytes(&point[33..65]),
        })
    }

    /// The P-384 public key as a bare JWK.
    pub fn ec384_jwk(&self, kid: &str) -> Value {
        let point = self.ec384.public_key().as_ref().to_vec();
        json!({
            "kty": "EC", "crv": "P-384", "kid": kid,
            "x": b64_bytes(&point[1..49]), "y": b64_bytes(&point[49..97]),
        })
    }

    /// A compact JWS with `alg` set in `header`, signed as that algorithm says: HMACs with
    /// [`CALLER_KEY`], RS*/PS* with the RSA key, ES256 with the P-256 key, ES384 with the P-384
    /// key; `none` and `EdDSA` get an empty and a junk signature.
    pub fn sign(&self, alg: &str, mut header: Value, claims: &Value) -> String {
        header["alg"] = alg.into();
        let input = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
        self.sign_input(alg, &input)
    }

    /// Signs raw header and claims JSON as given.
    pub fn sign_raw(&self, alg: &str, header_json: &str, claims_json: &str) -> String {
        let input = format!("{}.{}", b64(header_json), b64(claims_json));
        self.sign_input(alg, &input)
    }

    fn sign_input(&self, alg: &str, input: &str) -> String {
        let rng = SystemRandom::new();
        let hmac = |a| {
            let k = aws_lc_rs::hmac::Key::new(a, CALLER_KEY.as_bytes());
            aws_lc_rs::hmac::sign(&k, input.as_bytes())
                .as_ref()
                .to_vec()
        };
        let rsa = |a| {
            let mut sig = vec![0u8; self.rsa.public_modulus_len()];
            self.rsa.sign(a, &rng, input.as_bytes(), &mut sig).unwrap();
            sig
        };
        let sig: Vec<u8> = match alg {
            "HS256" => hmac(aws_lc_rs::hmac::HMAC_SHA256),
            "HS384" => hmac(aws_lc_rs::hmac::HMAC_SHA384),
            "HS512" => hmac(aws_lc_rs::hmac::HMAC_SHA512),
            "RS256" => rsa(&RSA_PKCS1_SHA256),
            "RS384" => rsa(&RSA_PKCS1_SHA384),
            "RS512" => rsa(&RSA_PKCS1_SHA512),
            "PS256" => rsa(&RSA_PSS_SHA256),
            "ES256" => self
                .ec
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "ES384" => self
                .ec384
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "EdDSA" => vec![7u8; 64],
            _ => Vec::new(),
        };
        format!("{input}.{}", b64_bytes(&sig))
    }

    /// The `kid` a token of `alg` names in [`Self::jwks`].
    pub fn kid_for(alg: &str) -> &'static str {
        match alg {
            "ES256" => "ec-1",
            "ES384" => "ec-384",
            _ => "rsa-1",
        }
    }

    /// All three keys, bare, under [`Self::kid_for`]'s kids.
    pub fn jwks(&self) -> String {
        json!({"keys": [self.rsa_jwk("rsa-1"), self.ec_jwk("ec-1"), self.ec384_jwk("ec-384")]})
            .to_string()
    }
}
