//! Values sealed for storage: AES-256-GCM under the newest of a list of keys, tagged with the key
//! id so older keys keep opening what they sealed, and bound to where the value belongs (the
//! associated data), so a sealed value copied to another row or column does not open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use imsgate_ims::SecretString;

use crate::keystore::{KeystoreError, MasterKey, MasterKeyRef};

const VERSION: &str = "v1";

/// Why a sealed value could not be opened. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "stored value was sealed with key {0}, which is not in token_encryption_keys; add it back (after the newest) to read it"
    )]
    UnknownKey(String),
    #[error(
        "stored value does not open with key {0}: the key file changed, or the database was tampered with"
    )]
    Corrupt(String),
    #[error("stored value is not in the sealed format")]
    Malformed,
    #[error("encryption failed")]
    Seal,
}

/// The keys, newest first.
#[derive(Debug)]
pub struct Sealer {
    keys: Vec<MasterKey>,
}

fn aad(context: &str, kid: &str) -> Vec<u8> {
    format!("imsgate-sealed-{VERSION}\0{context}\0{kid}").into_bytes()
}

impl Sealer {
    pub fn new(keys: Vec<MasterKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Loads every key, naming the ones that fail.
    pub fn load(refs: &[MasterKeyRef]) -> Result<Self, Vec<KeystoreError>> {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for r in refs {
            match MasterKey::load(r) {
                Ok(k) => keys.push(k),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Self::new(keys).ok_or_else(Vec::new)
    }

    /// The id of the key new values are sealed with.
    pub fn current_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The id of the key a sealed value was sealed with, read without opening it.
    pub fn kid_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.split('.');
        (parts.next() == Some(VERSION))
            .then(|| parts.next())
            .flatten()
    }

    /// `v1.<kid>.<nonce>.<ciphertext>`, bound to `context`.
    pub fn seal(&self, context: &str, value: &SecretString) -> Result<String, SealError> {
        let key = &self.keys[0];
        let (nonce, ct) = key
            .seal(&aad(context, &key.kid), value.expose().as_bytes())
            .ok_or(SealError::Seal)?;
        Ok(format!(
            "{VERSION}.{}.{}.{}",
            key.kid,
            B64.encode(nonce),
            B64.encode(ct)
        ))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<SecretString, SealError> {
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(kid), Some(nonce), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SealError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| SealError::UnknownKey(kid.to_owned()))?;
        let nonce: [u8; aws_lc_rs::aead::NONCE_LEN] = B64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Malformed)?;
        let ct = B64.decode(ct).map_err(|_| SealError::Malformed)?;
        let mut plain = key
            .open(&aad(context, kid), nonce, ct)
            .ok_or_else(|| SealError::Corrupt(kid.to_owned()))?;
        let text = String::from_utf8(plain.clone()).map_err(|_| SealError::Corrupt(kid.to_owned()));
        zeroize::Zeroize::zeroize(&mut plain);
        text.map(SecretString::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_text(&MasterKey::generate_text(), "test").unwrap()
    }

    #[test]
    fn round_trip_rotation_and_binding() {
        let old = Sealer::new(vec![key()]).unwrap();
        let secret = SecretString::new("refresh-token-value");
        let sealed = old.seal("user:a:refresh", &secret).unwrap();
        assert!(!sealed.contains("refresh-token-value"));
        assert_eq!(
            old.open("user:a:refresh", &sealed).unwrap().expose(),
            "refresh-token-value"
        );
        // Bound to its place: another row or column does not open it.
        assert!(matches!(
            old.open("user:b:refresh", &sealed),
            Err(SealError::Corrupt(_))
        ));
        // A sealer with a new key first still opens values sealed with the old one.
        let old_kid = old.current_kid().to_owned();
        let rotated = Sealer {
            keys: vec![key(), old.keys.into_iter().next().unwrap()],
        };
        assert_ne!(rotated.current_kid(), old_kid);
        assert_eq!(
            rotated.open("user:a:refresh", &sealed).unwrap().expose(),
            "refresh-token-value"
        );
        // Without the old key the error names the missing key id.
        let fresh = Sealer::new(vec![key()]).unwrap();
        assert_eq!(
            fresh.open("user:a:refresh", &sealed),
            Err(SealError::UnknownKey(old_kid))
        );
        // Tampering is detected.
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(rotated.open("user:a:refresh", &bad).is_err());
        assert_eq!(rotated.open("x", "not-sealed"), Err(SealError::Malformed));
        assert_eq!(Sealer::kid_of(&sealed), Some(rotated.keys[1].kid.as_str()));
        assert_eq!(Sealer::kid_of("v2.abc.d.e"), None);
    }
}
