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
    let (router, _) = imsgate_broker::http::documented(broker.state.clone());
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
