//! `return_to`, the URL the browser is sent back to after consent or sign-in: `ReturnToPolicy::new`
//! on allow-list entries and `ReturnToPolicy::check` on the URL a partner page passes in. An
//! accepted URL must be http(s), without userinfo, and of an allowed origin.
//!
//! Input: `return URL 0xFF origin 0xFF origin …` (up to 8 origins). The URL is checked against a
//! fixed policy and, when the fuzzed origins are valid, against theirs as well.
#![no_main]

use std::sync::OnceLock;

use imsgate_ims::return_to::ReturnToPolicy;

#[path = "common.rs"]
mod common;

fn fixed() -> &'static ReturnToPolicy {
    static P: OnceLock<ReturnToPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let origins = [
            "https://app.example.com",
            "http://localhost:5173",
            "https://admin.example.com:8443/",
            "https://bücher.example",
            "http://[::1]:8080",
        ]
        .map(str::to_owned);
        ReturnToPolicy::new(&origins).expect("valid policy")
    })
}

fn check(policy: &ReturnToPolicy, url: &str) {
    let Ok(got) = policy.check(url) else {
        return;
    };
    assert!(matches!(got.scheme(), "http" | "https"));
    assert!(got.username().is_empty() && got.password().is_none());
    let origin = got.origin().ascii_serialization();
    assert!(
        policy.origins().any(|o| o == origin),
        "accepted a URL of origin {origin} that is not allowed"
    );
    // What is returned is canonical: parsing it again changes nothing.
    assert_eq!(
        url::Url::parse(got.as_str()).as_ref().map(url::Url::as_str),
        Ok(got.as_str())
    );
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parts = common::parts(data, 9);
    let url = parts.first().map(|s| s.as_ref()).unwrap_or("");
    check(fixed(), url);
    let origins: Vec<String> = parts.iter().skip(1).map(|s| s.to_string()).collect();
    if origins.is_empty() {
        return;
    }
    match ReturnToPolicy::new(&origins) {
        Ok(policy) => {
            for o in policy.origins() {
                assert!(o.starts_with("http://") || o.starts_with("https://"));
            }
            check(&policy, url);
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
