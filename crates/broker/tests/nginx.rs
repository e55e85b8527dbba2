//! The nginx configuration of docs/deploy.md, run for real: Debian's nginx terminates TLS (a
//! throwaway CA) on loopback in front of the in-process broker, and the whole consent flow and a
//! `/api/client-token` call go through it. The block is read out of docs/deploy.md, so the
//! documentation cannot drift from what is tested.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::consent::*;
use support::*;

/// Where the test client connects from: not the trusted proxy's address (127.0.0.1), so the
/// access log shows whether imsgate took the client from `X-Forwarded-For`.
const CLIENT_ADDR: [u8; 4] = [127, 0, 0, 3];

/// nginx, stopped (and its error log shown) when the test ends.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            eprintln!("nginx error.log:\n{log}");
        }
    }
}

/// The ```nginx block that follows the marker in docs/deploy.md.
fn documented_config() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let after = text
        .split_once("<!-- nginx-config:")
        .expect("docs/deploy.md has the nginx-config marker")
        .1;
    let block = after.split_once("```nginx\n").unwrap().1;
    block.split_once("```").unwrap().0.to_owned()
}

/// Replaces `from` (which must appear exactly once, or the doc changed shape) with `to`.
fn swap(config: String, from: &str, to: &str) -> String {
    assert_eq!(
        config.matches(from).count(),
        1,
        "docs/deploy.md's nginx block should contain {from:?} once"
    );
    config.replace(from, to)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// A CA and a leaf for `127.0.0.1`/`localhost`; returns the CA's PEM and writes the leaf.
fn test_pki(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "imsgate nginx test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("fullchain.pem"), leaf.pem() + &ca_cert.pem()).unwrap();
    write_secret(dir, "privkey.pem", &leaf_key.serialize_pem());
    ca_cert.pem()
}

fn start_nginx(nginx: &Path, dir: &Path, https: u16, http: u16, upstream: &str) -> Nginx {
    let site = documented_config();
    let site = swap(
        site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{https} ssl;"),
    );
    let site = swap(site, "listen 80;", &format!("listen 127.0.0.1:{http};"));
    let site = swap(
        site,
        "/etc/ssl/imsgate/fullchain.pem",
        &dir.join("fullchain.pem").display().to_string(),
    );
    let site = swap(
        site,
        "/etc/ssl/imsgate/privkey.pem",
        &dir.join("privkey.pem").display().to_string(),
    );
    let site = swap(
        site,
        "server 127.0.0.1:8080;",
        &format!("server {upstream};"),
    );
    std::fs::write(dir.join("imsgate.conf"), site).unwrap();
    // The surroundings Debian's /etc/nginx/nginx.conf would give, with every path nginx writes
    // inside the temp dir so it runs as any user.
    let d = dir.display();
    let user = if running_as_root() { "user root;" } else { "" };
    let main = format!(
        r#"{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format ids '$remote_addr $request_id $status';
    access_log {d}/access.log ids;
    include {d}/imsgate.conf;
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Nginx {
        child,
        dir: dir.to_owned(),
    }
}

// One thread, so every task's events reach the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn consent_flow_and_client_token_through_nginx_with_tls() {
    let Some(nginx_bin) = support::tools::external_tool("nginx") else {
        return;
    };
    let (logs, _guard) = logs::capture(tracing::Level::INFO);

    let tmp = tempfile::tempdir().unwrap();
    let ca_pem = test_pki(tmp.path());
    write_secret(tmp.path(), "caller.key", CALLER_KEY);
    let (https, http) = (free_port(), free_port());
    let public = format!("https://127.0.0.1:{https}");
    let h = ConsentHarness::start(ConsentOptions {
        public_url: Some(public.clone()),
        extra_server: r#"trusted_proxies = ["127.0.0.1"]"#.to_owned(),
        extra: format!(
            r#"
[client_token]
credential = "partner"
token_id_namespace = "{NAMESPACE}"

[client_token.caller_auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
hs256_secret = "file:{}"
"#,
            tmp.path().join("caller.key").display()
        ),
        ..ConsentOptions::default()
    })
    .await;
    let upstream = h.url.trim_start_matches("http://").to_owned();
    let _nginx = start_nginx(&nginx_bin, tmp.path(), https, http, &upstream);

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .local_address(std::net::IpAddr::from(CLIENT_ADDR))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(format!("{public}/healthz")).send().await {
            Ok(r) if r.status() == StatusCode::OK => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            r => panic!("nginx never answered on {public}: {r:?}"),
        }
    }

    // Plain HTTP is sent to HTTPS.
    let r = client
        .get(format!("http://127.0.0.1:{http}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers()["location"], "https://127.0.0.1/healthz");

    // nginx's request id reaches imsgate, which keeps it (nginx is trusted); the client address
    // logged is the one nginx saw, not the one the client wrote into X-Forwarded-For.
    let r = client
        .get(format!("{public}/healthz"))
        .header("x-forwarded-for", "198.51.100.66")
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "nginx's $request_id, not the client's or a fresh UUID: {id:?}"
    );
    let line = logs.access_for(&id);
    assert_eq!(line["client_ip"], "127.0.0.3", "{line}");
    assert_eq!(line["route"], "/healthz");
    let nginx_log = std::fs::read_to_string(tmp.path().join("access.log")).unwrap();
    assert!(
        nginx_log.contains(&format!("127.0.0.3 {id} 200")),
        "nginx logged the same id: {nginx_log}"
    );

    // The consent flow, every broker URL through nginx over TLS.
    let r = client
        .post(format!("{public}/api/connections"))
        .bearer_auth(INTERNAL_KEY)
        .json(&json!({"account_id": "acct-nginx", "return_to": RETURN_TO}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let connect = body["connect_url"].as_str().unwrap().to_owned();
    assert!(
        connect.starts_with(&format!("{public}/connect/")),
        "{connect}"
    );
    let mut browser = Browser::new(client.clone());
    let r = browser.get(&connect).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(browser.cookies.contains_key("__Host-imsgate-consent"));
    let consent = location(&r);
    assert_eq!(
        query_of(&consent)["redirect_uri"],
        format!("{public}/consent/callback")
    );
    let page = browser.get(consent.as_str()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let mut form = hidden_inputs(&page.text().await.unwrap());
    form.push(("org_id".into(), ORG_A.into()));
    form.push(("action".into(), "allow".into()));
    let r = browser
        .post_form(&format!("{}/consent", h.emulator.base_url()), &form)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let callback = location(&r);
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{public}/consent/callback?")),
        "{callback}"
    );
    let r = browser.get(callback.as_str()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let back = location(&r);
    assert!(back.as_str().starts_with(RETURN_TO), "{back}");
    assert_eq!(query_of(&back)["result"], "linked");
    let link: Value = client
        .get(format!("{public}/api/connections/acct-nginx"))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(link["status"], "linked", "{link}");
    assert_eq!(link["org_id"], ORG_A, "{link}");

    // A browser's client-token call through nginx, logged with its tokenId.
    let r = client
        .get(format!("{public}/api/client-token"))
        .bearer_auth(caller("nginx-user"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert!(
        h.emulator_accepts(body["clientAccessToken"].as_str().unwrap())
            .await
    );
    let line = logs.access_for(&id);
    assert_eq!(line["client_ip"], "127.0.0.3", "{line}");
    assert_eq!(line["route"], "/api/client-token");
    assert_eq!(line["token_id"], body["tokenId"], "{line}");

    // The operator console's sign-in through nginx, from the page's own origin (port included):
    // the Host nginx forwards is what the form's Origin is checked against.
    let r = client
        .post(format!("{public}/admin/login"))
        .header("Origin", public.as_str())
        .header("Sec-Fetch-Site", "same-origin")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("password={INTERNAL_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
}
