//! `serve`, `emulator`, `token` and `check`: load, build, run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::config::Config;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig};

pub type CliResult = Result<(), Vec<String>>;

pub(crate) fn load(config: &Path) -> Result<Config, Vec<String>> {
    Config::load(config).map_err(|e| e.problems)
}

pub async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, Vec<String>> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        vec![format!(
            "cannot listen on {addr} for the {what} ({}); choose another address, or port 0 for any free port",
            e.kind()
        )]
    })
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

pub async fn serve(config: &Path) -> CliResult {
    // Before anything else: SIGHUP's default action would end the process.
    let hangups = crate::reload::hangups()?;
    let config = load(config)?;
    let broker = Broker::build(config, Arc::new(SystemClock))?;
    // `imsgate_build_info`: this binary's version and the git commit its build recorded.
    broker.state.metrics.set_build_info(
        env!("CARGO_PKG_VERSION"),
        option_env!("IMSGATE_GIT_COMMIT").unwrap_or("unknown"),
    );
    let listeners = broker.bind().await?;
    let scheme = if broker.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for l in &listeners.public {
        let addr = l.local_addr().map_err(|e| vec![e.to_string()])?;
        let routes = if listeners.admin.is_empty() {
            "all"
        } else {
            "public"
        };
        tracing::info!(%addr, scheme, routes, "imsgate broker listening");
    }
    for l in &listeners.admin {
        let addr = l.local_addr().map_err(|e| vec![e.to_string()])?;
        tracing::info!(%addr, scheme, routes = "operator", "imsgate operator listener");
    }
    let reloader = crate::reload::spawn(hangups, broker.clone());
    let served = broker.serve_listeners(listeners, shutdown_signal()).await;
    reloader.abort();
    served.map_err(|e| vec![format!("server error: {e}")])
}

pub(crate) fn rfc3339(ms: u64) -> String {
    imsgate_broker::http::rfc3339(ms)
}

pub async fn token(config: &Path, credential: &str) -> CliResult {
    let config = load(config)?;
    let broker = Broker::build(config, Arc::new(SystemClock))?;
    match broker.token(credential).await {
        Ok(t) => {
            println!("{}", t.token.secret.expose());
            Ok(())
        }
        Err(e) => Err(vec![format!(
            "cannot obtain a token for {credential:?}: {e}"
        )]),
    }
}

/// The emulator client used when no emulator config is given.
pub fn demo_client(secret: &str, lifetime: u64) -> EmulatorClient {
    EmulatorClient::new(
        "imsgate-demo",
        secret,
        &[
            "openid",
            "AdobeID",
            "session",
            "additional_info",
            "read_organizations",
            "firefly_api",
            "ff_apis",
        ],
        lifetime,
    )
}

pub async fn emulator(
    listen: SocketAddr,
    config: Option<&Path>,
    allow_remote_admin: bool,
) -> CliResult {
    // /__admin has no authentication: on a reachable address anyone could script faults, rotate
    // keys or grant consents, so leaving loopback takes an explicit, clearly named flag.
    if !listen.ip().is_loopback() && !allow_remote_admin {
        return Err(vec![format!(
            "--listen {listen} is not a loopback address, and the emulator's /__admin API has no authentication; listen on 127.0.0.1 (or [::1]), or add --allow-remote-admin if every host that can reach it may control it"
        )]);
    }
    let config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![format!(
                    "{}: cannot read emulator config ({})",
                    path.display(),
                    e.kind()
                )]
            })?;
            toml::from_str::<EmulatorConfig>(&text).map_err(|e| {
                vec![format!(
                    "{}: {}",
                    path.display(),
                    e.to_string().trim_end().replace('\n', " ")
                )]
            })?
        }
        None => EmulatorConfig {
            issuer: None,
            clients: vec![demo_client("demo-secret", 86_399)],
            ..EmulatorConfig::default()
        },
    };
    config.validate()?;
    let running = Emulator::new(config).start(listen).await.map_err(|e| {
        vec![format!(
            "cannot listen on {listen} for the emulator ({}); choose another address",
            e.kind()
        )]
    })?;
    tracing::info!(url = running.base_url(), "IMS emulator listening");
    println!("IMS emulator: {}", running.base_url());
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
