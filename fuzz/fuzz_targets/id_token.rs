//! id_tokens from the consent and sign-in redirects: `id_token::parse` (size cap, compact JWS
//! split, base64url, strict JSON header, header vetting) and then `verify` / `verify_user` with a
//! fixed RSA key, so the claim checks run too, plus `strict_json::parse_object` on its own.
//!
//! Input: the first byte chooses the mode. Bit 0 set: the rest is a whole token, as an attacker
//! would send it (its signature almost never verifies, so this reaches the header checks).
//! Bit 0 clear: the rest is `header JSON 0xFF claims JSON`; the target signs it with the key the
//! verifier trusts, so the fuzzer reaches every claim check. Bit 1 chooses `verify_user`.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use imsgate_ims::id_token::{self, Expectations, RsaPublicKey};
use imsgate_ims::strict_json;

const NOW: u64 = 1_800_000_000;
const CLIENT: &str = "partner-client";
const NONCE: &str = "n-0S6_WzA2Mj";

struct Fixture {
    key: RsaKeyPair,
    public: RsaPublicKey,
    issuers: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let p = key.public_key();
        let public = RsaPublicKey::from_jwk_components(
            &B64.encode(p.modulus().big_endian_without_leading_zero()),
            &B64.encode(p.exponent().big_endian_without_leading_zero()),
        )
        .expect("a 2048-bit key is accepted");
        Fixture {
            key,
            public,
            issuers: vec![
                "https://ims-na1.adobelogin.com".to_owned(),
                "https://ims-na1.adobelogin.com/ims".to_owned(),
            ],
        }
    })
}

fn sign(key: &RsaKeyPair, input: &str) -> String {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("signing");
    B64.encode(sig)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let token = if mode & 1 == 1 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut it = rest.splitn(2, |b| *b == 0xFF);
        let header = it.next().unwrap_or_default();
        let claims = it.next().unwrap_or_default();
        let _ = strict_json::parse_object(header);
        let _ = strict_json::parse_object(claims);
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = sign(&f.key, &input);
        format!("{input}.{sig}")
    };
    let Ok(t) = id_token::parse(&token) else {
        return;
    };
    assert!(!t.kid().is_empty() && t.kid().len() <= 256);
    let expect = Expectations {
        issuers: &f.issuers,
        client_id: CLIENT,
        nonce_sha256: id_token::nonce_digest(NONCE),
        leeway_secs: 60,
        max_age_secs: 300,
    };
    if mode & 2 == 0 {
        if let Ok(id) = t.verify(&f.public, &expect, NOW) {
            assert!(!id.org_id.is_empty() && !id.technical_account.is_empty());
            assert!(id.expires_at.saturating_add(60) >= NOW);
        }
    } else if let Ok(id) = t.verify_user(&f.public, &expect, NOW) {
        assert!(!id.user_id.is_empty());
        assert!(id.expires_at.saturating_add(60) >= NOW);
    }
});
