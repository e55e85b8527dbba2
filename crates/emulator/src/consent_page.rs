//! The admin consent page (`GET /consent`) and its form (`POST /consent`), modelled on IMS's
//! `https://id.adobe.com/consent` for Enterprise Web App credentials: an emulated admin picks an
//! org and allows, cancels, or fails with one of IMS's error codes, and is sent back to the
//! partner's redirect URI with IMS's query parameters.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use url::Url;

use crate::config::EmulatorClient;
use crate::faults::Endpoint;
use crate::routes::{St, apply_fault, with_debug_id};
use crate::server::State;

/// The outcomes the emulated admin can fail with; the other IMS codes (`invalid_scopes`,
/// `invalid_redirect_uri`, `missing_state_param`) come from the request itself.
const ERROR_CODES: [&str; 3] = [
    "insufficient_privilege",
    "incompatible_account_type",
    "error",
];

/// No script at all; the only styles are the page's own.
pub(crate) const CSP_BASE: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                        frame-ancestors 'none'";

pub(crate) type Params = HashMap<String, String>;

/// A parameter, with an empty value treated as absent (as a form sends an empty hidden field).
pub(crate) fn param<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
    p.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Where the admin goes back to: the string as configured or requested (re-checked on `POST`, so
/// it must round-trip unchanged) and its parsed form.
struct Target {
    raw: String,
    url: Url,
}

/// A consent request that passed IMS's checks.
struct Checked<'a> {
    client: &'a EmulatorClient,
    target: Target,
    state: String,
    scopes: Vec<String>,
    nonce: Option<String>,
}

/// Only web redirects: a `javascript:` or custom-scheme target has no place in a browser flow.
pub(crate) fn redirect_url(s: &str) -> Option<Url> {
    Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

pub(crate) fn redirect_allowed(st: &State, client: &EmulatorClient, uri: &str) -> bool {
    client.default_redirect_uri.as_deref() == Some(uri)
        || st
            .redirect_patterns
            .get(&client.client_id)
            .is_some_and(|ps| ps.iter().any(|r| r.is_match(uri)))
}

/// The request's checks. The client comes first because without it there is nowhere to redirect;
/// the redirect target next because every later error is reported there; then `state`, then
/// scopes. `Err` is the response to send.
fn check<'a>(st: &'a State, p: &Params) -> Result<Checked<'a>, Box<Response>> {
    let Some(client) = param(p, "client_id").and_then(|id| st.client(id)) else {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The client_id is missing or does not belong to any application.",
        )));
    };
    let default = match client.default_redirect_uri.as_deref() {
        None => None,
        Some(raw) => match redirect_url(raw) {
            Some(url) => Some(Target {
                raw: raw.to_owned(),
                url,
            }),
            None => {
                return Err(Box::new(error_page(
                    StatusCode::BAD_REQUEST,
                    "Misconfigured application",
                    "The application's default redirect URI is not an absolute http(s) URL.",
                )));
            }
        },
    };
    let no_default = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "Misconfigured application",
            "The application has no default redirect URI to return to.",
        )
    };
    let requested = param(p, "redirect_uri");
    let target = match requested {
        Some(uri) => match redirect_url(uri).filter(|_| redirect_allowed(st, client, uri)) {
            Some(url) => Target {
                raw: uri.to_owned(),
                url,
            },
            None => {
                // IMS reports a bad redirect_uri at the default redirect URI.
                let Some(default) = default else {
                    return Err(Box::new(no_default()));
                };
                let mut pairs = vec![("error", "invalid_redirect_uri")];
                if let Some(s) = param(p, "state") {
                    pairs.push(("state", s));
                }
                return Err(Box::new(redirect(&default.url, &pairs)));
            }
        },
        None => match default {
            Some(d) => d,
            None => return Err(Box::new(no_default())),
        },
    };
    let Some(state) = param(p, "state") else {
        return Err(Box::new(redirect(
            &target.url,
            &[("error", "missing_state_param")],
        )));
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in p
        .get("scope")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if scopes.is_empty() || scopes.iter().any(|s| !client.scopes.contains(s)) {
        return Err(Box::new(redirect(
            &target.url,
            &[("error", "invalid_scopes"), ("state", state)],
        )));
    }
    Ok(Checked {
        client,
        target,
        state: state.to_owned(),
        scopes,
        nonce: param(p, "nonce").map(str::to_owned),
    })
}

/// The orgs the emulated admin can consent for: the configured customer orgs, then the client's
/// own org, where consent creates the test technical account.
fn offered_orgs(client: &EmulatorClient) -> Vec<(String, String)> {
    let mut orgs: Vec<(String, String)> = client
        .customer_orgs()
        .into_iter()
        .filter(|o| o.org_id != client.org_id)
        .map(|o| {
            let label = format!("{} ({})", o.name, o.org_id);
            (o.org_id, label)
        })
        .collect();
    orgs.push((
        client.org_id.clone(),
        format!(
            "Your own organization ({}): test technical account",
            client.org_id
        ),
    ));
    orgs
}

/// `GET /consent`: the consent page, or IMS's redirect or error page for a bad request.
pub(crate) async fn consent_page(AxState(st): St, uri: Uri) -> Response {
    if let Some(resp) = apply_fault(&st, Endpoint::Consent).await {
        return resp;
    }
    let Ok(p) = serde_urlencoded::from_str::<Params>(uri.query().unwrap_or("")) else {
        return malformed();
    };
    match check(&st, &p) {
        Ok(c) => render(&c),
        Err(resp) => *resp,
    }
}

/// `POST /consent`: the admin's decision. The hidden fields came back through the browser, so
/// every check runs again.
pub(crate) async fn consent_decision(AxState(st): St, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&st, Endpoint::Consent).await {
        return resp;
    }
    let Ok(p) = serde_urlencoded::from_bytes::<Params>(&body) else {
        return malformed();
    };
    let c = match check(&st, &p) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    match param(&p, "action") {
        Some("allow") => {
            let offered = offered_orgs(c.client);
            let Some(org) = param(&p, "org_id").filter(|o| offered.iter().any(|(id, _)| id == o))
            else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown organization",
                    "Choose one of the organizations offered on the consent page.",
                );
            };
            let client_id = &c.client.client_id;
            let Some(account) = st.consents.grant(&st.config, client_id, org) else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown application",
                    "The client_id does not belong to any application.",
                );
            };
            let id_token = st.issue_id_token(client_id, org, &account, c.nonce.as_deref());
            redirect(
                &c.target.url,
                &[
                    ("admin_consent", "true"),
                    ("state", &c.state),
                    ("id_token", &id_token),
                ],
            )
        }
        Some("cancel") => redirect(
            &c.target.url,
            &[("admin_consent", "false"), ("state", &c.state)],
        ),
        Some("error") => match param(&p, "error_code").filter(|e| ERROR_CODES.contains(e)) {
            Some(code) => redirect(&c.target.url, &[("error", code), ("state", &c.state)]),
            None => error_page(
                StatusCode::BAD_REQUEST,
                "Unknown error code",
                "error_code must be insufficient_privilege, incompatible_account_type or error.",
            ),
        },
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "action must be allow, cancel or error.",
        ),
    }
}

pub(crate) fn malformed() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Malformed request",
        "The parameters could not be decoded.",
    )
}

/// A 303 to `target` with `pairs` appended to its query (an existing query is kept).
pub(crate) fn redirect(target: &Url, pairs: &[(&str, &str)]) -> Response {
    let mut url = target.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot redirect",
            "The redirect URI cannot be sent as a Location header.",
        );
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The consent URL carries the state and nonce; the partner gets them in the query instead.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    with_debug_id(resp)
}

fn render(c: &Checked<'_>) -> Response {
    let mut scopes = String::new();
    for s in &c.scopes {
        let _ = write!(scopes, "<li>{}</li>", esc(s));
    }
    let mut orgs = String::new();
    for (id, label) in offered_orgs(c.client) {
        let _ = write!(
            orgs,
            "<option value=\"{}\">{}</option>",
            esc(&id),
            esc(&label)
        );
    }
    let mut errors = String::new();
    for code in ERROR_CODES {
        let _ = write!(errors, "<option value=\"{code}\">{code}</option>");
    }
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            esc(value)
        )
    };
    let fields = [
        hidden("client_id", &c.client.client_id),
        hidden("scope", &c.scopes.join(",")),
        hidden("state", &c.state),
        hidden("nonce", c.nonce.as_deref().unwrap_or("")),
        hidden("redirect_uri", &c.target.raw),
    ]
    .concat();
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Adobe IMS emulator: admin consent</title>
<style>body{{font-family:sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}fieldset{{margin:1.5rem 0}}code{{word-break:break-all}}</style>
</head>
<body>
<h1>Allow access to your organization?</h1>
<p>The application <strong id="client-id">{client}</strong> asks to access an Adobe organization you administer, with these scopes:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="/consent">
{fields}
<p><label for="org">Organization</label>
<select id="org" name="org_id">{orgs}</select></p>
<p>You will be sent back to <code id="redirect-target">{target}</code>.</p>
<p><button type="submit" id="allow" name="action" value="allow">Allow</button>
<button type="submit" id="cancel" name="action" value="cancel">Cancel</button></p>
<fieldset>
<legend>Emulate an IMS failure</legend>
<label for="error-code">Error</label>
<select id="error-code" name="error_code">{errors}</select>
<button type="submit" id="fail" name="action" value="error">Fail</button>
</fieldset>
</form>
</body>
</html>
"#,
        client = esc(&c.client.client_id),
        target = esc(&c.target.raw),
    );
    // No `form-action`: Chrome applies it to every redirect after the form POST, and the chain
    // goes on past the partner's callback to wherever the partner sends the browser next.
    html(StatusCode::OK, body, CSP_BASE)
}

/// IMS answers a consent request it cannot redirect anywhere with a page, not a redirect.
pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Adobe IMS emulator: {title}</title>\n</head>\n<body>\n\
         <h1 id=\"error-title\">{title}</h1>\n<p id=\"error-detail\">{detail}</p>\n</body>\n</html>\n",
        title = esc(title),
        detail = esc(detail),
    );
    html(status, body, &format!("{CSP_BASE}; form-action 'none'"))
}

pub(crate) fn html(status: StatusCode, body: String, csp: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    with_debug_id(resp)
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#""><script>alert('x')</script>&"#),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }

    #[test]
    fn redirects_keep_the_existing_query_and_encode_values() {
        let target = Url::parse("https://app.example/cb?tenant=a%20b#frag").unwrap();
        let resp = redirect(&target, &[("state", "x&y=z"), ("admin_consent", "true")]);
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://app.example/cb?tenant=a%20b&state=x%26y%3Dz&admin_consent=true#frag"
        );
    }
}
