//! `imsgate demo`: the emulator and the broker in one process on loopback, with a throwaway data
//! directory holding generated secrets, and ready-to-paste commands.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use imsgate_broker::Broker;
use imsgate_broker::clock::{Clock, SystemClock, unix_ms};
use imsgate_broker::config::Config;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig};
use rand::RngCore;

use crate::run::{CliResult, bind, demo_client, shutdown_signal};

const ISSUER: &str = "https://partner.example/demo";
const AUDIENCE: &str = "imsgate";

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_secret(dir: &Path, name: &str, value: &str) -> Result<(), Vec<String>> {
    let path = dir.join(name);
    let err = |e: std::io::Error| {
        vec![format!(
            "cannot write {} ({}): check the temp directory",
            path.display(),
            e.kind()
        )]
    };
    std::fs::write(&path, value).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

/// The Enterprise Web App client the demo's consent flow uses.
pub const WEB_APP_CLIENT: &str = "imsgate-demo-webapp";
/// The OAuth Web App client the demo's user sign-in uses.
pub const USER_APP_CLIENT: &str = "imsgate-demo-userapp";

/// The broker config the demo writes, pointing at the emulator; with `tls`, serving
/// `tls.crt`/`tls.key` from the data directory over https.
pub fn demo_config(
    emulator_url: &str,
    listen: SocketAddr,
    namespace: uuid::Uuid,
    app_url: &str,
    tls: bool,
) -> String {
    let scheme = if tls { "https" } else { "http" };
    let tls_lines = if tls {
        "tls_cert = \"tls.crt\"\ntls_key = \"file:tls.key\"\n"
    } else {
        ""
    };
    // Dots escaped for the regex, then backslashes doubled for the TOML string.
    let pattern = format!(
        "{scheme}://{}/consent/.*",
        listen.to_string().replace('.', "\\\\.")
    );
    format!(
        r#"# Written by `imsgate demo`: a broker wired to the local IMS emulator.
[server]
listen = "{listen}"
{tls_lines}
[ims]
base_url = "{emulator_url}"

[credentials.client-entitlement]
type = "oauth_server_to_server"
client_id = "imsgate-demo"
client_secret = "file:client_secret"
scopes = ["openid", "AdobeID", "firefly_api", "ff_apis"]

[client_token]
credential = "client-entitlement"
token_id_namespace = "{namespace}"
allowed_origins = ["{app_url}", "http://localhost:5173", "http://127.0.0.1:5173"]

[client_token.caller_auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
hs256_secret = "file:caller_hs256_key"

[credentials.partner-web-app]
type = "enterprise_web_app"
client_id = "{WEB_APP_CLIENT}"
client_secret = "file:web_app_secret"
scopes = ["openid", "AdobeID", "read_organizations"]
default_redirect_uri = "{scheme}://{listen}/consent/callback"
redirect_uri_patterns = ["{pattern}"]

[consent]
credential = "partner-web-app"
public_url = "{scheme}://{listen}"
consent_url = "{emulator_url}/consent"
return_to_origins = ["{app_url}"]
# Plain-http loopback redirect URIs (without --tls) are for local runs only.
development_mode = true

[credentials.user-app]
type = "oauth_web_app"
client_id = "{USER_APP_CLIENT}"
client_secret = "file:user_app_secret"
scopes = ["openid", "AdobeID", "offline_access"]
default_redirect_uri = "{scheme}://{listen}/user/callback"

[user_login]
credential = "user-app"
public_url = "{scheme}://{listen}"
return_to_origins = ["{app_url}"]
token_encryption_keys = ["file:user_tokens.key"]
development_mode = true

[internal_api]
api_key = "file:internal_api_key"

[storage]
sqlite_path = "imsgate.sqlite"
"#
    )
}

/// A caller token as the partner's backend would mint it for a signed-in user.
pub fn caller_token(key: &str, sub: &str, lifetime_secs: u64) -> String {
    let now = unix_ms(SystemClock.now()) / 1000;
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + lifetime_secs,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap_or_default()
}

pub async fn run(
    listen: SocketAddr,
    emulator_listen: SocketAddr,
    app_listen: SocketAddr,
    lifetime: u64,
    tls: bool,
) -> CliResult {
    // The demo's emulator has the same unauthenticated /__admin API as `imsgate emulator`.
    if !emulator_listen.ip().is_loopback() {
        return Err(vec![format!(
            "--emulator-listen {emulator_listen} is not a loopback address, and the emulator's /__admin API has no authentication; use 127.0.0.1:0 (run `imsgate emulator --allow-remote-admin` for a reachable emulator)"
        )]);
    }
    let dir = tempfile::Builder::new()
        .prefix("imsgate-demo-")
        .tempdir()
        .map_err(|e| {
            vec![format!(
                "cannot create a temporary directory ({}); set TMPDIR to a writable directory",
                e.kind()
            )]
        })?;
    let client_secret = random_secret();
    let caller_key = random_secret();
    let web_app_secret = random_secret();
    let internal_key = random_secret();
    let user_app_secret = random_secret();
    write_secret(dir.path(), "client_secret", &client_secret)?;
    write_secret(dir.path(), "user_app_secret", &user_app_secret)?;
    write_secret(
        dir.path(),
        "user_tokens.key",
        imsgate_broker::keystore::MasterKey::generate_text().expose(),
    )?;
    write_secret(dir.path(), "caller_hs256_key", &caller_key)?;
    write_secret(dir.path(), "web_app_secret", &web_app_secret)?;
    write_secret(dir.path(), "internal_api_key", &internal_key)?;

    // The broker's address must be known before the emulator learns its redirect URI.
    let listener = bind(
        listen,
        "broker (pass --listen 127.0.0.1:0 for any free port)",
    )
    .await?;
    let addr = listener.local_addr().map_err(|e| vec![e.to_string()])?;
    let app_listener = bind(app_listen, "demo partner app").await?;
    let app_addr = app_listener.local_addr().map_err(|e| vec![e.to_string()])?;
    let app_url = format!("http://{app_addr}");
    let scheme = if tls { "https" } else { "http" };
    let broker_url = format!("{scheme}://{addr}");
    let demo_tls = if tls {
        Some(crate::demo_tls::DemoTls::write(dir.path(), addr)?)
    } else {
        None
    };

    let mut web_app = EmulatorClient::new(
        WEB_APP_CLIENT,
        &web_app_secret,
        &["openid", "AdobeID", "read_organizations"],
        3599,
    );
    web_app.default_redirect_uri = Some(format!("{broker_url}/consent/callback"));
    web_app.redirect_uri_patterns = vec![format!("{}/consent/.*", broker_url.replace('.', "\\."))];
    let mut user_app = EmulatorClient::new(
        USER_APP_CLIENT,
        &user_app_secret,
        &["openid", "AdobeID", "offline_access"],
        3599,
    );
    user_app.default_redirect_uri = Some(format!("{broker_url}/user/callback"));
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![demo_client(&client_secret, lifetime), web_app, user_app],
        ..EmulatorConfig::default()
    })
    .start(emulator_listen)
    .await
    .map_err(|e| vec![format!("cannot listen on {emulator_listen} for the emulator ({}); pass --emulator-listen 127.0.0.1:0", e.kind())])?;

    let text = demo_config(
        emulator.base_url(),
        addr,
        uuid::Uuid::new_v4(),
        &app_url,
        tls,
    );
    let config_path = dir.path().join("imsgate.toml");
    std::fs::write(&config_path, &text)
        .map_err(|e| vec![format!("cannot write the demo config: {}", e.kind())])?;
    let config = Config::load(&config_path).map_err(|e| e.problems)?;
    let broker = Broker::build(config, Arc::new(SystemClock))?;
    // `imsgate_build_info`: this binary's version and the git commit its build recorded.
    broker.state.metrics.set_build_info(
        env!("CARGO_PKG_VERSION"),
        option_env!("IMSGATE_GIT_COMMIT").unwrap_or("unknown"),
    );

    let token = caller_token(&caller_key, "demo-user-1", 3600);
    println!("imsgate demo is running (Ctrl-C to stop)");
    println!("  broker:        {broker_url}");
    println!("  IMS emulator:  {}", emulator.base_url());
    println!(
        "  data dir:      {} (deleted on exit)",
        dir.path().display()
    );
    let curl = match &demo_tls {
        Some(t) => {
            println!("  CA certificate: {}", t.ca_path.display());
            println!(
                "  Chromium trust pin: --ignore-certificate-errors-spki-list={}",
                t.spki_sha256
            );
            format!("curl --cacert {}", t.ca_path.display())
        }
        None => "curl".to_owned(),
    };
    println!();
    println!("Get a client token as a signed-in user would (caller token valid for 1 hour):");
    println!("  {curl} -H 'Authorization: Bearer {token}' {broker_url}/api/client-token");
    println!();
    println!(
        "Connect an Adobe org (admin consent): open the partner app and click \"Connect with Adobe\":"
    );
    println!("  {app_url}/");
    println!("or start a connection the way a partner backend does (internal API key):");
    println!(
        "  {curl} -X POST -H 'Authorization: Bearer {internal_key}' -H 'Content-Type: application/json' -d '{{\"account_id\": \"demo-account-1\", \"return_to\": \"{app_url}/\"}}' {broker_url}/api/connections"
    );
    println!(
        "Operator console (sign in with the internal API key from the line above): {broker_url}/admin"
    );
    println!(
        "Sign a user in (user OAuth with PKCE): the same page's \"Sign in with Adobe\"; then the user's token:"
    );
    println!(
        "  {curl} -X POST -H 'Authorization: Bearer {internal_key}' {broker_url}/api/users/demo-user-1/token"
    );
    println!();
    println!(
        "The browser package (clients/js) getting client tokens for a stand-in Embed SDK module:"
    );
    println!("  {app_url}/embed");
    println!();
    println!("Health, readiness and metrics:");
    println!("  {curl} {broker_url}/readyz");
    println!("  {curl} {broker_url}/metrics");
    println!();
    println!("Going to production (TLS behind nginx, systemd, a container image): docs/deploy.md");

    let app = crate::demo_app::router(Arc::new(crate::demo_app::AppState {
        broker_url: broker_url.clone(),
        emulator_url: emulator.base_url().to_owned(),
        app_url: app_url.clone(),
        internal_key,
        caller_key: caller_key.clone(),
        http: match &demo_tls {
            Some(t) => t.client()?,
            None => reqwest::Client::new(),
        },
    }));
    let app_task = tokio::spawn(async move {
        let _ = axum::serve(app_listener, app).await;
    });
    // SIGHUP reloads the demo's certificate like `serve` does, and never ends the demo.
    let reloader = crate::reload::spawn(crate::reload::hangups()?, broker.clone());
    let served = broker.serve(listener, shutdown_signal()).await;
    reloader.abort();
    app_task.abort();
    emulator.shutdown().await;
    drop(dir);
    served.map_err(|e| vec![format!("server error: {e}")])
}
