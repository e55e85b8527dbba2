//! The user sign-in page (`GET /ims/authorize/v2`) and its form (`POST /ims/authorize/v2`): an
//! emulated user signs in and allows or denies, and is sent back with `code` and `state`, or with
//! `error` as RFC 6749 §4.1.2.1 describes.
//!
//! A missing or unregistered `redirect_uri` gets an error page, never a redirect: an unverified
//! target must not receive anything.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use imsgate_ims::user_oauth::{MAX_STATE_LEN, is_verifier};
use url::Url;

use crate::config::EmulatorClient;
use crate::consent_page::{
    CSP_BASE, Params, error_page, esc, html, malformed, param, redirect, redirect_allowed,
    redirect_url,
};
use crate::faults::Endpoint;
use crate::routes::{St, apply_fault};
use crate::server::State;
use crate::user_grants::{Challenge, CodeGrant};

/// An authorize request that passed IMS's checks.
struct Checked<'a> {
    client: &'a EmulatorClient,
    redirect_raw: String,
    target: Url,
    state: Option<String>,
    scopes: Vec<String>,
    nonce: Option<String>,
    challenge: Option<Challenge>,
}

impl Checked<'_> {
    fn back(&self, pairs: &[(&str, &str)]) -> Response {
        let mut all = pairs.to_vec();
        if let Some(s) = &self.state {
            all.push(("state", s));
        }
        redirect(&self.target, &all)
    }
}

fn check<'a>(st: &'a State, p: &Params) -> Result<Checked<'a>, Box<Response>> {
    let page =
        |title: &str, detail: &str| Box::new(error_page(StatusCode::BAD_REQUEST, title, detail));
    let Some(client) = param(p, "client_id").and_then(|id| st.client(id)) else {
        return Err(page(
            "Unknown application",
            "The client_id is missing or does not belong to any application.",
        ));
    };
    let raw = param(p, "redirect_uri")
        .or(client.default_redirect_uri.as_deref())
        .unwrap_or("");
    let Some(target) = redirect_url(raw).filter(|_| redirect_allowed(st, client, raw)) else {
        return Err(page(
            "Invalid redirect URI",
            "The redirect_uri is missing or not registered for this application.",
        ));
    };
    let state = param(p, "state").map(str::to_owned);
    let mut c = Checked {
        client,
        redirect_raw: raw.to_owned(),
        target,
        state,
        scopes: Vec::new(),
        nonce: param(p, "nonce").map(str::to_owned),
        challenge: None,
    };
    if c.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        c.state = None;
        return Err(Box::new(c.back(&[
            ("error", "invalid_request"),
            ("error_description", "state is too long"),
        ])));
    }
    if param(p, "response_type") != Some("code") {
        return Err(Box::new(c.back(&[("error", "unsupported_response_type")])));
    }
    for s in param(p, "scope")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !c.scopes.iter().any(|x| x == s) {
            c.scopes.push(s.to_owned());
        }
    }
    if c.scopes.is_empty() || c.scopes.iter().any(|s| !client.scopes.contains(s)) {
        return Err(Box::new(c.back(&[("error", "invalid_scope")])));
    }
    // IMS assumes `plain` when the method is absent (RFC 7636 §4.3).
    c.challenge = match (
        param(p, "code_challenge"),
        param(p, "code_challenge_method"),
    ) {
        (None, None) => None,
        (Some(ch), m) if is_verifier(ch) => match m {
            Some("S256") => Some(Challenge::S256(ch.to_owned())),
            None | Some("plain") => Some(Challenge::Plain(ch.to_owned())),
            Some(_) => {
                return Err(Box::new(c.back(&[
                    ("error", "invalid_request"),
                    ("error_description", "unsupported code_challenge_method"),
                ])));
            }
        },
        _ => {
            return Err(Box::new(c.back(&[
                ("error", "invalid_request"),
                ("error_description", "malformed code_challenge"),
            ])));
        }
    };
    Ok(c)
}

/// `GET /ims/authorize/v2`: the sign-in page, or the redirect or error page for a bad request.
pub(crate) async fn authorize_page(AxState(st): St, uri: Uri) -> Response {
    if let Some(resp) = apply_fault(&st, Endpoint::Authorize).await {
        return resp;
    }
    let Ok(p) = serde_urlencoded::from_str::<Params>(uri.query().unwrap_or("")) else {
        return malformed();
    };
    match check(&st, &p) {
        Ok(c) => render(&st, &c, &p),
        Err(resp) => *resp,
    }
}

/// `POST /ims/authorize/v2`: the user's choice. The request came back through the browser in
/// hidden fields, so every check runs again.
pub(crate) async fn authorize_decision(AxState(st): St, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&st, Endpoint::Authorize).await {
        return resp;
    }
    let Ok(p) = serde_urlencoded::from_bytes::<Params>(&body) else {
        return malformed();
    };
    let c = match check(&st, &p) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    if param(&p, "action") == Some("deny") {
        return c.back(&[("error", "access_denied")]);
    }
    let users = st.config.sign_in_users();
    let Some(user) = param(&p, "user").and_then(|u| users.iter().find(|x| x.user_id == u)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown user",
            "Choose one of the users offered on the sign-in page.",
        );
    };
    let code = st.user_grants.issue_code(CodeGrant {
        client_id: c.client.client_id.clone(),
        redirect_uri: c.redirect_raw.clone(),
        scopes: c.scopes.clone(),
        nonce: c.nonce.clone(),
        challenge: c.challenge.clone(),
        user_id: user.user_id.clone(),
    });
    c.back(&[("code", &code)])
}

fn render(st: &State, c: &Checked<'_>, p: &Params) -> Response {
    let mut scopes = String::new();
    for s in &c.scopes {
        let _ = write!(scopes, "<li>{}</li>", esc(s));
    }
    let mut users = String::new();
    for u in st.config.sign_in_users() {
        let _ = write!(
            users,
            "<p><button type=\"submit\" name=\"user\" value=\"{id}\" data-email=\"{email}\">Sign in as {name} ({email})</button></p>",
            id = esc(&u.user_id),
            email = esc(&u.email),
            name = esc(&u.name),
        );
    }
    let mut fields = String::new();
    for name in [
        "client_id",
        "redirect_uri",
        "scope",
        "response_type",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        if let Some(v) = param(p, name) {
            let _ = write!(
                fields,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                esc(v)
            );
        }
    }
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Adobe IMS emulator: sign in</title>
<style>body{{font-family:sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}code{{word-break:break-all}}</style>
</head>
<body>
<h1>Sign in with Adobe</h1>
<p>The application <strong id="client-id">{client}</strong> asks for these scopes:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="/ims/authorize/v2">
{fields}
{users}
<p><button type="submit" id="deny" name="action" value="deny">Deny</button></p>
</form>
<p>You will be sent back to <code id="redirect-target">{target}</code>.</p>
</body>
</html>
"#,
        client = esc(&c.client.client_id),
        target = esc(&c.redirect_raw),
    );
    html(StatusCode::OK, body, CSP_BASE)
}
