//! Scripted faults per endpoint and per-endpoint request counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The emulator endpoints that can be faulted and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Token,
    Keys,
    Discovery,
    Validate,
    /// The admin consent page, `GET` and `POST /consent`.
    Consent,
    /// The Service Account exchange, `/ims/exchange/jwt` and its variants.
    JwtExchange,
    /// The user sign-in page, `GET` and `POST /ims/authorize/v2`.
    Authorize,
    /// `POST /ims/revoke`.
    Revoke,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Self::Token,
        Self::Keys,
        Self::Discovery,
        Self::Validate,
        Self::Consent,
        Self::JwtExchange,
        Self::Authorize,
        Self::Revoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Keys => "keys",
            Self::Discovery => "discovery",
            Self::Validate => "validate",
            Self::Consent => "consent",
            Self::JwtExchange => "jwt_exchange",
            Self::Authorize => "authorize",
            Self::Revoke => "revoke",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What to do to requests for one endpoint. Latency applies first; then either the connection is
/// dropped, or a scripted status and body are returned, or the request proceeds normally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: Option<String>,
    /// Sent as the `Retry-After` header (seconds or an HTTP date) with a scripted status.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Close the connection without a complete response.
    #[serde(default)]
    pub drop_connection: bool,
    /// Apply to this many requests, then clear; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

impl Fault {
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status: Some(status),
            body: Some(body.to_owned()),
            ..Self::default()
        }
    }

    pub fn latency(d: Duration) -> Self {
        Self {
            latency_ms: d.as_millis() as u64,
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    faults: Mutex<HashMap<Endpoint, Fault>>,
    counters: [AtomicU64; Endpoint::ALL.len()],
}

impl FaultBook {
    pub(crate) fn set(&self, endpoint: Endpoint, fault: Fault) {
        self.faults.lock().insert(endpoint, fault);
    }

    pub(crate) fn clear(&self, endpoint: Option<Endpoint>) {
        let mut f = self.faults.lock();
        match endpoint {
            Some(e) => {
                f.remove(&e);
            }
            None => f.clear(),
        }
    }

    /// Counts a request and returns the fault to apply to it, consuming one use of a limited one.
    pub(crate) fn on_request(&self, endpoint: Endpoint) -> Option<Fault> {
        self.counters[endpoint.index()].fetch_add(1, Ordering::SeqCst);
        let mut faults = self.faults.lock();
        let fault = faults.get_mut(&endpoint)?;
        let out = fault.clone();
        if let Some(n) = fault.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(&endpoint);
            }
        }
        Some(out)
    }

    pub(crate) fn count(&self, endpoint: Endpoint) -> u64 {
        self.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    pub(crate) fn counts(&self) -> HashMap<&'static str, u64> {
        Endpoint::ALL
            .iter()
            .map(|e| (e.as_str(), self.count(*e)))
            .collect()
    }

    pub(crate) fn reset_counts(&self) {
        for c in &self.counters {
            c.store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_its_own_counter_and_name() {
        // `ALL` doubles as the counter layout, so it must list each variant once, in order.
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
        let book = FaultBook::default();
        book.on_request(Endpoint::Consent);
        let counts = book.counts();
        assert_eq!(counts.len(), Endpoint::ALL.len());
        assert_eq!(counts["consent"], 1);
        assert_eq!(counts["validate"], 0);
    }
}
