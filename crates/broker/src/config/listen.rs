//! `[server]` addresses and TLS files: `listen`/`admin_listen` as `host:port` (an IP address or
//! a host name resolved at start), and the `tls_cert`/`tls_key` pair.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::Problems;
use crate::secrets::SecretRef;

/// An address to listen on, as written: an IP address or a host name, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// An IP address (IPv6 without brackets) or a host name.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl ListenAddr {
    /// `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not an address like 127.0.0.1:8080, [::1]:8080 or localhost:8080 (host and port)"
            )
        };
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a.into());
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.starts_with('[') || host.contains(':') {
            // An IPv6 address needs brackets and must parse, so a typo is not taken as a name.
            return Err(bad());
        }
        if host.is_empty()
            || host.len() > 253
            || !host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The addresses to bind: the IP itself, or every address the name resolves to (deduplicated,
    /// in resolver order).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let found = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                format!(
                    "{self}: cannot resolve {:?} ({e}); use an IP address or a name in /etc/hosts or DNS",
                    self.host
                )
            })?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(format!(
                "{self}: {:?} resolves to no address; use an IP address",
                self.host
            ));
        }
        Ok(addrs)
    }
}

/// The listener's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then intermediates.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1), read like every other secret.
    pub key: SecretRef,
    /// How often the files are checked for a new pair.
    pub check_interval: std::time::Duration,
}

pub(super) fn listen_addr(
    p: &mut Problems,
    at: &str,
    value: Option<&str>,
    default: &str,
) -> ListenAddr {
    let s = value.unwrap_or(default);
    ListenAddr::parse(s).unwrap_or_else(|e| {
        p.push(at, e);
        ListenAddr::parse(default)
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)).into())
    })
}

/// Both or neither of `tls_cert` and `tls_key`.
pub(super) fn tls_files(
    p: &mut Problems,
    cert: Option<&str>,
    key: Option<&str>,
    check_interval_ms: Option<u64>,
    base: &Path,
) -> Option<TlsFiles> {
    match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            p.push(
                "server.tls_key",
                "tls_cert is set but tls_key is not: set both (the certificate chain and its private key, e.g. tls_key = \"file:/etc/imsgate/tls.key\") or neither for plain HTTP",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                "server.tls_cert",
                "tls_key is set but tls_cert is not: set both (tls_cert = \"/etc/imsgate/tls.crt\", a PEM chain) or neither for plain HTTP",
            );
            None
        }
        (Some(cert), Some(key)) => {
            let cert = cert.strip_prefix("file:").unwrap_or(cert);
            if cert.is_empty() {
                p.push(
                    "server.tls_cert",
                    "is empty: give the path of the PEM certificate chain",
                );
                return None;
            }
            let cert = PathBuf::from(cert);
            let cert = if cert.is_relative() {
                base.join(cert)
            } else {
                cert
            };
            let key = super::parse_secret(p, "server.tls_key", key, base)?;
            let check_interval = match check_interval_ms {
                None => 5_000,
                Some(ms) if (100..=3_600_000).contains(&ms) => ms,
                Some(ms) => {
                    p.push(
                        "server.tls_check_interval_ms",
                        format!("{ms} is out of range; use 100 to 3600000 ms (default 5000)"),
                    );
                    5_000
                }
            };
            Some(TlsFiles {
                cert,
                key,
                check_interval: std::time::Duration::from_millis(check_interval),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_table() {
        let cases: &[(&str, Option<(&str, u16)>)] = &[
            ("127.0.0.1:8080", Some(("127.0.0.1", 8080))),
            ("0.0.0.0:0", Some(("0.0.0.0", 0))),
            ("[::1]:443", Some(("::1", 443))),
            ("localhost:8080", Some(("localhost", 8080))),
            (
                "broker.internal.example:9000",
                Some(("broker.internal.example", 9000)),
            ),
            ("localhost", None),
            ("localhost:", None),
            (":8080", None),
            ("localhost:99999", None),
            ("::1:8080", None),
            ("[::1:8080", None),
            ("bad host:80", None),
            ("a..b:80", None),
            ("http://localhost:80", None),
        ];
        for (input, want) in cases {
            let got = ListenAddr::parse(input).ok();
            let got = got.as_ref().map(|a| (a.host.as_str(), a.port));
            assert_eq!(got, *want, "{input}");
        }
        assert_eq!(
            ListenAddr::parse("[::1]:443").unwrap().to_string(),
            "[::1]:443"
        );
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let addrs = ListenAddr::parse("localhost:0")
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn unresolvable_name_is_a_clear_error() {
        let e = ListenAddr::parse("no-such-host.invalid:8080")
            .unwrap()
            .resolve()
            .await
            .unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }
}
