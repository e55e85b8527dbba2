//! The imsgate service: configuration, secrets, token cache and refresher, rate limits, HTTP.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod secrets;
