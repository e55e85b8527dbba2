//! Random identifiers (tickets, sessions, state, nonce), their storage hashes, and the shapes of
//! account and org ids.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use subtle::ConstantTimeEq;

/// 256 bits from the OS CSPRNG, base64url without padding (43 characters, URL-safe).
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing leaves nothing safe to do; aws-lc aborts in that case anyway.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator works");
    B64.encode(bytes)
}

/// Whether `s` has the shape [`random_id`] produces; anything else is refused before a lookup.
pub fn is_random_id(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is stored instead of a ticket or session id.
pub fn hash_id(id: &str) -> [u8; 32] {
    let d = digest(&SHA256, id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Compares two stored digests (of a state, a nonce) in constant time.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The partner's account ids: short, printable, safe in URLs, logs and pages.
pub fn is_account_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:+".contains(&b))
}

/// IMS org ids (`0123ABCD@AdobeOrg`), as accepted from a verified id_token.
pub fn is_org_id(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_distinct_url_safe_and_recognised() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert!(is_random_id(&a));
        assert!(!is_random_id(&a[1..]));
        assert!(!is_random_id(&format!("{}=", &a[1..])));
        assert_ne!(hash_id(&a), hash_id(&b));
    }

    #[test]
    fn id_shapes() {
        for (s, ok) in [
            ("acct-42", true),
            ("user@example.com", true),
            ("", false),
            ("a b", false),
            ("<script>", false),
            ("../x", false),
        ] {
            assert_eq!(is_account_id(s), ok, "{s}");
        }
        assert!(is_account_id(&"a".repeat(128)));
        assert!(!is_account_id(&"a".repeat(129)));
        assert!(is_org_id("C0FFEE@AdobeOrg"));
        assert!(!is_org_id("C0FFEE@AdobeOrg/../x"));
    }
}
