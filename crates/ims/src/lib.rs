//! Sans-I/O Adobe IMS protocol: credential types, request builders, response and error parsing.
//!
//! Invariant: this crate performs no I/O and never reads the clock. Callers pass `now` in and carry
//! the bytes themselves, so every rule here is testable with plain values.
#![forbid(unsafe_code)]

pub mod certificate;
pub mod claims;
pub mod consent;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod id_token;
pub mod jwk;
pub mod redirect_rules;
pub mod retry_after;
pub mod return_to;
pub mod s2s;
pub mod scopes;
pub mod secret;
pub mod service_account;
pub mod strict_json;
pub mod token;
pub mod user_oauth;

pub use endpoints::ImsEndpoints;
pub use error::{ImsError, ImsErrorKind};
pub use http::{HttpRequest, HttpResponse};
pub use s2s::ClientCredentialsRequest;
pub use scopes::ScopeSet;
pub use secret::SecretString;
pub use token::{AccessToken, ExpiresInUnit};
