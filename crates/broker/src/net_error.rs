//! Network failures in words an operator can act on: which URL, and whether DNS, the TCP
//! connection, TLS or a timeout failed. Used for IMS requests, JWKS fetches and `doctor`.
//!
//! Invariant: the URL shown has no query, fragment or userinfo, so nothing that may carry a
//! secret is ever printed.

use std::error::Error as _;
use std::time::Duration;

use url::Url;

/// What failed, for tests and metrics; [`describe`] turns it into a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Dns,
    Refused,
    Tls,
    Timeout,
    Dropped,
    Other,
}

/// The URL as it may be shown: scheme, host, port and path only.
pub fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Every message in the error's source chain, outermost first.
fn chain(e: &reqwest::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        out.push(err.to_string());
        cur = err.source();
    }
    out
}

fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An io::Error may wrap the real cause (rustls puts its error inside one); keep
            // looking when it does.
            if io.get_ref().is_none() {
                return Some(io.kind());
            }
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut
            ) {
                return Some(io.kind());
            }
        }
        cur = err.source();
    }
    None
}

/// Classifies a reqwest error by its kind and its source chain.
pub fn cause(e: &reqwest::Error) -> Cause {
    if e.is_timeout() || io_kind(e) == Some(std::io::ErrorKind::TimedOut) {
        return Cause::Timeout;
    }
    let messages = chain(e).join(" | ").to_ascii_lowercase();
    if io_kind(e) == Some(std::io::ErrorKind::ConnectionRefused)
        || messages.contains("connection refused")
    {
        return Cause::Refused;
    }
    if messages.contains("dns error")
        || messages.contains("failed to lookup address")
        || messages.contains("name or service not known")
        || messages.contains("temporary failure in name resolution")
        || messages.contains("no address associated")
    {
        return Cause::Dns;
    }
    if messages.contains("tls")
        || messages.contains("certificate")
        || messages.contains("corrupt message")
        || messages.contains("handshake")
        || messages.contains("invalidcontenttype")
    {
        return Cause::Tls;
    }
    if e.is_body() || e.is_decode() || e.is_request() && !e.is_connect() {
        return Cause::Dropped;
    }
    Cause::Other
}

/// TLS errors from rustls name enum variants (`UnknownIssuer`); say what they mean instead.
fn tls_words(messages: &str) -> &'static str {
    let m = messages.to_ascii_lowercase();
    if m.contains("corrupt message") || m.contains("invalidcontenttype") {
        "the server did not answer with TLS (is it plain http://?)"
    } else if m.contains("unknownissuer") || m.contains("unknown issuer") {
        "its certificate is not signed by a trusted authority"
    } else if m.contains("notvalidforname") || m.contains("not valid for name") {
        "its certificate is not valid for this host name"
    } else if m.contains("expired") {
        "its certificate has expired"
    } else {
        "the TLS handshake failed"
    }
}

/// One line: `cannot reach WHAT at URL: CAUSE`. `timeouts` are (connect, request).
pub fn describe(
    what: &str,
    e: &reqwest::Error,
    url: &Url,
    timeouts: (Duration, Duration),
) -> String {
    let at = shown_url(url);
    let host = url.host_str().unwrap_or("");
    let messages = chain(e);
    let cause_text = match cause(e) {
        Cause::Timeout if e.is_connect() => {
            format!("timed out connecting (after {} ms)", timeouts.0.as_millis())
        }
        Cause::Timeout => format!("timed out (no answer after {} ms)", timeouts.1.as_millis()),
        Cause::Refused => "connection refused (nothing is listening on that port)".to_owned(),
        Cause::Dns => format!("DNS lookup of {host:?} failed (the host name does not resolve)"),
        Cause::Tls => format!("TLS error: {}", tls_words(&messages.join(" | "))),
        Cause::Dropped => "the connection dropped before a complete response".to_owned(),
        Cause::Other => match messages.last() {
            Some(m) => format!("request failed ({})", clip(m)),
            None => "request failed".to_owned(),
        },
    };
    format!("cannot reach {what} at {at}: {cause_text}")
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}
