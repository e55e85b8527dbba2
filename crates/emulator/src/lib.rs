//! A local stand-in for Adobe IMS, started in-process by tests (on `127.0.0.1:0`) and by
//! `imsgate demo` / `imsgate emulator`, with an admin API that scripts faults and counts requests.
#![forbid(unsafe_code)]

mod authorize_page;
pub mod config;
pub mod consent;
mod consent_page;
pub mod faults;
mod jwt_exchange;
pub mod keys;
mod routes;
mod server;
mod user_grants;

pub use config::{EmulatedOrg, EmulatedUser, EmulatorClient, EmulatorConfig};
pub use consent::{Consent, IdTokenOptions, IssuerForm, OrgClaim};
pub use faults::{Endpoint, Fault};
pub use server::{Emulator, RunningEmulator};
