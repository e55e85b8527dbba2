//! The JSON shapes of the HTTP API as OpenAPI schemas. Handlers that build their bodies with
//! `json!` are checked against these by the live-response test (`tests/openapi.rs`), so a body
//! that drifts from its schema fails there.

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a stable machine-readable code and a sentence for people.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable code, for example `invalid_token`, `rate_limited`, `not_linked`.
    #[schema(pattern = "^[a-z_]+$")]
    pub error: String,
    /// What went wrong and what to do; never contains secrets.
    pub error_description: String,
}

/// `GET /healthz` and `GET /readyz` when all is well.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub status: StatusValue,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusValue {
    Ok,
    Ready,
}

/// `GET /api/client-token`: the shape the Express Embed SDK's `ClientAuthProvider` expects.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientToken {
    /// The IMS access token of the configured credential, shared by all callers.
    pub client_access_token: String,
    /// Its expiry, milliseconds since the Unix epoch.
    pub token_expiry_timestamp_ms: u64,
    /// Lowercase hyphenated UUIDv5 of the caller's `sub`; pass it to the SDK as `userGuid`.
    #[schema(
        format = "uuid",
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    )]
    pub token_id: String,
}

/// `POST /api/connections` and `POST /api/user-logins`: a one-time URL for the browser.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectStarted {
    /// Send the browser here; it works once, until `expires_at`.
    #[schema(format = "uri")]
    pub connect_url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub expires_at_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStarted {
    /// Send the browser here; it works once, until `expires_at`.
    #[schema(format = "uri")]
    pub login_url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub expires_at_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Linked,
    NeedsReauthorization,
    Unlinked,
}

/// An account's link to an Adobe org. An account never linked reads as `unlinked` with nulls.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub account_id: String,
    pub status: LinkStatus,
    #[schema(required = true)]
    pub org_id: Option<String>,
    #[schema(required = true)]
    pub technical_account: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub linked_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub unlinked_at: Option<String>,
}

/// `GET /api/connections`: every link, most recently changed first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    pub connections: Vec<Link>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Bearer,
}

/// `POST /api/orgs/{org_id}/token`: an org-scoped IMS access token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgToken {
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds left.
    pub expires_in: u64,
    pub expires_at_ms: u64,
    pub org_id: String,
}

/// `POST /api/users/{user}/token`: the user's current IMS access token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserToken {
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds left.
    pub expires_in: u64,
    pub expires_at_ms: u64,
    /// The IMS user the token acts for.
    pub ims_user_id: String,
    /// The granted scopes, comma-separated as IMS writes them.
    pub scope: String,
}

/// `DELETE /api/users/{user}/token`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub revoked: bool,
    /// Whether IMS confirmed the revocation (the grant is forgotten here either way).
    pub revoked_at_ims: bool,
}

/// `POST /admin/login`'s form.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleLoginForm {
    /// The internal API key.
    pub password: String,
}

/// A console action's form: the session's CSRF token, plus what the action names.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleActionForm {
    /// The CSRF token the console page carries for this session.
    pub csrf: String,
    /// `POST /admin/unlink`: the account to unlink.
    pub account_id: Option<String>,
    /// `POST /admin/revoke-sign-in`: the user whose sign-in to revoke.
    pub user: Option<String>,
    /// `POST /admin/refresh`: the credential whose token to fetch now.
    pub credential: Option<String>,
    /// `POST /admin/refresh`: the org, for an org-scoped token (empty for the credential's own).
    pub org: Option<String>,
}
