//! Binding a configured address: an IP, or a host name bound on every address it resolves to.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::ListenAddr;

/// Binds every address `addr` resolves to. With port 0 the first address picks a free port and
/// the others use the same one. An address the machine does not have (an IPv6 `localhost` where
/// IPv6 is off) is skipped with a warning while another one binds; any other failure is an error.
/// `what` names the listener in messages (`server.listen`).
pub async fn bind(addr: &ListenAddr, what: &str) -> Result<Vec<TcpListener>, String> {
    let resolved = addr.resolve().await.map_err(|e| format!("{what}: {e}"))?;
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut port = addr.port;
    let mut skipped: Vec<(SocketAddr, io::Error)> = Vec::new();
    for a in resolved {
        let a = SocketAddr::new(a.ip(), port);
        match TcpListener::bind(a).await {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                }
                listeners.push(l);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => skipped.push((a, e)),
            Err(e) => {
                return Err(format!(
                    "{what}: cannot listen on {a} ({}){}; choose another address, or port 0 for any free port",
                    e.kind(),
                    if a.to_string() != addr.to_string() {
                        format!(", an address of {addr}")
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    if listeners.is_empty() {
        let tried: Vec<String> = skipped.iter().map(|(a, _)| a.to_string()).collect();
        return Err(format!(
            "{what}: cannot listen on {addr}: none of its addresses ({}) exists on this machine; use an address the machine has, such as 127.0.0.1",
            tried.join(", ")
        ));
    }
    for (a, e) in skipped {
        tracing::warn!(address = %a, error = %e, "{what}: {addr} resolves to an address this machine does not have; listening on the others");
    }
    Ok(listeners)
}
