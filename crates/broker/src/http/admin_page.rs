//! `GET /admin`: a page listing linked orgs and their status, behind the internal API key
//! (HTTP Basic, the key as password).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::consent::flow_error;
use super::error::ApiError;
use super::internal_auth::require_basic;
use super::openapi::schemas::ErrorBody;
use crate::service::ConsentState;

#[utoipa::path(get, operation_id = "admin_page", path = "/admin", tag = "consent",
    security(("internal_key_basic" = [])),
    responses(
        (status = 200, description = "The page of linked orgs", content_type = "text/html", body = String),
        (status = 401, description = "`unauthorized`: sign in with the internal API key as the password",
         body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Basic realm=\"imsgate admin\"`"))),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
    ))]
pub async fn page(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_basic(&headers, &st.internal_key)?;
    let links = st
        .service
        .store
        .list_links()
        .await
        .map_err(|e| flow_error(e.into()))?;
    let mut rows = String::new();
    for l in &links {
        let _ = write!(
            rows,
            "<tr class=\"{status}\"><td>{account}</td><td>{org}</td><td>{ta}</td><td>{status}</td><td>{linked}</td><td>{updated}</td></tr>",
            account = escape(&l.account_id),
            org = escape(&l.org_id),
            ta = escape(&l.technical_account),
            status = l.status.as_str(),
            linked = super::rfc3339(l.linked_at_ms),
            updated = super::rfc3339(l.updated_at_ms),
        );
    }
    if links.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">No account has been linked yet.</td></tr>");
    }
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>imsgate: linked orgs</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}\
tr.needs_reauthorization td{{background:#fff3cd}}tr.unlinked td{{color:#777}}</style></head><body>\
<h1>Linked Adobe orgs</h1><p>Credential <code>{cred}</code>, client <code>{client}</code>.</p>\
<table id=\"links\"><thead><tr><th>Account</th><th>Org</th><th>Technical account</th><th>Status</th><th>Linked</th><th>Updated</th></tr></thead>\
<tbody>{rows}</tbody></table></body></html>",
        cred = escape(&st.credential),
        client = escape(&st.service.client_id),
    );
    let mut resp = html.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
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

#[cfg(test)]
mod tests {
    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            super::escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
