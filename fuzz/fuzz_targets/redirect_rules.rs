//! Redirect rules: `RedirectRules::new` (the default redirect URI checks and compiling each
//! pattern: anchoring, `$` escapes, host literal checks, regex AST walk) and then `allows` /
//! `matches_pattern` on candidate URIs, which are what an attacker puts in a consent or sign-in
//! request. Anything accepted must be the canonical, absolute, userinfo-free URL it claims to be.
//!
//! Input: the first byte's bit 0 is development mode; the rest is
//! `candidate 0xFF default URI 0xFF pattern 0xFF pattern …` (up to 8 patterns).
#![no_main]

use imsgate_ims::redirect_rules::RedirectRules;
use url::Url;

#[path = "common.rs"]
mod common;

/// What every URI the rules accept must satisfy, whatever the patterns say.
fn check_accepted(uri: &str, dev_mode: bool) {
    let url = Url::parse(uri).expect("an accepted redirect URI parses");
    assert_eq!(url.as_str(), uri, "an accepted redirect URI is canonical");
    assert!(url.username().is_empty() && url.password().is_none());
    assert!(url.fragment().is_none());
    match url.scheme() {
        "https" => {}
        "http" => assert!(dev_mode, "http accepted outside development mode"),
        other => panic!("scheme {other} accepted"),
    }
    for segment in url.path().split('/') {
        assert!(segment != "." && segment != "..");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dev_mode = flags & 1 == 1;
    let parts = common::parts(rest, 10);
    let candidate = parts.first().map(|s| s.as_ref()).unwrap_or("");
    let default_uri = parts.get(1).map(|s| s.as_ref()).unwrap_or("");
    let patterns: Vec<String> = parts.iter().skip(2).map(|s| s.to_string()).collect();
    let rules = match RedirectRules::new(default_uri, &patterns, dev_mode) {
        Ok(r) => r,
        Err(violations) => {
            assert!(!violations.is_empty());
            for v in &violations {
                let _ = v.to_string();
            }
            return;
        }
    };
    for uri in [candidate, default_uri] {
        if rules.allows(uri) {
            check_accepted(uri, dev_mode);
        }
        if rules.matches_pattern(uri) {
            check_accepted(uri, dev_mode);
            assert!(rules.allows(uri));
        }
    }
});
