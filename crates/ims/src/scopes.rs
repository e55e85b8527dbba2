//! Scope sets: IMS takes them comma-separated; the cache keys them order-insensitively.

/// A normalised, de-duplicated, sorted set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Builds a set from individual scopes; blanks are dropped and whitespace trimmed.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut v: Vec<String> = scopes
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Parses IMS's comma-separated form (spaces are accepted too, as some samples use them).
    pub fn parse(list: &str) -> Self {
        Self::new(list.split([',', ' ']))
    }

    /// The comma-joined form IMS expects.
    pub fn joined(&self) -> String {
        self.0.join(",")
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.iter().all(|s| other.0.binary_search(s).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_order_duplicates_and_blanks() {
        let a = ScopeSet::parse("openid, AdobeID,,firefly_api,openid");
        assert_eq!(a.joined(), "AdobeID,firefly_api,openid");
        assert_eq!(a, ScopeSet::new(["firefly_api", "openid", "AdobeID"]));
        assert!(ScopeSet::parse("openid").is_subset_of(&a));
        assert!(!ScopeSet::parse("email").is_subset_of(&a));
    }
}
