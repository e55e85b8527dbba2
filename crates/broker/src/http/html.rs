//! The HTML kit for browser-facing pages: escaping, the one layout and stylesheet, the security
//! headers every page carries, content negotiation, and the error page.
//!
//! The stylesheet is inline and allowed by its hash in the CSP, so pages need no extra route and
//! no `'unsafe-inline'`; pages carry no script at all.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::{ApiError, retry_after_secs};

/// The one stylesheet: readable at 1280 px and on a phone (tables scroll inside their box).
pub const CSS: &str = "\
:root{color-scheme:light;--fg:#1d1d1f;--muted:#5f6368;--line:#d9dce1;--accent:#1473e6;--bad:#b3261e;--warn:#8a5a00}\
*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:#f5f6f8;margin:0}\
header{background:#fff;border-bottom:1px solid var(--line);padding:.8rem 1.2rem;display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;justify-content:space-between}\
header h1{font-size:1.15rem;margin:0}\
main{max-width:90rem;margin:0 auto;padding:1rem 1.2rem 3rem}\
section,.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1rem 1.2rem;margin:1rem 0}\
h2{font-size:1.05rem;margin:0 0 .6rem}h2.next{margin-top:1.4rem}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.92rem}\
td,th{border-bottom:1px solid var(--line);padding:.4rem .5rem;text-align:left;vertical-align:top}th{white-space:nowrap}\
th{color:var(--muted);font-weight:600}\
tr.needs_reauthorization td{background:#fff3cd}tr.unlinked td{color:#777}\
code{font-size:.88em;overflow-wrap:anywhere}\
.muted{color:var(--muted)}.bad{color:var(--bad)}.warn{color:var(--warn)}\
form.inline{display:inline}input.wide{width:100%}\
form.search{display:flex;flex-wrap:wrap;gap:.5rem;margin:0 0 .8rem}\
input[type=text],input[type=search],input[type=password]{font:inherit;padding:.4rem .6rem;border:1px solid var(--line);border-radius:6px;min-width:0;flex:1 1 12rem}\
button,.button{font:inherit;font-size:.9rem;padding:.35rem .8rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;text-decoration:none;display:inline-block}\
button.secondary,.button.secondary{background:#fff;color:var(--accent)}\
button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}\
.pager{display:flex;gap:.6rem;align-items:center;margin-top:.6rem;flex-wrap:wrap}\
.notice{border-left:4px solid var(--accent);background:#eef5fe;padding:.6rem .9rem;margin:1rem 0;border-radius:4px}\
.notice.error{border-color:var(--bad);background:#fdecea}\
.error-page{max-width:36rem;margin:10vh auto 0}\
.error-page h1{font-size:1.4rem;margin:0 0 .6rem}\
.error-page .code{color:var(--muted);font-size:.85rem}\
@media (max-width:600px){body{font-size:15px}main{padding:.6rem .6rem 2rem}section,.card{padding:.8rem}td,th{padding:.35rem .4rem}\
table.stack thead{display:none}table.stack tr{display:block;border-bottom:1px solid var(--line);padding:.4rem 0}\
table.stack td{display:block;border:0;padding:.15rem 0;position:relative}table.stack td:empty{display:none}\
table.stack td[data-label]{display:flow-root;padding-left:8rem}\
table.stack td[data-label]::before{content:attr(data-label);color:var(--muted);font-weight:600;float:left;width:7.5rem;margin-left:-8rem}}\
";

/// `Content-Security-Policy` for every page: nothing but the stylesheet above, forms only to us.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole document: `title` is text (escaped here), `body` is markup built with [`escape`].
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{CSS}</style></head>\
<body>{body}</body></html>",
        escape(title)
    )
}

/// A page response with the headers every page carries.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut resp = (status, document(title, body)).into_response();
    page_headers(resp.headers_mut());
    resp
}

pub fn page_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Whether the client asked for HTML rather than JSON: a browser's navigation sends
/// `text/html,...,*/*;q=0.8`; API clients send `application/json`, `*/*` or nothing. HTML wins
/// only when it is listed explicitly and weighs at least as much as JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = html.max(q),
                "application/json" => json = json.max(q),
                _ => {}
            }
        }
    }
    html > 0.0 && html >= json
}

/// Which browser flow a page belongs to, so its explanation names the right next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `/connect/{ticket}` and the consent callback.
    Consent,
    /// `/login/{ticket}` and the sign-in callback.
    SignIn,
    /// The operator console.
    Admin,
}

/// What an error means for a person: a headline and what to do next.
fn explain(flow: Flow, err: &ApiError) -> (&'static str, String) {
    let again = match flow {
        Flow::Consent => "Go back to the application and click Connect with Adobe again.",
        Flow::SignIn => "Go back to the application and click Sign in with Adobe again.",
        Flow::Admin => "Go back to the console and try again.",
    };
    match (flow, err.code) {
        (Flow::Consent, "connect_link_unusable") => (
            "This connect link can no longer be used",
            format!(
                "A connect link works once and only for a few minutes: this one was already used, \
                 has expired, or was never issued. {again}"
            ),
        ),
        (Flow::SignIn, "login_link_unusable" | "connect_link_unusable") => (
            "This sign-in link can no longer be used",
            format!(
                "A sign-in link works once and only for a few minutes: this one was already used, \
                 has expired, or was never issued. {again}"
            ),
        ),
        (_, "invalid_session") => (
            "This browser has no matching session",
            format!(
                "Adobe sent you back here, but this browser does not hold the session that \
                 started the flow: it may have expired, been finished in another tab, or cookies \
                 may be blocked for this site. {again}"
            ),
        ),
        (_, "invalid_request") => (
            "This link is malformed",
            format!("The address is not one this service issued. {again}"),
        ),
        (_, "rate_limited" | "too_many_attempts") => (
            "Too many attempts",
            match err.retry_after {
                Some(d) => format!("Wait {} seconds before trying again.", retry_after_secs(d)),
                None => "Wait a minute before trying again.".to_owned(),
            },
        ),
        (_, "unauthorized") => (
            "Sign-in required",
            "Your console session has ended or was never started; sign in again with the \
             internal API key."
                .to_owned(),
        ),
        _ if err.status.is_server_error() => (
            "Something went wrong on our side",
            format!(
                "The service could not finish this step. Nothing was changed. Wait a moment, then \
                 try again{}. {again}",
                err.retry_after
                    .map(|d| format!(" in {} seconds", retry_after_secs(d)))
                    .unwrap_or_default()
            ),
        ),
        _ => ("This request could not be completed", again.to_owned()),
    }
}

/// The error page for `err`, with its status, `Retry-After` and `WWW-Authenticate` kept.
pub fn error_page(flow: Flow, err: &ApiError) -> Response {
    let (headline, body) = error_markup(flow, err);
    let mut resp = page(err.status, headline, &body);
    let h = resp.headers_mut();
    if let Some(d) = err.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
    }
    if let Some(challenge) = err.www_authenticate {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    resp
}

fn error_markup(flow: Flow, err: &ApiError) -> (&'static str, String) {
    let (headline, next) = explain(flow, err);
    let mut body = String::new();
    let _ = write!(
        body,
        "<main class=\"error-page\"><div class=\"card\" id=\"error\"><h1>{}</h1><p id=\"explanation\">{}</p>\
<p class=\"code\">{} · <code>{}</code> · {}</p></div></main>",
        escape(headline),
        escape(&next),
        err.status.as_u16(),
        escape(err.code),
        escape(&err.description),
    );
    if flow == Flow::Admin {
        // Inside the card, before it closes.
        let back = "<p><a class=\"button\" id=\"back\" href=\"/admin\">Back to the console</a></p></div></main>";
        if let Some(stripped) = body.strip_suffix("</div></main>") {
            body = format!("{stripped}{back}");
        }
    }
    (headline, body)
}

/// The error as a page for a browser, as JSON otherwise.
pub fn negotiate(headers: &HeaderMap, flow: Flow, err: ApiError) -> Response {
    if wants_html(headers) {
        error_page(flow, &err)
    } else {
        err.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn accept_table() {
        for (accept, html) in [
            (
                vec![
                    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
                ],
                true,
            ),
            (vec!["text/html"], true),
            (vec!["TEXT/HTML; q=0.5"], true),
            (vec!["application/json"], false),
            (vec!["*/*"], false),
            (vec![], false),
            (vec!["text/html;q=0"], false),
            (vec!["text/html;q=0.5, application/json"], false),
            (vec!["application/json;q=0.5, text/html"], true),
            (vec!["application/json", "text/html"], true),
            (vec!["text/html;q=abc"], true),
            (vec!["text/html;q=NaN"], true),
        ] {
            let mut h = HeaderMap::new();
            for a in &accept {
                h.append(header::ACCEPT, HeaderValue::from_str(a).unwrap());
            }
            assert_eq!(wants_html(&h), html, "{accept:?}");
        }
    }

    #[test]
    fn csp_hash_matches_the_stylesheet() {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        assert!(csp().contains(&format!("'sha256-{hash}'")));
        assert!(!csp().contains("unsafe-inline"));
        assert!(document("t", "").contains(&format!("<style>{CSS}</style>")));
    }

    #[test]
    fn error_page_escapes_the_description() {
        let err = ApiError::bad_request("invalid_session", "<script>alert(1)</script>");
        let (_, body) = error_markup(Flow::Consent, &err);
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{body}"
        );
        assert!(!body.contains("<script>"), "{body}");
        let resp = error_page(Flow::Consent, &err);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
}
