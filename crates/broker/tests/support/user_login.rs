//! Harness for user sign-in: an emulator with an OAuth Web App client whose redirect URI is the
//! broker's callback, the broker on SQLite with a token encryption key, a clock the test can move
//! forward, and a browser stand-in that signs in on the emulator's page.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use imsgate_broker::Broker;
use imsgate_broker::clock::{Clock, SystemClock};
use imsgate_broker::config::Config;
use imsgate_broker::keystore::MasterKey;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use super::consent::{Browser, hidden_inputs, location};
use super::write_secret;

pub const WEB_CLIENT: &str = "partner-user-app";
pub const WEB_SECRET: &str = "web-client-secret-0b7c2d91e4f3";
pub const INTERNAL_KEY: &str = "internal-api-key-0123456789abcdefghij";
pub const RETURN_TO: &str = "https://app.partner.test/profile";
pub const ADA: &str = "USERA00000000000000000@AdobeID";
pub const GRACE: &str = "USERB00000000000000000@AdobeID";

/// Real time plus an offset the test moves forward.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicU64,
}

impl ShiftedClock {
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        SystemClock.now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

pub struct UserOptions {
    pub scopes: Vec<&'static str>,
    pub token_lifetime_secs: u64,
    pub token_auth: &'static str,
    /// `[refresh] caller_wait_ms`.
    pub caller_wait_ms: u64,
}

impl Default for UserOptions {
    fn default() -> Self {
        Self {
            scopes: vec!["openid", "AdobeID", "offline_access"],
            token_lifetime_secs: 3600,
            token_auth: "client_secret_basic",
            caller_wait_ms: 2000,
        }
    }
}

pub struct UserHarness {
    pub emulator: RunningEmulator,
    pub broker: Broker,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ShiftedClock>,
    pub config_text: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for UserHarness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn config_text(broker_url: &str, emulator_url: &str, o: &UserOptions) -> String {
    let scopes = o
        .scopes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[ims]
base_url = "{emulator_url}"
request_timeout_ms = 2000

[credentials.web]
type = "oauth_web_app"
client_id = "{WEB_CLIENT}"
client_secret = "file:web.secret"
scopes = [{scopes}]
default_redirect_uri = "{broker_url}/user/callback"

[user_login]
credential = "web"
public_url = "{broker_url}"
return_to_origins = ["https://app.partner.test"]
token_auth = "{auth}"
token_encryption_keys = ["file:tokens.key"]
development_mode = true

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "imsgate.sqlite"

[refresh]
backoff_initial_ms = 200
backoff_max_ms = 1000
caller_wait_ms = {wait}
"#,
        auth = o.token_auth,
        wait = o.caller_wait_ms,
    )
}

impl UserHarness {
    pub async fn start(o: UserOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut client =
            EmulatorClient::new(WEB_CLIENT, WEB_SECRET, &o.scopes, o.token_lifetime_secs);
        client.default_redirect_uri = Some(format!("{url}/user/callback"));
        let emulator = Emulator::new(EmulatorConfig {
            clients: vec![client],
            ..EmulatorConfig::default()
        })
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path(), "web.secret", WEB_SECRET);
        write_secret(dir.path(), "internal.key", INTERNAL_KEY);
        write_secret(
            dir.path(),
            "tokens.key",
            MasterKey::generate_text().expose(),
        );
        let text = config_text(&url, emulator.base_url(), &o);
        let clock = Arc::new(ShiftedClock::default());
        let config = Config::parse(&text, dir.path()).unwrap();
        let broker = Broker::build(config, clock.clone()).unwrap();
        let b = broker.clone();
        let server = tokio::spawn(async move {
            let _ = b.serve(listener, std::future::pending()).await;
        });
        Self {
            emulator,
            broker,
            url,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir,
            clock,
            config_text: text,
            server,
        }
    }

    /// Stops serving and starts a new broker on the same config, database and port. The HTTP
    /// client is replaced too: a kept-alive connection would still reach the old broker, whose
    /// connection tasks outlive its accept loop.
    pub async fn restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        self.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let addr = self.url.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let config = Config::parse(&self.config_text, self.dir.path()).unwrap();
        self.broker = Broker::build(config, self.clock.clone()).unwrap();
        let b = self.broker.clone();
        self.server = tokio::spawn(async move {
            let _ = b.serve(listener, std::future::pending()).await;
        });
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.http.clone())
    }

    pub async fn login_url(&self, user: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/user-logins", self.url))
            .bearer_auth(INTERNAL_KEY)
            .json(&json!({"user": user, "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        body["login_url"].as_str().unwrap().to_owned()
    }

    /// Opens a login URL in a fresh browser; returns the browser and IMS's authorize URL.
    pub async fn open(&self, user: &str) -> (Browser, Url) {
        let login = self.login_url(user).await;
        let mut browser = self.browser();
        let r = browser.get(&login).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        (browser, location(&r))
    }

    /// On the emulator's page (at `authorize`), presses the button for `choice` (a user id, or
    /// `deny`); returns the callback URL IMS sends the browser to.
    pub async fn choose(&self, browser: &mut Browser, authorize: &Url, choice: &str) -> Url {
        let page = browser.get(authorize.as_str()).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let mut form = hidden_inputs(&html);
        if choice == "deny" {
            form.push(("action".into(), "deny".into()));
        } else {
            form.push(("user".into(), choice.into()));
        }
        let r = browser
            .post_form(
                &format!("{}/ims/authorize/v2", self.emulator.base_url()),
                &form,
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let callback = location(&r);
        assert!(
            callback
                .as_str()
                .starts_with(&format!("{}/user/callback?", self.url)),
            "{callback}"
        );
        callback
    }

    /// Follows the callback; returns where the broker sends the browser.
    pub async fn finish(&self, browser: &mut Browser, callback: &Url) -> Url {
        let r = browser.get(callback.as_str()).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{callback}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        location(&r)
    }

    /// The whole sign-in as `ims_user` for the partner's `user`.
    pub async fn sign_in(&self, user: &str, ims_user: &str) -> Url {
        let (mut browser, authorize) = self.open(user).await;
        let callback = self.choose(&mut browser, &authorize, ims_user).await;
        self.finish(&mut browser, &callback).await
    }

    pub async fn user_token(&self, user: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/users/{user}/token", self.url))
            .bearer_auth(INTERNAL_KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn revoke(&self, user: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}/api/users/{user}/token", self.url))
            .bearer_auth(INTERNAL_KEY)
            .send()
            .await
            .unwrap()
    }

    /// What the emulator's validate endpoint says of a token.
    pub async fn validate(&self, token: &str) -> Value {
        self.http
            .post(format!(
                "{}/ims/validate_token/v1",
                self.emulator.base_url()
            ))
            .form(&[
                ("type", "access_token"),
                ("client_id", WEB_CLIENT),
                ("token", token),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
