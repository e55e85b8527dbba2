//! The demo's stand-in for a partner application: a page with "Connect with Adobe" (admin consent)
//! and "Sign in with Adobe" (user OAuth) buttons whose backend calls imsgate's internal API, as a
//! real partner backend would.
//!
//! It holds the internal API key server-side; the browser never sees it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use imsgate_broker::http::html::escape;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug)]
pub struct AppState {
    pub broker_url: String,
    pub emulator_url: String,
    pub app_url: String,
    pub internal_key: String,
    /// The key the app's backend signs caller tokens with (shared with imsgate).
    pub caller_key: String,
    pub http: reqwest::Client,
}

/// The browser package, built by `tsc` from `clients/js/src` (kept current by `scripts/test`).
const CLIENT_AUTH_JS: &str = include_str!("../../../clients/js/dist/index.js");
const EMBED_DEMO_JS: &str = include_str!("../assets/embed-demo.js");

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/connect", post(connect))
        .route("/token", post(org_token))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/embed", get(embed))
        .route("/session/caller-token", post(caller_token))
        .route(
            "/assets/client-auth.js",
            get(|| async { script(CLIENT_AUTH_JS) }),
        )
        .route(
            "/assets/embed-demo.js",
            get(|| async { script(EMBED_DEMO_JS) }),
        )
        .with_state(state)
}

#[derive(Deserialize)]
struct HomeQuery {
    account: Option<String>,
    user: Option<String>,
    result: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct UserForm {
    user: String,
}

#[derive(Deserialize)]
struct AccountForm {
    account_id: String,
}

#[derive(Deserialize)]
struct OrgForm {
    org_id: String,
    account_id: String,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:46rem}\
.ok{background:#e6f4ea}.warn{background:#fff3cd}.err{background:#fde8e8}\
.banner{padding:.6rem 1rem;border-radius:.4rem}code{word-break:break-all}";

fn page(body: &str) -> Response {
    let mut resp = Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Partner app (imsgate demo)</title><style>{STYLE}</style></head><body><h1>Partner app</h1>{body}</body></html>"
    ))
    .into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action *"),
    );
    resp
}

async fn home(State(st): State<Arc<AppState>>, Query(q): Query<HomeQuery>) -> Response {
    let account = q.account.unwrap_or_else(|| "demo-account-1".to_owned());
    let user = q.user.unwrap_or_else(|| "demo-user-1".to_owned());
    let mut body = String::new();
    if let Some(result) = &q.result {
        let class = match result.as_str() {
            "linked" | "signed_in" | "signed_out" => "ok",
            "cancelled" => "warn",
            _ => "err",
        };
        body.push_str(&format!(
            "<p id=\"result\" class=\"banner {class}\">Result: <b>{}</b> ({})</p>",
            escape(result),
            escape(q.code.as_deref().unwrap_or(""))
        ));
    }
    body.push_str(&user_section(&st, &user).await);
    body.push_str("<h2>Adobe org (admin consent)</h2>");
    let status = st
        .http
        .get(format!("{}/api/connections/{account}", st.broker_url))
        .bearer_auth(&st.internal_key)
        .send()
        .await;
    let status: Option<Value> = match status {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    let link_status = status
        .as_ref()
        .and_then(|s| s["status"].as_str())
        .unwrap_or("unknown");
    body.push_str(&format!(
        "<p>Account <code>{}</code> is <b id=\"status\">{}</b>",
        escape(&account),
        escape(link_status)
    ));
    if let Some(org) = status.as_ref().and_then(|s| s["org_id"].as_str()) {
        body.push_str(&format!(
            " to Adobe org <code id=\"org\">{}</code>",
            escape(org)
        ));
        body.push_str(&format!(
            "</p><form method=\"post\" action=\"/token\"><input type=\"hidden\" name=\"org_id\" value=\"{}\"><input type=\"hidden\" name=\"account_id\" value=\"{}\"><button id=\"get-token\">Get an org-scoped token</button></form><p>",
            escape(org),
            escape(&account)
        ));
    }
    body.push_str("</p>");
    body.push_str(&format!(
        "<form method=\"post\" action=\"/connect\"><label>Account id <input id=\"account\" name=\"account_id\" value=\"{}\"></label> <button id=\"connect\">Connect with Adobe</button></form>\
<p>The button asks this app's backend to call <code>POST {}/api/connections</code> with the internal API key, then sends you to the one-time connect URL.</p>\
<p><a href=\"/embed\">Client-token demo</a>: the browser package getting tokens for a stand-in Embed SDK module.</p>",
        escape(&account),
        escape(&st.broker_url)
    ));
    page(&body)
}

/// The user's Adobe sign-in: who they are at Adobe and a glimpse of their token, or the button.
async fn user_section(st: &AppState, user: &str) -> String {
    let r = st
        .http
        .post(format!(
            "{}/api/users/{}/token",
            st.broker_url,
            url_encode(user)
        ))
        .bearer_auth(&st.internal_key)
        .send()
        .await;
    let mut out = String::from("<h2>Adobe user (sign-in)</h2>");
    let token: Option<Value> = match r {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    match token {
        Some(t) => {
            // Enough of the token to recognise it; a page is no place for a bearer token.
            let shown: String = t["access_token"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(24)
                .collect();
            out.push_str(&format!(
                "<p>User <code>{}</code> is <b id=\"user-status\">signed in</b> as Adobe user <code id=\"ims-user\">{}</code>; \
their token <code id=\"user-token\">{}…</code> expires in {} s.</p>\
<form method=\"post\" action=\"/sign-out\"><input type=\"hidden\" name=\"user\" value=\"{}\"><button id=\"sign-out\">Sign out of Adobe (revoke)</button></form>",
                escape(user),
                escape(t["ims_user_id"].as_str().unwrap_or("")),
                escape(&shown),
                t["expires_in"],
                escape(user),
            ));
        }
        None => out.push_str(&format!(
            "<p>User <code>{}</code> is <b id=\"user-status\">not signed in</b> with Adobe.</p>",
            escape(user)
        )),
    }
    out.push_str(&format!(
        "<form method=\"post\" action=\"/sign-in\"><label>User id <input id=\"user\" name=\"user\" value=\"{}\"></label> <button id=\"sign-in\">Sign in with Adobe</button></form>\
<p>The button asks this app's backend to call <code>POST {}/api/user-logins</code>; afterwards the backend gets the user's token from <code>POST /api/users/{{user}}/token</code>.</p>",
        escape(user),
        escape(&st.broker_url)
    ));
    out
}

/// Calls the internal API and sends the browser to the one-time URL in `field` of the answer.
async fn start_flow(st: &AppState, path: &str, body: serde_json::Value, field: &str) -> Response {
    let r = st
        .http
        .post(format!("{}{path}", st.broker_url))
        .bearer_auth(&st.internal_key)
        .json(&body)
        .send()
        .await;
    match r {
        Ok(r) if r.status() == StatusCode::CREATED => {
            let v: Value = r.json().await.unwrap_or_default();
            let url = v[field].as_str().unwrap_or("/");
            let mut resp = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Ok(r) => {
            let v: Value = r.json().await.unwrap_or_default();
            page(&format!(
                "<p class=\"banner err\">imsgate refused: {}</p><p><a href=\"/\">Back</a></p>",
                escape(v["error_description"].as_str().unwrap_or("unknown error"))
            ))
        }
        Err(_) => page("<p class=\"banner err\">imsgate is not reachable.</p>"),
    }
}

async fn sign_in(State(st): State<Arc<AppState>>, Form(f): Form<UserForm>) -> Response {
    let return_to = format!("{}/?user={}", st.app_url, url_encode(&f.user));
    start_flow(
        &st,
        "/api/user-logins",
        serde_json::json!({"user": f.user, "return_to": return_to}),
        "login_url",
    )
    .await
}

async fn sign_out(State(st): State<Arc<AppState>>, Form(f): Form<UserForm>) -> Response {
    let r = st
        .http
        .delete(format!(
            "{}/api/users/{}/token",
            st.broker_url,
            url_encode(&f.user)
        ))
        .bearer_auth(&st.internal_key)
        .send()
        .await;
    let result = match r {
        Ok(r) if r.status().is_success() => "signed_out",
        _ => "sign_out_failed",
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let to = format!(
        "/?user={}&result={result}&code={result}",
        url_encode(&f.user)
    );
    if let Ok(v) = HeaderValue::from_str(&to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn connect(State(st): State<Arc<AppState>>, Form(f): Form<AccountForm>) -> Response {
    let return_to = format!("{}/?account={}", st.app_url, url_encode(&f.account_id));
    start_flow(
        &st,
        "/api/connections",
        serde_json::json!({"account_id": f.account_id, "return_to": return_to}),
        "connect_url",
    )
    .await
}

async fn org_token(State(st): State<Arc<AppState>>, Form(f): Form<OrgForm>) -> Response {
    let r = st
        .http
        .post(format!(
            "{}/api/orgs/{}/token",
            st.broker_url,
            url_encode(&f.org_id)
        ))
        .bearer_auth(&st.internal_key)
        .send()
        .await;
    let back = format!(
        "<p><a href=\"/?account={}\">Back</a></p>",
        escape(&url_encode(&f.account_id))
    );
    match r {
        Ok(r) => {
            let ok = r.status().is_success();
            let v: Value = r.json().await.unwrap_or_default();
            if ok {
                let token = v["access_token"].as_str().unwrap_or("");
                // Enough of the token to recognise it; a page is no place for a bearer token.
                let shown: String = token.chars().take(24).collect();
                page(&format!(
                    "<p class=\"banner ok\" id=\"token\">Org token <code>{}…</code> expires in {} s.</p>{back}",
                    escape(&shown),
                    v["expires_in"]
                ))
            } else {
                page(&format!(
                    "<p class=\"banner err\" id=\"token\">{}: {}</p>{back}",
                    escape(v["error"].as_str().unwrap_or("error")),
                    escape(v["error_description"].as_str().unwrap_or(""))
                ))
            }
        }
        Err(_) => page("<p class=\"banner err\">imsgate is not reachable.</p>"),
    }
}

fn script(source: &'static str) -> Response {
    let mut resp = source.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    resp
}

#[derive(Deserialize)]
struct UserQuery {
    user: Option<String>,
}

/// What the partner's backend gives its signed-in user: a short-lived caller token. The demo has
/// no login, so the page names its user (`?user=`); each user has its own rate-limit budget.
async fn caller_token(State(st): State<Arc<AppState>>, Query(q): Query<UserQuery>) -> Response {
    let user = q.user.unwrap_or_else(|| "demo-user-1".to_owned());
    if user.is_empty()
        || user.len() > 64
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_user", "error_description": "user must be 1-64 characters of A-Z a-z 0-9 - _"})),
        )
            .into_response();
    }
    let token = crate::demo::caller_token(&st.caller_key, &user, 600);
    let mut resp =
        axum::Json(serde_json::json!({"authorization": format!("Bearer {token}")})).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The client-token demo: a stand-in for the Generate Image module using the browser package.
async fn embed(State(st): State<Arc<AppState>>) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Client token demo (imsgate)</title><style>{STYLE}</style>\
<script type=\"module\" src=\"/assets/embed-demo.js\"></script></head>\
<body data-broker=\"{broker}\" data-emulator=\"{emulator}\"><h1>Generate Image (stand-in)</h1>\
<p>The Express Embed SDK cannot load offline, so this page plays the module: it calls the \
<code>ClientAuthProvider</code> from <code>clients/js</code> on startup, before expiry and after a token error.</p>\
<p>State: <b id=\"state\">starting</b> <span id=\"error\" class=\"err\"></span></p>\
<table><tr><td>Token</td><td><code id=\"token\"></code></td></tr>\
<tr><td>userGuid</td><td><code id=\"guid\"></code></td></tr>\
<tr><td>Expires (ms)</td><td><code id=\"expiry\"></code></td></tr>\
<tr><td>Expires in</td><td id=\"countdown\"></td></tr>\
<tr><td>IMS says</td><td id=\"ims\"></td></tr></table>\
<p><button id=\"token-error\">Simulate a token error</button> <button id=\"sign-out\">Sign out</button></p>\
<h2>Events</h2><ul id=\"events\"></ul></body></html>",
        broker = escape(&st.broker_url),
        emulator = escape(&st.emulator_url),
    );
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' {} {}",
        st.broker_url, st.emulator_url
    );
    let mut resp = Html(html).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
