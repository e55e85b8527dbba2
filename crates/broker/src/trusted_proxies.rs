//! `[server] trusted_proxies`: the peers whose forwarded headers (`X-Forwarded-For`,
//! `X-Request-Id`) are believed, and the client-address rule applied to them.
//!
//! Nothing is trusted by default: with an empty list the client is the TCP peer and every
//! forwarded header is ignored. `X-Forwarded-Proto`, `X-Forwarded-Host` and RFC 7239 `Forwarded`
//! are never read, from anyone, and `Host` never builds a URL (the console only compares a form's
//! `Origin` with it): absolute URLs come only from the configured `public_url`, so there is
//! nothing a proxy could usefully say about scheme or host.

use std::net::IpAddr;

use ipnet::IpNet;

/// The configured proxy networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses every entry, collecting one message per bad entry (with its index).
    pub fn parse(entries: &[String]) -> Result<Self, Vec<(usize, String)>> {
        let mut nets = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match parse_entry(e) {
                Ok(n) => nets.push(n),
                Err(msg) => problems.push((i, msg)),
            }
        }
        if problems.is_empty() {
            Ok(Self { nets })
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 form) is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` carrying `forwarded_for` (the
    /// `X-Forwarded-For` values in order). From an untrusted peer that is the peer. From a
    /// trusted one it is the right-most address that is not itself a trusted proxy: entries to
    /// its left were written by the client or by proxies we do not know, so they prove nothing.
    /// An unparseable entry stops the walk at the last trusted hop.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for header in forwarded_for.rev() {
            let Ok(header) = std::str::from_utf8(header) else {
                return client;
            };
            for entry in header.rsplit(',') {
                let Some(ip) = parse_forwarded_ip(entry.trim()) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an IPv4 or IPv6 address, or `[v6]` / `v4:port` as some proxies
/// write it.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// `10.0.0.0/8`, `::1/128` or a bare address (a single host). Host bits set under the prefix
/// are refused rather than silently cleared: `10.0.0.1/8` is more likely a typo than a network.
fn parse_entry(s: &str) -> Result<IpNet, String> {
    if s.trim() != s || s.is_empty() {
        return Err(format!(
            "{s:?} is not an address or network like \"10.0.0.0/8\" or \"127.0.0.1\""
        ));
    }
    if !s.contains('/') {
        return s
            .parse::<IpAddr>()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .map_err(|_| {
                format!("{s:?} is not an address or network like \"10.0.0.0/8\" or \"127.0.0.1\"")
            });
    }
    let net: IpNet = s.parse().map_err(|_| {
        format!(
            "{s:?} is not a network like \"10.0.0.0/8\" or \"fd00::/8\" (address/prefix length)"
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set below the /{len} prefix; write the network, {:?}",
            net.trunc().to_string(),
            len = net.prefix_len()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_are_parsed_strictly() {
        for (entry, ok) in [
            ("127.0.0.1", true),
            ("127.0.0.1/32", true),
            ("10.0.0.0/8", true),
            ("::1", true),
            ("fd00::/8", true),
            ("0.0.0.0/0", true),
            ("10.0.0.1/8", false),
            ("10.0.0.0/33", false),
            ("10.0.0.0/", false),
            ("10.0.0", false),
            ("localhost", false),
            (" 10.0.0.0/8", false),
            ("", false),
            ("10.0.0.0/8,", false),
            ("fd00::1/8", false),
        ] {
            let r = TrustedProxies::parse(&[entry.to_string()]);
            assert_eq!(r.is_ok(), ok, "{entry:?}: {r:?}");
        }
        let err = TrustedProxies::parse(&["10.0.0.0/8".into(), "10.1.2.3/8".into()]).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].0 == 1 && err[0].1.contains("\"10.0.0.0/8\""),
            "{err:?}"
        );
    }

    #[test]
    fn the_config_names_each_bad_entry() {
        let text = "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.1/8\", \"nginx\"]\n";
        let err = crate::config::Config::parse(text, std::path::Path::new("."))
            .unwrap_err()
            .problems;
        let ours: Vec<&String> = err
            .iter()
            .filter(|p| p.starts_with("server.trusted_proxies"))
            .collect();
        assert_eq!(ours.len(), 2, "{err:?}");
        assert!(
            ours[0].starts_with("server.trusted_proxies[1]: "),
            "{ours:?}"
        );
        assert!(ours[0].contains("\"10.0.0.0/8\""), "{ours:?}");
        assert!(
            ours[1].starts_with("server.trusted_proxies[2]: "),
            "{ours:?}"
        );
        let ok = crate::config::Config::parse("[server]\n", std::path::Path::new("."));
        if let Ok(c) = ok {
            assert!(
                c.server.trusted_proxies.is_empty(),
                "nothing trusted by default"
            );
            assert!(c.server.access_log);
        }
    }

    #[test]
    fn client_ip_is_the_right_most_untrusted_forwarded_address() {
        let t = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let none: &[&str] = &[];
        for (peer, xff, want) in [
            // An untrusted peer's header is ignored entirely.
            ("198.51.100.1", &["203.0.113.9"][..], "198.51.100.1"),
            // Trusted peer, no header: the peer.
            ("127.0.0.1", none, "127.0.0.1"),
            ("127.0.0.1", &["203.0.113.9"], "203.0.113.9"),
            // Spoofed entries on the left are skipped over.
            ("127.0.0.1", &["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
            // Trusted hops on the right are walked through.
            (
                "127.0.0.1",
                &["203.0.113.9, 10.1.1.1, 10.2.2.2"],
                "203.0.113.9",
            ),
            // Several header lines are one list.
            (
                "127.0.0.1",
                &["1.2.3.4", "203.0.113.9,10.1.1.1"],
                "203.0.113.9",
            ),
            // All trusted: the left-most one seen.
            ("127.0.0.1", &["10.3.3.3, 10.1.1.1"], "10.3.3.3"),
            // Garbage stops the walk at the last trusted hop.
            ("127.0.0.1", &["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
            ("127.0.0.1", &["not-an-ip"], "127.0.0.1"),
            ("127.0.0.1", &[""], "127.0.0.1"),
            // Ports and brackets as some proxies write them.
            ("127.0.0.1", &["203.0.113.9:4711"], "203.0.113.9"),
            ("127.0.0.1", &["[2001:db8::1]"], "2001:db8::1"),
            ("127.0.0.1", &["2001:db8::1"], "2001:db8::1"),
            // An IPv4-mapped peer counts as its IPv4 form.
            ("::ffff:127.0.0.1", &["203.0.113.9"], "203.0.113.9"),
        ] {
            let peer: IpAddr = peer.parse().unwrap();
            let got = t.client_ip(peer, xff.iter().map(|s| s.as_bytes()));
            assert_eq!(
                got.to_string(),
                want,
                "peer {peer}, X-Forwarded-For {xff:?}"
            );
        }
        let nobody = TrustedProxies::default();
        let got = nobody.client_ip(
            "127.0.0.1".parse().unwrap(),
            ["203.0.113.9".as_bytes()].into_iter(),
        );
        assert_eq!(
            got.to_string(),
            "127.0.0.1",
            "nothing is trusted by default"
        );
    }
}
