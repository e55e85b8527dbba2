//! The imsgate service: configuration, secrets, token cache and refresher, caller authentication,
//! rate limits, metrics and HTTP.
#![forbid(unsafe_code)]

pub mod admin_auth;
pub mod cache;
pub mod caller_auth;
pub mod clock;
pub mod config;
pub mod consent;
pub mod credentials;
pub mod doctor;
pub mod http;
pub mod ims_client;
pub mod jwks;
pub mod keystore;
pub mod metrics;
pub mod net_error;
pub mod process_metrics;
pub mod ratelimit;
pub mod sealed;
pub mod secrets;
pub mod service;
pub mod service_account;
pub mod storage;
pub mod tls;
pub mod trusted_proxies;
pub mod user_login;
pub mod verified;

pub use service::Broker;
