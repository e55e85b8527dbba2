//! Allow-list for the partner's post-consent return URL: an open redirect is one bad string away.
//!
//! The policy compares origins (scheme, host, port) after parsing, and hands back the parsed,
//! canonical [`Url`], so the URL that was checked is the URL that is used: upper-case hosts,
//! internationalised names (punycode) and an explicit default port are normalised rather than
//! refused. Strings that parsers disagree about are refused before parsing: backslashes
//! (browsers read them as `/`), whitespace and control characters (the url crate drops tabs and
//! newlines silently), userinfo, and anything not written as `scheme://host…`.
//!
//! A return URL is at most [`MAX_RETURN_TO_BYTES`], as written and once canonical: it is stored
//! with every ticket and session, so its size bounds theirs.

use std::fmt;

use url::{Host, Origin, Url};

/// The longest return URL accepted, in bytes. Long enough for any deep link into the partner's
/// app (2 KiB is also the longest URL every browser and proxy handles); far below the request
/// body cap, so a ticket row stays small. Adobe's own redirect URI rules stop at 256 characters
/// for the default URI and 512 for the pattern list; a return URL may carry the app's own
/// query, hence more room here.
pub const MAX_RETURN_TO_BYTES: usize = 2048;

/// Why a return URL was refused. `Display` is a short reason, safe to put in an HTTP
/// `error_description`: it never repeats the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnToError {
    /// Relative, scheme-relative (`//host`), or not written as `scheme://host…`.
    NotAbsolute,
    /// Neither `http` nor `https` (`javascript:`, `data:`, …).
    SchemeNotAllowed,
    Backslash,
    ControlOrWhitespace,
    UserInfo,
    /// Well-formed, but its origin is not on the allow-list.
    OriginNotAllowed,
    /// Longer than [`MAX_RETURN_TO_BYTES`] as written or once canonical.
    TooLong,
}

impl fmt::Display for ReturnToError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "return URL must be an absolute URL such as https://host/path",
            Self::SchemeNotAllowed => "return URL must use http or https",
            Self::Backslash => "return URL must not contain a backslash",
            Self::ControlOrWhitespace => {
                "return URL must not contain whitespace or control characters"
            }
            Self::UserInfo => "return URL must not contain user information",
            Self::OriginNotAllowed => "return URL origin is not allowed",
            Self::TooLong => "return URL must be at most 2048 bytes",
        })
    }
}

impl std::error::Error for ReturnToError {}

/// The origins a return URL may point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnToPolicy {
    origins: Vec<Origin>,
}

impl ReturnToPolicy {
    /// `origins` like `"https://app.example.com"` or `"http://localhost:5173"`: scheme, host and
    /// optional port (a single trailing `/` is tolerated). `http` is accepted only for
    /// `localhost`, `127.0.0.1` and `[::1]`. The error names every bad entry and why.
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let mut allowed = Vec::with_capacity(origins.len());
        let mut errors = Vec::new();
        for (i, entry) in origins.iter().enumerate() {
            match parse_origin(entry) {
                Ok(o) => {
                    if !allowed.contains(&o) {
                        allowed.push(o);
                    }
                }
                Err(why) => errors.push(format!("origin [{i}] {entry:?}: {why}")),
            }
        }
        if errors.is_empty() {
            Ok(Self { origins: allowed })
        } else {
            Err(errors.join("; "))
        }
    }

    /// `Ok(canonical URL)` if `url` is an absolute http(s) URL whose origin exactly equals an
    /// allowed origin. Redirect to the returned `Url`, never to the input string.
    pub fn check(&self, url: &str) -> Result<Url, ReturnToError> {
        // First, so an oversized string costs no parsing.
        if url.len() > MAX_RETURN_TO_BYTES {
            return Err(ReturnToError::TooLong);
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ReturnToError::ControlOrWhitespace);
        }
        if url.contains('\\') {
            return Err(ReturnToError::Backslash);
        }
        let parsed = Url::parse(url).map_err(|_| ReturnToError::NotAbsolute)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ReturnToError::SchemeNotAllowed);
        }
        // The url crate reads "https:evil.com" and "https:/evil.com" as "https://evil.com/";
        // browsers and other parsers do not all agree, so require the unambiguous spelling.
        if !has_authority_slashes(url, parsed.scheme()) {
            return Err(ReturnToError::NotAbsolute);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() || has_at_in_authority(url)
        {
            return Err(ReturnToError::UserInfo);
        }
        // Percent-encoding and punycode can make the canonical form longer than the input.
        if parsed.as_str().len() > MAX_RETURN_TO_BYTES {
            return Err(ReturnToError::TooLong);
        }
        if self.origins.contains(&parsed.origin()) {
            Ok(parsed)
        } else {
            Err(ReturnToError::OriginNotAllowed)
        }
    }

    /// The allowed origins in their canonical ASCII form.
    pub fn origins(&self) -> impl Iterator<Item = String> + '_ {
        self.origins.iter().map(Origin::ascii_serialization)
    }
}

/// `scheme://` at the start, scheme compared case-insensitively (the parser lower-cases it).
fn has_authority_slashes(raw: &str, scheme: &str) -> bool {
    raw.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        && raw[scheme.len()..].starts_with("://")
}

/// An `@` in the authority, even one the parser turned into an empty username (`https://@host`).
fn has_at_in_authority(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or("", |(_, r)| r);
    rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].contains('@')
}

fn parse_origin(entry: &str) -> Result<Origin, &'static str> {
    if entry.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or a control character");
    }
    if entry.contains('\\') {
        return Err("contains a backslash");
    }
    let url = Url::parse(entry)
        .map_err(|_| "must be an origin like \"https://app.example.com\" (scheme://host[:port])")?;
    if !matches!(url.scheme(), "http" | "https") || !has_authority_slashes(entry, url.scheme()) {
        return Err("must be an origin like \"https://app.example.com\" (scheme://host[:port])");
    }
    if !url.username().is_empty() || url.password().is_some() || has_at_in_authority(entry) {
        return Err("must not contain user information");
    }
    let rest = entry.split_once("://").map_or("", |(_, r)| r);
    let after_authority = &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..];
    if !(after_authority.is_empty() || after_authority == "/") {
        return Err("must be only scheme://host[:port], without a path, query or fragment");
    }
    let Some(host) = url.host() else {
        return Err("has no host");
    };
    match host {
        // The parser accepts "*" and other odd characters in domains; an allow-list entry with
        // them is a wildcard attempt, and wildcards are not supported.
        Host::Domain(d)
            if !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            return Err("host must be a plain host name (no wildcards)");
        }
        _ => {}
    }
    let loopback = match host {
        Host::Domain(d) => d == "localhost",
        Host::Ipv4(a) => a == std::net::Ipv4Addr::LOCALHOST,
        Host::Ipv6(a) => a == std::net::Ipv6Addr::LOCALHOST,
    };
    if url.scheme() == "http" && !loopback {
        return Err("http is allowed only for localhost, 127.0.0.1 and [::1]; use https");
    }
    Ok(url.origin())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReturnToError::*;

    fn policy(origins: &[&str]) -> Result<ReturnToPolicy, String> {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        ReturnToPolicy::new(&origins)
    }

    #[test]
    fn check_table() {
        let p = policy(&[
            "https://app.example.com",
            "http://localhost:5173",
            "https://admin.example.com:8443/",
            "https://bücher.example",
        ])
        .unwrap_or_else(|e| panic!("valid policy refused: {e}"));
        let base = "https://app.example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_RETURN_TO_BYTES - base.len()));
        let over_limit = format!("{at_limit}a");
        let sixty_kb = format!("{base}?x={}", "a".repeat(60_000));
        // 1,000 "ü" are 2,000 bytes as written and 6,000 once percent-encoded.
        let grows_when_encoded = format!("{base}{}", "ü".repeat(1000));
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, ReturnToError>)] = &[
            // Same origin, any path, query and fragment; the canonical URL comes back.
            ("https://app.example.com/settings?tab=1#top", Ok("https://app.example.com/settings?tab=1#top")),
            ("https://app.example.com", Ok("https://app.example.com/")),
            ("http://localhost:5173/done", Ok("http://localhost:5173/done")),
            ("https://admin.example.com:8443/x", Ok("https://admin.example.com:8443/x")),
            // The default port written out is the same origin.
            ("https://app.example.com:443/x", Ok("https://app.example.com/x")),
            // Case and IDN are normalised, and the normalised URL is what we return.
            ("HTTPS://APP.Example.COM/Path", Ok("https://app.example.com/Path")),
            ("https://BÜCHER.example/x", Ok("https://xn--bcher-kva.example/x")),
            ("https://xn--bcher-kva.example/x", Ok("https://xn--bcher-kva.example/x")),
            // Path tricks cannot leave the origin, so they are normalised, not refused.
            ("https://app.example.com/a/../b", Ok("https://app.example.com/b")),
            // Other host, port or scheme.
            ("https://evil.example.com/", Err(OriginNotAllowed)),
            ("https://app.example.com.evil.com/", Err(OriginNotAllowed)),
            ("https://app.example.com./", Err(OriginNotAllowed)),
            ("https://app.example.com:444/", Err(OriginNotAllowed)),
            ("https://admin.example.com/", Err(OriginNotAllowed)),
            ("http://app.example.com/", Err(OriginNotAllowed)),
            ("https://localhost:5173/", Err(OriginNotAllowed)),
            ("http://127.0.0.1:5173/", Err(OriginNotAllowed)),
            ("http://localhost:5174/", Err(OriginNotAllowed)),
            // Relative and scheme-relative.
            ("/dashboard", Err(NotAbsolute)),
            ("//evil.com", Err(NotAbsolute)),
            ("//app.example.com/x", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
            // Backslash forms browsers read as "//".
            ("/\\evil.com", Err(Backslash)),
            ("\\\\evil.com", Err(Backslash)),
            ("https://app.example.com\\@evil.com/", Err(Backslash)),
            // The url crate fills in the slashes; we want them written.
            ("https:evil.com", Err(NotAbsolute)),
            ("https:app.example.com/x", Err(NotAbsolute)),
            ("https:/app.example.com/x", Err(NotAbsolute)),
            // Other schemes.
            ("javascript:alert(1)", Err(SchemeNotAllowed)),
            ("javascript://app.example.com/%0Aalert(1)", Err(SchemeNotAllowed)),
            ("data:text/html,<script>alert(1)</script>", Err(SchemeNotAllowed)),
            ("ftp://app.example.com/", Err(SchemeNotAllowed)),
            // Userinfo, including an empty one.
            ("https://app.example.com@evil.com/", Err(UserInfo)),
            ("https://user:pw@app.example.com/", Err(UserInfo)),
            ("https://@app.example.com/", Err(UserInfo)),
            // Whitespace and control characters, which the url crate would drop or trim.
            (" https://app.example.com/", Err(ControlOrWhitespace)),
            ("https://app.example.com/ x", Err(ControlOrWhitespace)),
            ("https://app.exa\tmple.com/", Err(ControlOrWhitespace)),
            ("https://app.example.com/\n", Err(ControlOrWhitespace)),
            ("https://app.example.com/\u{0}", Err(ControlOrWhitespace)),
            ("java\nscript:alert(1)", Err(ControlOrWhitespace)),
            // At most 2048 bytes, as written and once canonical.
            (&at_limit, Ok(&at_limit)),
            (&over_limit, Err(TooLong)),
            (&sixty_kb, Err(TooLong)),
            (&grows_when_encoded, Err(TooLong)),
        ];
        for (input, want) in cases {
            let got = p.check(input);
            assert_eq!(
                got.as_ref().map(Url::as_str).map_err(|e| *e),
                *want,
                "check({input:?})"
            );
        }
    }

    #[test]
    fn allow_list_entries_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("https://app.example.com", Ok("https://app.example.com")),
            // A single trailing "/" is tolerated.
            ("https://app.example.com/", Ok("https://app.example.com")),
            ("https://App.Example.com:8443", Ok("https://app.example.com:8443")),
            ("https://app.example.com:443", Ok("https://app.example.com")),
            ("http://localhost:5173", Ok("http://localhost:5173")),
            ("http://127.0.0.1:8080", Ok("http://127.0.0.1:8080")),
            ("http://[::1]:8080", Ok("http://[::1]:8080")),
            ("https://bücher.example", Ok("https://xn--bcher-kva.example")),
            ("https://app.example.com/path", Err("without a path")),
            ("https://app.example.com//", Err("without a path")),
            ("https://app.example.com/.", Err("without a path")),
            ("https://app.example.com?x=1", Err("without a path")),
            ("https://app.example.com#f", Err("without a path")),
            ("https://user@app.example.com", Err("user information")),
            ("https://@app.example.com", Err("user information")),
            ("app.example.com", Err("must be an origin")),
            ("//app.example.com", Err("must be an origin")),
            ("https:app.example.com", Err("must be an origin")),
            ("ftp://app.example.com", Err("must be an origin")),
            ("http://app.example.com", Err("http is allowed only")),
            ("https://*.example.com", Err("no wildcards")),
            (" https://app.example.com", Err("whitespace")),
            ("https://app.example.com\\", Err("backslash")),
            ("", Err("must be an origin")),
        ];
        for (entry, want) in cases {
            let got = policy(&[entry]);
            match (got, want) {
                (Ok(p), Ok(origin)) => {
                    assert_eq!(
                        p.origins().collect::<Vec<_>>(),
                        [*origin],
                        "entry {entry:?}"
                    );
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.contains(fragment), "entry {entry:?}: {e}");
                    assert!(e.starts_with("origin [0] "), "entry {entry:?}: {e}");
                }
                (got, want) => panic!("entry {entry:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_bad_entry_is_named() {
        let e = policy(&[
            "https://ok.example.com",
            "https://a.example.com/x",
            "ftp://b",
        ])
        .err()
        .unwrap_or_default();
        assert!(e.contains("origin [1] \"https://a.example.com/x\""), "{e}");
        assert!(e.contains("origin [2] \"ftp://b\""), "{e}");
        assert!(!e.contains("ok.example.com"), "{e}");
    }

    #[test]
    fn error_text_does_not_echo_the_url() {
        let p = policy(&["https://app.example.com"]).unwrap_or_else(|e| panic!("{e}"));
        for bad in [
            "https://evil.example/<script>",
            "javascript:alert('x')",
            "//evil.example",
        ] {
            let msg = p
                .check(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !msg.is_empty() && !msg.contains("evil") && !msg.contains("alert"),
                "{msg}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_only_returns_allowed_origins(
            s in r"(https?://(app\.example\.com)?)?[a-zA-Z0-9.\\/:@?#%\[\] ü\t-]{0,40}"
        ) {
            let _ = policy(&[s.as_str()]);
            if let Ok(p) = policy(&["https://app.example.com"])
                && let Ok(u) = p.check(&s)
            {
                proptest::prop_assert_eq!(u.origin().ascii_serialization(), "https://app.example.com");
            }
        }
    }
}
