//! SIGHUP: reloads the broker's TLS certificate and key instead of ending the process.

use imsgate_broker::Broker;

/// A SIGHUP listener, installed at once so a hang-up during start-up is not fatal either.
pub fn hangups() -> Result<tokio::signal::unix::Signal, Vec<String>> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| vec![format!("cannot install the SIGHUP handler: {e}")])
}

/// Reloads on every SIGHUP until aborted.
pub fn spawn(
    mut hangups: tokio::signal::unix::Signal,
    broker: Broker,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            // File and keystore reads block briefly; keep them off the async workers.
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || b.reload("SIGHUP")).await;
        }
    })
}
