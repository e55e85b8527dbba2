//! `kill -9` during a burst of consent callbacks: after a restart every link whose callback was
//! answered `linked` is there, nothing is half-written, and the database is intact.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");
const CLIENT: &str = "crash-web-app";
const SECRET: &str = "crash-web-app-secret-1b2c3d";
const KEY: &str = "crash-test-internal-api-key-0123456789";
const ORGS: [&str; 2] = [
    "CUSTOMERA0000000000000@AdobeOrg",
    "CUSTOMERB0000000000000@AdobeOrg",
];
const BURST: usize = 120;

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn private(path: &std::path::Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn start(config: &std::path::Path, url: &str) -> Broker {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{url}/healthz")).await
            && r.status() == 200
        {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broker did not start");
}

struct Pending {
    account: String,
    org: &'static str,
    cookie: String,
    callback: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_callbacks_loses_no_committed_link() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut client = EmulatorClient::new(CLIENT, SECRET, &["openid", "AdobeID"], 3599);
    client.default_redirect_uri = Some(format!("{url}/consent/callback"));
    let emulator = Emulator::new(EmulatorConfig {
        clients: vec![client],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    private(&dir.path().join("ewa.secret"), SECRET);
    private(&dir.path().join("internal.key"), KEY);
    let config = dir.path().join("imsgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[ims]
base_url = "{emu}"

[credentials.web]
type = "enterprise_web_app"
client_id = "{CLIENT}"
client_secret = "file:ewa.secret"
scopes = ["openid", "AdobeID"]
default_redirect_uri = "{url}/consent/callback"

[consent]
credential = "web"
public_url = "{url}"
consent_url = "{emu}/consent"
return_to_origins = ["https://app.partner.test"]
development_mode = true

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "links.sqlite"
"#,
            emu = emulator.base_url()
        ),
    )
    .unwrap();

    let mut broker = start(&config, &url).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Open BURST sessions and prepare each one's genuine callback.
    let mut pending = Vec::new();
    for i in 0..BURST {
        let account = format!("acct-{i}");
        let r = http
            .post(format!("{url}/api/connections"))
            .bearer_auth(KEY)
            .json(&serde_json::json!({"account_id": account, "return_to": "https://app.partner.test/"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        let r = http
            .get(v["connect_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let consent = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: HashMap<String, String> = consent.query_pairs().into_owned().collect();
        // No pattern is configured, so the callback (the default redirect URI) is not repeated.
        assert!(!q.contains_key("redirect_uri"));
        let org = ORGS[i % 2];
        let id_token = emulator.issue_id_token(CLIENT, org, Some(&q["nonce"]));
        let callback = format!(
            "{url}/consent/callback?admin_consent=true&state={}&id_token={id_token}",
            q["state"]
        );
        pending.push(Pending {
            account,
            org,
            cookie,
            callback,
        });
    }

    // Fire them all at once and kill the broker once some have been answered.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for p in &pending {
        let http = http.clone();
        let (account, cookie, callback) = (p.account.clone(), p.cookie.clone(), p.callback.clone());
        let tx = tx.clone();
        tokio::spawn(async move {
            let linked = match http.get(&callback).header("cookie", cookie).send().await {
                Ok(r) => r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.contains("result=linked")),
                Err(_) => false,
            };
            let _ = tx.send((account, linked));
        });
    }
    drop(tx);
    let mut answered = HashMap::new();
    while let Some((account, linked)) = rx.recv().await {
        answered.insert(account, linked);
        if answered.len() == BURST / 4 {
            // SIGKILL: no shutdown hook, no flush.
            broker.0.kill().unwrap();
            broker.0.wait().unwrap();
        }
    }
    let confirmed: Vec<&String> = answered
        .iter()
        .filter(|(_, linked)| **linked)
        .map(|(a, _)| a)
        .collect();
    assert!(
        confirmed.len() >= BURST / 4,
        "answered before the kill were linked"
    );

    // Restart on the same database.
    let _broker = start(&config, &url).await;
    let mut linked = 0;
    for p in &pending {
        let v: serde_json::Value = http
            .get(format!("{url}/api/connections/{}", p.account))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["status"].as_str().unwrap() {
            "linked" => {
                linked += 1;
                // All of the link or none of it: the org and account match this callback.
                assert_eq!(v["org_id"], p.org, "{}", p.account);
                assert!(
                    v["technical_account"]
                        .as_str()
                        .unwrap()
                        .ends_with("@techacct.adobe.com")
                );
            }
            "unlinked" => assert!(
                !confirmed.contains(&&p.account),
                "{} was answered linked but is gone after kill -9",
                p.account
            ),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(linked >= confirmed.len());
    eprintln!(
        "burst of {BURST}: {} answered linked before the kill, {linked} linked after restart",
        confirmed.len()
    );

    let db = rusqlite::Connection::open(dir.path().join("links.sqlite")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = db
        .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows, linked as i64,
        "every row is a complete, readable link"
    );
    let incomplete: i64 = db
        .query_row(
            "SELECT count(*) FROM links WHERE org_id = '' OR technical_account = '' OR linked_at_ms <= 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(incomplete, 0);
}
