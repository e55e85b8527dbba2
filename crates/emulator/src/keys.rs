//! The emulator's RS256 signing keys, JWKS publication and compact JWS signing.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// One signing key with the `kid` it is published under.
pub struct SigningKey {
    pub kid: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// Generates a fresh 2048-bit key, as IMS uses.
    pub fn generate(kid: impl Into<String>) -> Self {
        // Key generation fails only if the system RNG is broken, which we cannot recover from.
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        Self {
            kid: kid.into(),
            key,
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let public = self.key.public_key();
        serde_json::json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public key in the DER form signature verification takes.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Signs `header.claims` as a compact JWS. The header gets `alg` and `kid` added.
    pub fn sign(&self, mut header: serde_json::Value, claims: &serde_json::Value) -> String {
        header["alg"] = "RS256".into();
        header["kid"] = self.kid.clone().into();
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        sign_input(&self.key, signing_input)
    }

    /// Signs raw, already-encoded header and claims segments; tests use it to build malformed tokens.
    pub fn sign_segments(&self, header_json: &str, claims_json: &str) -> String {
        let signing_input = format!("{}.{}", B64.encode(header_json), B64.encode(claims_json));
        sign_input(&self.key, signing_input)
    }
}

fn sign_input(key: &RsaKeyPair, signing_input: String) -> String {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing with a valid key");
    format!("{signing_input}.{}", B64.encode(sig))
}
