//! The OpenAPI 3.1 document of the HTTP API and `GET /openapi.json`.
//!
//! The document is not written by hand: every route is registered through utoipa-axum's
//! `OpenApiRouter` with `routes!`, which takes the handler's `#[utoipa::path]` declaration for
//! both the axum route and the document's operation (see `http::documented`). A handler without
//! that declaration cannot be registered, so the document lists exactly the routes served.
//!
//! Adding a route: put `#[utoipa::path(...)]` on the handler (method, path, parameters, request
//! body, every status it can answer with its body; reuse the response shapes in `schemas`), then
//! register it with `.routes(routes!(handler))` in `http::documented`.

pub mod schemas;

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};

/// Security scheme names used in handlers' `security(...)`.
pub const CALLER_TOKEN: &str = "caller_token";
pub const INTERNAL_KEY: &str = "internal_key";
pub const CONSOLE_SESSION: &str = "console_session";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "imsgate",
        description = "Adobe IMS token broker. Errors are JSON `{error, error_description}`; \
browser-facing routes may answer with an HTML page instead.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(schemas::ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this document"),
        (name = "client-token", description = "Tokens for the browser's ClientAuthProvider"),
        (name = "consent", description = "Admin consent (\"Connect with Adobe\") and org-scoped tokens"),
        (name = "user-login", description = "User sign-in and users' tokens"),
        (name = "console", description = "The operator console at `/admin` (HTML forms; a session cookie from `POST /admin/login`)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        let mut caller = Http::new(HttpAuthScheme::Bearer);
        caller.bearer_format = Some("JWT".to_owned());
        caller.description = Some(
            "A short-lived JWT your backend signs for the signed-in user \
             (`[client_token.caller_auth]`)."
                .to_owned(),
        );
        components.add_security_scheme(CALLER_TOKEN, SecurityScheme::Http(caller));
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("The internal API key (`[internal_api] api_key`).".to_owned());
        components.add_security_scheme(INTERNAL_KEY, SecurityScheme::Http(bearer));
        components.add_security_scheme(
            CONSOLE_SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-imsgate-admin",
                "The console session `POST /admin/login` sets (Secure, HttpOnly, SameSite=Strict).",
            ))),
        );
    }
}

/// The rendered document, set once the router is built (the route that serves it is itself part
/// of the document, so it can only be rendered afterwards).
#[derive(Debug, Clone, Default)]
pub struct Served(Arc<OnceLock<Bytes>>);

impl Served {
    pub fn set(&self, doc: &utoipa::openapi::OpenApi) {
        let json = doc.to_json().unwrap_or_default();
        let _ = self.0.set(Bytes::from(json));
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, operation_id = "openapi_document",
    path = "/openapi.json",
    tag = "ops",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document: the routes this instance serves",
         content_type = "application/json", body = Object),
    )
)]
pub async fn document(State(served): State<Served>) -> Response {
    let body = served.0.get().cloned().unwrap_or_default();
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
