//! The OpenAPI document (`GET /openapi.json`) against the router and against live answers.
//!
//! (a) The router built with every feature configured is walked, and its routes must be exactly
//! the document's operations. (b) A table of requests over real HTTP (emulator and broker) hits
//! every operation for its success and main error cases, and each answer's status, content type
//! and body must be what the document says, checked with the `jsonschema` crate against the
//! document's own schemas.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::config::Config;
use serde_json::Value;
use tower::ServiceExt;

/// A configuration with every feature: client tokens, admin consent, user sign-in.
fn full_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::write_secret(d, "s2s.secret", "s2s-secret");
    support::write_secret(d, "caller.key", support::CALLER_KEY);
    support::write_secret(d, "ewa.secret", "ewa-secret");
    support::write_secret(d, "web.secret", "web-secret");
    support::write_secret(d, "internal.key", "internal-api-key-0123456789abcdefghij");
    support::write_secret(
        d,
        "tokens.key",
        imsgate_broker::keystore::MasterKey::generate_text().expose(),
    );
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[ims]
base_url = "http://127.0.0.1:9"

[credentials.s2s]
type = "oauth_server_to_server"
client_id = "s2s"
client_secret = "file:s2s.secret"
scopes = ["openid"]

[credentials.partner]
type = "enterprise_web_app"
client_id = "ewa"
client_secret = "file:ewa.secret"
scopes = ["openid", "AdobeID", "read_organizations"]
default_redirect_uri = "http://127.0.0.1:8080/consent/callback"

[credentials.web]
type = "oauth_web_app"
client_id = "web"
client_secret = "file:web.secret"
scopes = ["openid", "AdobeID", "offline_access"]
default_redirect_uri = "http://127.0.0.1:8080/user/callback"

[client_token]
credential = "s2s"
token_id_namespace = "{ns}"
allowed_origins = ["https://app.partner.test"]

[client_token.caller_auth]
issuer = "{iss}"
audience = "{aud}"
hs256_secret = "file:caller.key"

[consent]
credential = "partner"
public_url = "http://127.0.0.1:8080"
return_to_origins = ["https://app.partner.test"]
development_mode = true

[user_login]
credential = "web"
public_url = "http://127.0.0.1:8080"
return_to_origins = ["https://app.partner.test"]
token_encryption_keys = ["file:tokens.key"]
development_mode = true

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "imsgate.sqlite"
"#,
        ns = support::NAMESPACE,
        iss = support::ISSUER,
        aud = support::AUDIENCE,
    );
    let config = Config::parse(&text, d).unwrap_or_else(|e| panic!("{e:?}"));
    (dir, config)
}

/// `(METHOD, path)` of every route in an axum router, read from its `Debug` form (axum has no
/// public way to list routes). Each route's `allow_header` lists its methods; `HEAD` comes with
/// `GET` and is not an operation of its own.
fn router_routes(router: &axum::Router) -> BTreeSet<(String, String)> {
    let full = format!("{router:?}");
    // Only the path router: the fallback router that follows numbers its routes from 0 as well.
    let debug = full
        .split_once("path_router: ")
        .and_then(|(_, rest)| rest.split_once("fallback_router: "))
        .map(|(paths, _)| paths.to_owned())
        .unwrap_or_else(|| panic!("unexpected Debug form of axum's Router: {full}"));
    let id_path = regex::Regex::new(r#"RouteId\((\d+)\): "([^"]*)""#).unwrap();
    let id_methods = regex::Regex::new(
        r#"RouteId\((\d+)\): MethodRouter\(MethodRouter \{.*?allow_header: Bytes\(b"([A-Z,]*)"\)"#,
    )
    .unwrap();
    let paths: std::collections::HashMap<String, String> = id_path
        .captures_iter(&debug)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect();
    let mut routes = BTreeSet::new();
    for c in id_methods.captures_iter(&debug) {
        let path = paths
            .get(&c[1])
            .unwrap_or_else(|| panic!("route id {} has no path in {debug}", &c[1]));
        for m in c[2].split(',').filter(|m| *m != "HEAD") {
            routes.insert((m.to_owned(), path.clone()));
        }
    }
    assert!(
        routes.len() >= paths.len() && !paths.is_empty(),
        "could not read the router's routes from its Debug form (has axum's format changed?): {debug}"
    );
    routes
}

fn document_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

async fn get_document(router: axum::Router) -> Value {
    let resp = router
        .oneshot(
            axum::http::Request::get("/openapi.json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn every_route_is_documented_and_every_operation_is_served() {
    let (_dir, config) = full_config();
    let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
    let (split, _) = imsgate_broker::http::documented(broker.state.clone());
    let router = split.into_one();
    let routes = router_routes(&router);
    let doc = get_document(broker.router()).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = document_operations(&doc);
    let undocumented: Vec<_> = routes.difference(&ops).collect();
    let unrouted: Vec<_> = ops.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes without an operation in /openapi.json (register them with \
         `.routes(routes!(handler))` and a `#[utoipa::path]` on the handler, see \
         crates/broker/src/http/openapi/mod.rs): {undocumented:?}; operations not routed: {unrouted:?}"
    );
    // Every feature is configured, so every route the product has is here.
    for must in [
        ("GET", "/api/client-token"),
        ("POST", "/api/connections"),
        ("POST", "/api/users/{user}/token"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            ops.contains(&(must.0.to_owned(), must.1.to_owned())),
            "{must:?}"
        );
    }
    // Each operation has a unique id, a 2xx or 3xx answer, and every error answer is described.
    let mut ids = BTreeSet::new();
    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{method} {path} documents no success"
        );
        for (status, r) in responses {
            assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()));
            if status == "429" || status == "503" {
                assert!(
                    r["headers"]["Retry-After"].is_object(),
                    "{method} {path} {status} documents no Retry-After"
                );
            }
        }
    }
}

/// One request and the status it must get; its answer is then checked against the document.
struct Case {
    method: &'static str,
    /// The operation's path template in the document.
    template: &'static str,
    /// The path actually requested.
    path: String,
    auth: Auth,
    body: Option<(&'static str, String)>,
    status: u16,
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    Bearer(&'static str),
    Basic(&'static str),
}

fn case(method: &'static str, template: &'static str, path: impl Into<String>) -> Case {
    Case {
        method,
        template,
        path: path.into(),
        auth: Auth::None,
        body: None,
        status: 200,
    }
}

impl Case {
    fn auth(mut self, a: Auth) -> Self {
        self.auth = a;
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(("application/json", body.to_string()));
        self
    }
    fn raw(mut self, content_type: &'static str, body: &str) -> Self {
        self.body = Some((content_type, body.to_owned()));
        self
    }
    fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
}

/// Sends each case to `base` and checks the answer against the document that broker serves:
/// the status is documented for the operation, the content type is one documented for it, the
/// documented headers are present, and a JSON body validates against the documented schema.
async fn check_cases(base: &str, cases: Vec<Case>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for c in cases {
        let label = format!("{} {} ({})", c.method, c.path, c.template);
        let mut req = http.request(c.method.parse().unwrap(), format!("{base}{}", c.path));
        req = match c.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(p) => req.basic_auth("admin", Some(p)),
        };
        if let Some((ct, body)) = &c.body {
            req = req.header("content-type", *ct).body(body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            status,
            c.status,
            "{label}: {}",
            String::from_utf8_lossy(&body)
        );
        let op = &doc["paths"][c.template][c.method.to_lowercase()];
        assert!(op.is_object(), "{label}: no such operation in the document");
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{label}: status {status} is not documented"
        );
        for name in documented["headers"]
            .as_object()
            .map(|h| h.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            // Cookies and redirects are always sent; the others are documented where sent.
            assert!(
                headers.contains_key(name.as_str()),
                "{label}: documented header {name} missing"
            );
        }
        let Some(content) = documented["content"].as_object() else {
            assert!(body.is_empty(), "{label}: body without documented content");
            continue;
        };
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct.split(';').next().unwrap().trim();
        let media = content.get(essence).unwrap_or_else(|| {
            panic!(
                "{label}: content type {ct:?} is not among {:?}",
                content.keys()
            )
        });
        if essence == "application/json" {
            let instance: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{label}: body is not JSON ({e})"));
            // The document's components under a root whose schema is the documented one, so
            // `#/components/schemas/...` references resolve.
            let schema = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [media["schema"]],
            });
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{label}: documented schema does not compile: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{label}: {instance} does not match: {errors:?}"
            );
        }
    }
}

#[tokio::test]
async fn client_token_and_ops_answers_match_the_document() {
    let h = support::Harness::start(support::Options {
        per_user_per_minute: 2,
        ..Default::default()
    })
    .await;
    h.wait_ready().await;
    let ok = support::caller("user-ok");
    let limited = support::caller("user-limited");
    for _ in 0..2 {
        assert_eq!(h.client_token(&limited).await.status(), 200);
    }
    let ok: &'static str = Box::leak(ok.into_boxed_str());
    let limited: &'static str = Box::leak(limited.into_boxed_str());
    let t = "/api/client-token";
    check_cases(
        &h.url,
        vec![
            case("GET", "/healthz", "/healthz"),
            case("GET", "/readyz", "/readyz"),
            case("GET", "/metrics", "/metrics"),
            case("GET", "/openapi.json", "/openapi.json"),
            case("GET", t, t).auth(Auth::Bearer(ok)),
            case("GET", t, t).status(401),
            case("GET", t, t)
                .auth(Auth::Bearer("not-a-jwt"))
                .status(401),
            case("GET", t, t).auth(Auth::Bearer(limited)).status(429),
        ],
    )
    .await;
}

#[tokio::test]
async fn consent_answers_match_the_document() {
    use support::consent::*;
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-linked", ORG_A, "allow").await;
    h.consent("acct-gone", ORG_B, "allow").await;
    let connect = h.connect_url("acct-open").await;
    let ticket = connect.rsplit('/').next().unwrap().to_owned();
    let key = Auth::Bearer(INTERNAL_KEY);
    let start = json_start("account_id", "acct-1");
    let (c, one, org) = (
        "/api/connections",
        "/api/connections/{account_id}",
        "/api/orgs/{org_id}/token",
    );
    check_cases(
        &h.url,
        vec![
            case("POST", c, c).auth(key).json(start.clone()).status(201),
            case("POST", c, c).json(start.clone()).status(401),
            case("POST", c, c)
                .auth(key)
                .json(serde_json::json!({"account_id": "a"}))
                .status(400),
            case("POST", c, c)
                .auth(key)
                .json(json_start("account_id", "bad id!"))
                .status(400),
            case("POST", c, c)
                .auth(key)
                .raw("text/plain", &start.to_string())
                .status(415),
            case("GET", c, c).auth(key),
            case("GET", c, c).status(401),
            case("GET", one, "/api/connections/acct-linked").auth(key),
            case("GET", one, "/api/connections/acct-never").auth(key),
            case("GET", one, "/api/connections/bad!id")
                .auth(key)
                .status(400),
            case("DELETE", one, "/api/connections/acct-gone").auth(key),
            case("DELETE", one, "/api/connections/acct-never")
                .auth(key)
                .status(404),
            case("DELETE", one, "/api/connections/acct-1").status(401),
            case("POST", org, format!("/api/orgs/{ORG_A}/token")).auth(key),
            case("POST", org, "/api/orgs/NOBODY0000@AdobeOrg/token")
                .auth(key)
                .status(404),
            case("POST", org, "/api/orgs/bad!org/token")
                .auth(key)
                .status(400),
            case("POST", org, format!("/api/orgs/{ORG_A}/token")).status(401),
            case("GET", "/connect/{ticket}", format!("/connect/{ticket}")).status(303),
            case("GET", "/connect/{ticket}", format!("/connect/{ticket}")).status(410),
            case("GET", "/consent/callback", "/consent/callback?state=x").status(400),
            // The console: an API client without a session is refused; the sign-in form answers
            // a wrong password with 401 and the right one with a session and a redirect.
            case("GET", "/admin", "/admin").status(401),
            case("GET", "/admin", "/admin")
                .auth(Auth::Basic(INTERNAL_KEY))
                .status(401),
            case("POST", "/admin/login", "/admin/login")
                .raw("application/x-www-form-urlencoded", "password=wrong")
                .status(401),
            case("POST", "/admin/login", "/admin/login")
                .raw(
                    "application/x-www-form-urlencoded",
                    &format!("password={INTERNAL_KEY}"),
                )
                .status(303),
            case("POST", "/admin/unlink", "/admin/unlink")
                .raw(
                    "application/x-www-form-urlencoded",
                    "csrf=x&account_id=acct-1",
                )
                .status(401),
            case("POST", "/admin/refresh", "/admin/refresh")
                .raw("application/x-www-form-urlencoded", "csrf=x&credential=x")
                .status(401),
        ],
    )
    .await;
}

fn json_start(field: &str, value: &str) -> Value {
    serde_json::json!({field: value, "return_to": "https://app.partner.test/settings"})
}

#[tokio::test]
async fn user_login_answers_match_the_document() {
    use support::user_login::*;
    let h = UserHarness::start(UserOptions::default()).await;
    h.sign_in("user-1", ADA).await;
    h.sign_in("user-2", GRACE).await;
    let login = h.login_url("user-3").await;
    let ticket = login.rsplit('/').next().unwrap().to_owned();
    let key = Auth::Bearer(INTERNAL_KEY);
    let (s, t) = ("/api/user-logins", "/api/users/{user}/token");
    check_cases(
        &h.url,
        vec![
            case("POST", s, s)
                .auth(key)
                .json(json_start("user", "user-9"))
                .status(201),
            case("POST", s, s)
                .json(json_start("user", "user-9"))
                .status(401),
            case("POST", s, s)
                .auth(key)
                .json(json_start("user", ""))
                .status(400),
            case("POST", s, s)
                .auth(key)
                .raw("application/json", "{")
                .status(400),
            case("POST", t, "/api/users/user-1/token").auth(key),
            case("POST", t, "/api/users/nobody/token")
                .auth(key)
                .status(404),
            case("POST", t, "/api/users/bad!user/token")
                .auth(key)
                .status(400),
            case("POST", t, "/api/users/user-1/token").status(401),
            case("DELETE", t, "/api/users/user-2/token").auth(key),
            case("DELETE", t, "/api/users/user-2/token")
                .auth(key)
                .status(404),
            case("GET", "/login/{ticket}", format!("/login/{ticket}")).status(303),
            case("GET", "/login/{ticket}", format!("/login/{ticket}")).status(410),
            case("GET", "/user/callback", "/user/callback?state=x").status(400),
        ],
    )
    .await;
}

#[tokio::test]
async fn unavailable_answers_match_the_document() {
    // IMS refuses the broker's secret: no client token can be served.
    let h = support::Harness::start(support::Options {
        broker_secret: "not-the-secret".to_owned(),
        ..Default::default()
    })
    .await;
    let caller: &'static str = Box::leak(support::caller("user-1").into_boxed_str());
    let t = "/api/client-token";
    check_cases(
        &h.url,
        vec![
            case("GET", "/readyz", "/readyz").status(503),
            case("GET", t, t).auth(Auth::Bearer(caller)).status(503),
        ],
    )
    .await;
}

#[tokio::test]
async fn oversized_and_unsupported_bodies_match_the_document() {
    use support::consent::*;
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let big = format!("{{\"account_id\": \"{}\"}}", "a".repeat(2 << 20));
    let c = "/api/connections";
    check_cases(
        &h.url,
        vec![
            case("POST", c, c)
                .auth(Auth::Bearer(INTERNAL_KEY))
                .raw("application/json", &big)
                .status(413),
            case("POST", c, c)
                .auth(Auth::Bearer(INTERNAL_KEY))
                .raw("application/x-www-form-urlencoded", "account_id=a")
                .status(415),
        ],
    )
    .await;
}
