//! Secret newtypes: redacted `Debug`, no `Display`, zeroized on drop, compared in constant time.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string such as a client secret, an access token or an API key.
///
/// The value is only reachable through [`SecretString::expose`], which makes every use easy to
/// find in review. There is deliberately no `Display` and no `Serialize`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call this only at the point where the bytes leave the process.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison, so response timing says nothing about how much of a guess matched.
    pub fn ct_eq_str(&self, other: &str) -> bool {
        // Length is not secret for our uses (tokens and keys have fixed, public formats), but the
        // contents are.
        self.0.len() == other.len() && bool::from(self.0.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq_str(&other.0)
    }
}

impl Eq for SecretString {}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn equality_compares_contents() {
        let a = SecretString::new("abc");
        assert_eq!(a, SecretString::new("abc"));
        assert_ne!(a, SecretString::new("abd"));
        assert_ne!(a, SecretString::new("abcd"));
        assert!(a.ct_eq_str("abc"));
        assert!(!a.ct_eq_str("ab"));
    }
}
