//! Harness for the admin-consent flow: an emulator with an Enterprise Web App client whose
//! redirect URI is the broker's callback, the broker on SQLite in a temp dir, and a browser
//! stand-in with a cookie jar that follows the flow over real HTTP.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::config::Config;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use super::write_secret;

pub const EWA_CLIENT: &str = "partner-web-app";
pub const EWA_SECRET: &str = "ewa-client-secret-5d1c0a77b2e4";
pub const INTERNAL_KEY: &str = "internal-api-key-0123456789abcdefghij";
pub const ORG_A: &str = "CUSTOMERA0000000000000@AdobeOrg";
pub const ORG_B: &str = "CUSTOMERB0000000000000@AdobeOrg";
pub const RETURN_TO: &str = "https://app.partner.test/settings/adobe";
pub const SCOPES: [&str; 3] = ["openid", "AdobeID", "read_organizations"];

pub struct ConsentOptions {
    pub org_token_lifetime_secs: u64,
    pub session_ttl_seconds: u64,
    /// Extra `[consent]` lines.
    pub extra_consent: String,
    /// Extra `[server]` lines.
    pub extra_server: String,
    pub request_timeout_ms: u64,
    /// Where browsers reach the broker (a proxy in front of it); the broker's own URL if `None`.
    pub public_url: Option<String>,
    /// Extra top-level tables, appended to the config.
    pub extra: String,
}

impl Default for ConsentOptions {
    fn default() -> Self {
        Self {
            org_token_lifetime_secs: 3599,
            session_ttl_seconds: 900,
            extra_consent: String::new(),
            extra_server: String::new(),
            request_timeout_ms: 2000,
            public_url: None,
            extra: String::new(),
        }
    }
}

pub struct ConsentHarness {
    pub emulator: RunningEmulator,
    pub broker: Broker,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ConsentHarness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn config_text(broker_url: &str, emulator_url: &str, o: &ConsentOptions) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra_server}

[ims]
base_url = "{emulator_url}"
request_timeout_ms = {request_timeout}

[credentials.partner]
type = "enterprise_web_app"
client_id = "{EWA_CLIENT}"
client_secret = "file:ewa.secret"
scopes = ["openid", "AdobeID", "read_organizations"]
default_redirect_uri = "{broker_url}/consent/callback"
redirect_uri_patterns = ["{pattern}"]

[consent]
credential = "partner"
public_url = "{broker_url}"
consent_url = "{emulator_url}/consent"
return_to_origins = ["https://app.partner.test"]
session_ttl_seconds = {session_ttl}
development_mode = true
{extra}

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "imsgate.sqlite"

[refresh]
backoff_initial_ms = 200
backoff_max_ms = 1000

{extra_tables}
"#,
        session_ttl = o.session_ttl_seconds,
        pattern = callback_pattern(broker_url).replace('\\', "\\\\"),
        extra = o.extra_consent,
        extra_server = o.extra_server,
        request_timeout = o.request_timeout_ms,
        extra_tables = o.extra,
    )
}

/// `http://127\.0\.0\.1:PORT/consent/.*`: a wildcard in the path only, as Adobe requires.
pub fn callback_pattern(broker_url: &str) -> String {
    format!("{}/consent/.*", broker_url.replace('.', "\\."))
}

impl ConsentHarness {
    pub async fn start(o: ConsentOptions) -> Self {
        // The broker's port must be known before the emulator is told where to redirect.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let public = o.public_url.clone().unwrap_or_else(|| url.clone());
        let mut client =
            EmulatorClient::new(EWA_CLIENT, EWA_SECRET, &SCOPES, o.org_token_lifetime_secs);
        client.default_redirect_uri = Some(format!("{public}/consent/callback"));
        client.redirect_uri_patterns = vec![callback_pattern(&public)];
        let emulator = Emulator::new(EmulatorConfig {
            clients: vec![client],
            ..EmulatorConfig::default()
        })
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path(), "ewa.secret", EWA_SECRET);
        write_secret(dir.path(), "internal.key", INTERNAL_KEY);
        let text = config_text(&public, emulator.base_url(), &o);
        let config = Config::parse(&text, dir.path()).unwrap();
        let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
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
            server,
        }
    }

    pub fn browser(&self) -> Browser {
        Browser {
            http: self.http.clone(),
            cookies: HashMap::new(),
        }
    }

    /// `POST /api/connections` with the internal key.
    pub async fn start_connection(&self, account: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/connections", self.url))
            .bearer_auth(INTERNAL_KEY)
            .json(&json!({"account_id": account, "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap()
    }

    pub async fn connect_url(&self, account: &str) -> String {
        let r = self.start_connection(account).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        body["connect_url"].as_str().unwrap().to_owned()
    }

    pub async fn connection(&self, account: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/api/connections/{account}", self.url))
            .bearer_auth(INTERNAL_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn org_token(&self, org: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/orgs/{org}/token", self.url))
            .bearer_auth(INTERNAL_KEY)
            .send()
            .await
            .unwrap()
    }

    /// Opens a connect URL in a fresh browser; returns it with the consent URL's query.
    pub async fn open_session(&self, account: &str) -> (Browser, HashMap<String, String>) {
        let connect = self.connect_url(account).await;
        let mut browser = self.browser();
        let r = browser.get(&connect).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let consent = location(&r);
        let query = consent.query_pairs().into_owned().collect();
        (browser, query)
    }

    /// The whole flow through the emulator's page, choosing `org` and pressing `action`.
    pub async fn consent(&self, account: &str, org: &str, action: &str) -> Url {
        let connect = self.connect_url(account).await;
        let mut browser = self.browser();
        let r = browser.get(&connect).await;
        let consent = location(&r);
        let page = browser.get(consent.as_str()).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let mut form = hidden_inputs(&html);
        form.push(("org_id".into(), org.into()));
        form.push(("action".into(), action.into()));
        if action == "error" {
            form.push(("error_code".into(), "insufficient_privilege".into()));
        }
        let r = browser
            .post_form(&format!("{}/consent", self.emulator.base_url()), &form)
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let callback = location(&r);
        assert!(
            callback
                .as_str()
                .starts_with(&format!("{}/consent/callback?", self.url)),
            "{callback}"
        );
        let r = browser.get(callback.as_str()).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        location(&r)
    }

    pub async fn emulator_accepts(&self, token: &str) -> bool {
        let r: Value = self
            .http
            .post(format!(
                "{}/ims/validate_token/v1",
                self.emulator.base_url()
            ))
            .form(&[
                ("type", "access_token"),
                ("client_id", EWA_CLIENT),
                ("token", token),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["valid"] == json!(true)
    }
}

/// A browser stand-in: follows nothing by itself, keeps cookies by name.
pub struct Browser {
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            cookies: HashMap::new(),
        }
    }

    fn remember(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.remember(&r);
        r
    }

    pub async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> reqwest::Response {
        let r = self.http.post(url).form(form).send().await.unwrap();
        self.remember(&r);
        r
    }
}

pub fn location(r: &reqwest::Response) -> Url {
    Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
}

pub fn query_of(u: &Url) -> HashMap<String, String> {
    u.query_pairs().into_owned().collect()
}

/// `<input type="hidden" name="..." value="...">` pairs, unescaped, as a browser would submit.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(r#"<input type="hidden" name="([^"]*)" value="([^"]*)">"#).unwrap();
    re.captures_iter(html)
        .map(|c| (unescape(&c[1]), unescape(&c[2])))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
