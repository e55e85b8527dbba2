//! `imsgate doctor --online`: checks that talk to IMS and touch the store for real, one line
//! each with PASS, FAIL or SKIP and its time. A check is one value of [`Check`]; a new backend
//! (Redis, PostgreSQL) is a new variant and a line in [`plan`].
//!
//! Each client secret is tried on its own (no fallback to the other one) and nothing is
//! recorded, so the report says exactly which secret IMS accepts. The store check writes inside a
//! transaction that is rolled back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::Inspection;
use crate::clock::SharedClock;
use crate::config::{CallerKeyConfig, Config, CredentialKind};
use crate::credentials::{Credential, ImsFetcher};
use crate::ims_client::ImsClient;
use crate::metrics::Metrics;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not applicable to this configuration (said why).
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One check's result: `STATUS name: detail (N ms)`.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub status: Status,
    pub name: String,
    pub detail: String,
    pub elapsed: Duration,
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} ({} ms)",
            self.status.as_str(),
            self.name,
            self.detail,
            self.elapsed.as_millis()
        )
    }
}

/// What can be checked.
#[derive(Debug)]
enum Check<'a> {
    /// One client secret of a credential mints a token, which IMS then validates.
    Secret {
        cred: &'a Arc<Credential>,
        index: usize,
    },
    /// A credential that cannot mint a token on its own, with the reason.
    NoToken {
        cred: &'a Arc<Credential>,
        why: &'static str,
    },
    /// IMS's signing keys (for id_tokens of both browser flows).
    ImsKeys,
    /// IMS's OpenID discovery document.
    Discovery,
    /// The SQLite database accepts a write.
    Store(&'a Path),
    /// The caller-auth JWKS of `/api/client-token`.
    CallerKeys(&'a Url),
}

/// The checks for `config`, in the order they run.
fn plan<'a>(config: &'a Config, inspection: &'a Inspection) -> Vec<Check<'a>> {
    let mut checks = Vec::new();
    let mut names: Vec<&String> = inspection.credentials.keys().collect();
    names.sort();
    for name in names {
        let cred = &inspection.credentials[name];
        match cred.config.kind {
            CredentialKind::ApiKey => checks.push(Check::NoToken {
                cred,
                why: "an api_key credential has no secret and no token",
            }),
            CredentialKind::OAuthWebApp => checks.push(Check::NoToken {
                cred,
                why: "an oauth_web_app credential gets tokens only from a user's sign-in",
            }),
            _ => {
                for index in 0..cred.config.client_secrets.len() {
                    checks.push(Check::Secret { cred, index });
                }
            }
        }
    }
    checks.push(Check::ImsKeys);
    checks.push(Check::Discovery);
    if let Some(s) = &config.storage {
        checks.push(Check::Store(&s.sqlite_path));
    }
    if let Some(ct) = &config.client_token
        && let CallerKeyConfig::Jwks { url, .. } = &ct.caller_auth.key
    {
        checks.push(Check::CallerKeys(url));
    }
    checks
}

/// Runs every check in turn and returns their results.
pub async fn run(
    config: &Config,
    inspection: &Inspection,
    clock: SharedClock,
) -> Result<Vec<CheckResult>, String> {
    let metrics = Arc::new(Metrics::new());
    let client = ImsClient::new(&config.ims, metrics)?;
    let http = reqwest::Client::builder()
        .timeout(config.ims.request_timeout)
        .connect_timeout(config.ims.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imsgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let fetcher = ImsFetcher {
        client: client.clone(),
        endpoints: config.ims.endpoints.clone(),
        credentials: inspection.credentials.clone(),
        clock,
        // No store: a probe records nothing.
        store: None,
    };
    let ctx = Ctx {
        config,
        fetcher,
        client,
        http,
    };
    let mut results = Vec::new();
    for check in plan(config, inspection) {
        let started = Instant::now();
        let (status, name, detail) = ctx.run(&check).await;
        results.push(CheckResult {
            status,
            name,
            detail,
            elapsed: started.elapsed(),
        });
    }
    Ok(results)
}

struct Ctx<'a> {
    config: &'a Config,
    fetcher: ImsFetcher,
    client: ImsClient,
    http: reqwest::Client,
}

impl Ctx<'_> {
    async fn run(&self, check: &Check<'_>) -> (Status, String, String) {
        match check {
            Check::Secret { cred, index } => {
                let r = &cred.config.client_secrets[*index];
                let name = format!("credential {:?} secret [{index}] {r}", cred.config.name);
                let (status, detail) = self.secret(cred, *index).await;
                (status, name, detail)
            }
            Check::NoToken { cred, why } => (
                Status::Skip,
                format!("credential {:?}", cred.config.name),
                (*why).to_owned(),
            ),
            Check::ImsKeys => {
                let url = &self.config.ims.endpoints.jwks;
                let (s, d) = self.jwks("IMS", url).await;
                (s, "IMS keys".to_owned(), d)
            }
            Check::Discovery => {
                let (s, d) = self.discovery().await;
                (s, "IMS discovery".to_owned(), d)
            }
            Check::Store(path) => {
                let (s, d) = store_writable(path);
                (s, "storage".to_owned(), d)
            }
            Check::CallerKeys(url) => {
                let (s, d) = self.jwks("the caller-auth JWKS", url).await;
                (s, "caller-auth keys".to_owned(), d)
            }
        }
    }

    async fn secret(&self, cred: &Credential, index: usize) -> (Status, String) {
        let token = match self
            .fetcher
            .probe_secret(cred, &cred.config.scopes, index)
            .await
        {
            Ok(t) => t,
            Err(e) => return (Status::Fail, e.to_string()),
        };
        let minted = format!(
            "IMS issued a token (valid {} s)",
            token.lifetime().as_secs()
        );
        let url = &self.config.ims.endpoints.validate;
        let req = imsgate_ims::HttpRequest {
            method: "POST",
            url: url.clone(),
            headers: vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            )],
            body: form(&[
                ("type", "access_token"),
                ("client_id", &cred.config.client_id),
                ("token", token.secret.expose()),
            ]),
        };
        match self.client.send("validate", &cred.config.name, req).await {
            Err(e) => (
                Status::Fail,
                format!("{minted}, but validating it failed: {e}"),
            ),
            Ok(resp) if matches!(resp.status, 404 | 405) => (
                Status::Pass,
                format!("{minted} (this IMS does not offer token validation)"),
            ),
            Ok(resp) if resp.status != 200 => (
                Status::Fail,
                format!(
                    "{minted}, but {} answered HTTP {}",
                    crate::net_error::shown_url(url),
                    resp.status
                ),
            ),
            Ok(resp) => {
                let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
                if v["valid"] == true {
                    (Status::Pass, format!("{minted}; IMS validates it"))
                } else {
                    let reason = v["reason"].as_str().unwrap_or("no reason given");
                    (
                        Status::Fail,
                        format!("{minted}, but IMS says it is not valid ({reason})"),
                    )
                }
            }
        }
    }

    async fn get(&self, what: &str, url: &Url) -> Result<Vec<u8>, String> {
        let timeouts = (
            self.config.ims.connect_timeout,
            self.config.ims.request_timeout,
        );
        let describe = |e: reqwest::Error| crate::net_error::describe(what, &e, url, timeouts);
        let resp = self.http.get(url.clone()).send().await.map_err(describe)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!(
                "{} answered HTTP {status}",
                crate::net_error::shown_url(url)
            ));
        }
        let body = resp.bytes().await.map_err(describe)?;
        Ok(body.to_vec())
    }

    async fn jwks(&self, what: &str, url: &Url) -> (Status, String) {
        let shown = crate::net_error::shown_url(url);
        match self.get(what, url).await {
            Err(e) => (Status::Fail, e),
            Ok(body) => match imsgate_ims::jwk::parse_set(&body) {
                Ok(keys) if keys.is_empty() => {
                    (Status::Fail, format!("{shown} lists no usable key"))
                }
                Ok(keys) => (Status::Pass, format!("{shown}: {} key(s)", keys.len())),
                Err(e) => (
                    Status::Fail,
                    format!("{shown} is not a valid key set ({e})"),
                ),
            },
        }
    }

    async fn discovery(&self) -> (Status, String) {
        let url = &self.config.ims.endpoints.discovery;
        let shown = crate::net_error::shown_url(url);
        match self.get("IMS", url).await {
            Err(e) => (Status::Fail, e),
            Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v["issuer"].is_string() => (
                    Status::Pass,
                    format!(
                        "{shown}: issuer {}",
                        v["issuer"].as_str().unwrap_or_default()
                    ),
                ),
                _ => (
                    Status::Fail,
                    format!("{shown} is not an OpenID discovery document (no issuer)"),
                ),
            },
        }
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// A write that is rolled back proves the database (and its journal) accept writes. A database
/// that does not exist yet is not created: its directory must accept a new file instead.
fn store_writable(path: &Path) -> (Status, String) {
    let shown = path.display();
    if !path.exists() {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let probe = dir.join(format!(".imsgate-doctor-{}", uuid::Uuid::new_v4()));
        return match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                (
                    Status::Pass,
                    format!(
                        "{shown} does not exist yet; `imsgate serve` can create it in {}",
                        dir.display()
                    ),
                )
            }
            Err(e) => (
                Status::Fail,
                format!(
                    "{shown} does not exist and {} does not accept new files ({}); fix the directory's owner or mode",
                    dir.display(),
                    e.kind()
                ),
            ),
        };
    }
    let attempt = || -> rusqlite::Result<()> {
        let mut conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE imsgate_doctor_probe (x INTEGER); INSERT INTO imsgate_doctor_probe VALUES (1);",
        )?;
        tx.rollback()
    };
    match attempt() {
        Ok(()) => (
            Status::Pass,
            format!("{shown} accepts writes (a test write was rolled back)"),
        ),
        Err(e) => (
            Status::Fail,
            format!("{shown} does not accept writes ({e})"),
        ),
    }
}
