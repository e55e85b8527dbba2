//! A read-only health snapshot of the token cache: per key, the current token's expiry, the last
//! successful fetch and the last IMS failure (code, `x-debug-id`, time). Never a token.

use imsgate_ims::ImsError;

use super::TokenKey;

/// The last failed fetch of a key, as operators need it to talk to Adobe support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// IMS's `error` code, or the failure kind when IMS gave none (a timeout, a refused connection).
    pub code: String,
    /// The HTTP status, when IMS answered.
    pub status: Option<u16>,
    /// IMS's `x-debug-id`.
    pub debug_id: Option<String>,
    /// Wall-clock milliseconds since the epoch.
    pub at_ms: u64,
}

impl FailureRecord {
    pub(super) fn from_error(e: &ImsError, at_ms: u64) -> Self {
        Self {
            code: e
                .error
                .clone()
                .unwrap_or_else(|| format!("{:?}", e.kind).to_ascii_lowercase()),
            status: e.status,
            debug_id: e.debug_id.clone(),
            at_ms,
        }
    }
}

/// What one key's fetches have done since the cache started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRecord {
    pub last_success_ms: Option<u64>,
    pub last_failure: Option<FailureRecord>,
    pub successes: u64,
    pub failures: u64,
}

/// One key's health at the moment of the snapshot.
#[derive(Debug, Clone)]
pub struct KeyHealth {
    pub key: TokenKey,
    /// The held token's expiry (wall-clock ms), whether or not it is still served.
    pub token_expires_at_ms: Option<u64>,
    /// Whether callers are served a token right now without waiting for IMS.
    pub servable: bool,
    /// Whether a fetch is at IMS right now.
    pub in_flight: bool,
    pub record: HealthRecord,
}
