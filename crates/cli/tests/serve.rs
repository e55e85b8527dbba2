//! `imsgate serve` as a process: SIGHUP reloads TLS and never ends the broker, host names in
//! `listen`, and `--version`.

#[path = "../../broker/tests/support/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");

/// A running `imsgate serve` with its JSON log lines.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    addrs: Vec<SocketAddr>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(config: &std::path::Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut s = Self {
            child,
            lines,
            seen: Vec::new(),
            addrs: Vec::new(),
        };
        // Every public address is logged before serving starts; the first line after them is
        // not another "listening".
        s.wait_for("imsgate broker listening");
        s.collect_addrs();
        s
    }

    fn collect_addrs(&mut self) {
        self.addrs = self
            .seen
            .iter()
            .filter(|v| v["message"] == "imsgate broker listening")
            .map(|v| v["addr"].as_str().unwrap().parse().unwrap())
            .collect();
    }

    /// Waits (at most 20 s) for a log line whose message contains `text`.
    fn wait_for(&mut self, text: &str) -> serde_json::Value {
        if let Some(v) = self
            .seen
            .iter()
            .find(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
        {
            return v.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["message"].as_str().is_some_and(|m| m.contains(text)) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {text:?}; got {:?}; exit status {:?}",
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    fn hang_up(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn write_private(path: &std::path::Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    write_private(&dir.join("s2s.secret"), "value");
    let path = dir.join("imsgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
{server}

[ims]
base_url = "http://127.0.0.1:9"

[credentials.s2s]
type = "oauth_server_to_server"
client_id = "cli-client"
client_secret = "file:s2s.secret"
scopes = "openid,AdobeID"
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::TestCa::new("imsgate test CA");
    let first = ca.leaf("serve-1", &[]);
    first.install(dir.path());
    // Only SIGHUP reloads here: the files are checked once an hour.
    let cfg = config(
        dir.path(),
        "listen = \"127.0.0.1:0\"\ntls_cert = \"tls.crt\"\ntls_key = \"file:tls.key\"\ntls_check_interval_ms = 3600000",
    );
    let mut serve = Serve::start(&cfg);
    let addr = serve.addrs[0];
    assert_eq!(tls::presented(addr, &ca.pem).await, first.der);
    let mut open = tls::connect(
        addr,
        tls::client_config(&ca.pem, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]),
    )
    .await
    .unwrap();

    let second = ca.leaf("serve-2", &["serve-2.test"]);
    second.install(dir.path());
    serve.hang_up();
    let reloaded = serve.wait_for("TLS certificate reloaded");
    assert_eq!(reloaded["trigger"], "SIGHUP", "{reloaded}");
    assert_eq!(tls::presented(addr, &ca.pem).await, second.der);
    assert!(serve.still_running());
    // The connection opened before the reload still completes a request.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    open.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = open.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // A broken pair on SIGHUP: refused, logged, the broker carries on with the current one.
    tls::install_files(dir.path(), &first.chain_pem, &second.key_pem);
    serve.hang_up();
    let refused = serve.wait_for("reload refused");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{refused}"
    );
    assert!(serve.still_running());
    assert_eq!(tls::presented(addr, &ca.pem).await, second.der);
}

#[tokio::test]
async fn sighup_without_tls_is_logged_and_a_host_name_listen_serves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "listen = \"localhost:0\"");
    let mut serve = Serve::start(&cfg);
    assert!(
        serve.addrs.iter().all(|a| a.ip().is_loopback()),
        "{:?}",
        serve.addrs
    );
    for _ in 0..2 {
        serve.hang_up();
    }
    serve.wait_for("nothing to reload");
    assert!(serve.still_running());
    let r = reqwest::get(format!("http://{}/healthz", serve.addrs[0]))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(serve.still_running());
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let re = regex_lite_match(&text);
    let commit = re.unwrap_or_else(|| panic!("unexpected --version output {text:?}"));
    // Built from a git checkout here: the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap());
    match head {
        Some(head) => assert!(head.starts_with(&commit), "{commit} is not HEAD {head}"),
        None => assert_eq!(commit, "unknown"),
    }
}

/// `imsgate X.Y.Z (commit C)\n` → C.
fn regex_lite_match(text: &str) -> Option<String> {
    let rest = text.strip_prefix("imsgate ")?.strip_suffix(")\n")?;
    let (version, commit) = rest.split_once(" (commit ")?;
    if version != env!("CARGO_PKG_VERSION") {
        return None;
    }
    let ok =
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| commit.to_owned())
}
