//! The `imsgate` binary as a user runs it: the demo, `token`, and clear one-line errors.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn demo_prints_a_working_curl_line() {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let curl = loop {
        let line = rx
            .recv_timeout(deadline - Instant::now())
            .expect("demo printed a curl line");
        lines.push(line.clone());
        if line
            .trim_start()
            .starts_with("curl -H 'Authorization: Bearer ")
        {
            break line;
        }
    };
    assert!(
        lines
            .iter()
            .any(|l| l.contains("IMS emulator:  http://127.0.0.1:")),
        "{lines:?}"
    );
    // curl -H 'Authorization: Bearer TOKEN' URL
    let token = curl
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let url = curl.rsplit(' ').next().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/api/client-token"));
    let resp = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["clientAccessToken"].as_str().unwrap().len() > 100);
    assert_eq!(body["tokenId"].as_str().unwrap().len(), 36);

    // The consent lines: the partner app page, and the internal-API curl line, which works.
    let mut app = None;
    let post = loop {
        let line = rx
            .recv_timeout(deadline - Instant::now())
            .expect("demo printed the connections curl line");
        if line.trim_start().starts_with("http://127.0.0.1:") && line.trim_end().ends_with('/') {
            app = Some(line.trim().to_owned());
        }
        if line.trim_start().starts_with("curl -X POST") {
            break line;
        }
    };
    let app = app.expect("demo printed the partner app URL");
    let page = reqwest::get(&app).await.unwrap().text().await.unwrap();
    assert!(page.contains("Connect with Adobe"), "{page}");
    // curl -X POST -H 'Authorization: Bearer KEY' -H '...' -d 'BODY' URL
    let quoted: Vec<&str> = post.split('\'').collect();
    let key = quoted[1].strip_prefix("Authorization: Bearer ").unwrap();
    let json_body = quoted[5];
    let url = post.rsplit(' ').next().unwrap();
    assert!(url.ends_with("/api/connections"), "{post}");
    let resp = reqwest::Client::new()
        .post(url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .body(json_body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["connect_url"].as_str().unwrap().contains("/connect/"));
}

fn write_private(path: &std::path::Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn config(emulator: &str) -> String {
    format!(
        r#"
[ims]
base_url = "{emulator}"

[credentials.s2s]
type = "oauth_server_to_server"
client_id = "cli-client"
client_secret = "file:s2s.secret"
scopes = "openid,AdobeID,firefly_api"
"#
    )
}

#[tokio::test]
async fn token_prints_an_access_token_ims_accepts() {
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "cli-client",
            "cli-secret-value",
            &["openid", "AdobeID", "firefly_api"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("s2s.secret"), "cli-secret-value\n", 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(&cfg, config(emulator.base_url())).unwrap();

    let out = tokio::process::Command::new(BIN)
        .args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "s2s",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/ims/validate_token/v1", emulator.base_url()))
        .form(&[
            ("type", "access_token"),
            ("client_id", "cli-client"),
            ("token", token),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cli-secret-value"));

    // Unknown credential: one clear line.
    let out = Command::new(BIN)
        .args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no credential named \"nope\""), "{err}");
}

/// `client_secret = "systemd:NAME"` reads `$CREDENTIALS_DIRECTORY/NAME`, as systemd's
/// `LoadCredential=` provides it (packaging/imsgate.service): the token IMS gives is valid, and a
/// missing credentials directory is one line naming the reference and the fix.
#[tokio::test]
async fn a_systemd_credential_feeds_a_client_secret() {
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "cli-client",
            "systemd-secret-value",
            &["openid", "AdobeID", "firefly_api"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    write_private(&creds.join("s2s-secret"), "systemd-secret-value\n", 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        config(emulator.base_url()).replace("file:s2s.secret", "systemd:s2s-secret"),
    )
    .unwrap();
    // The emulator runs on this test's runtime, so the binary is awaited, never waited on.
    let run = |creds_dir: Option<std::path::PathBuf>| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "s2s",
        ]);
        cmd.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(d) = creds_dir {
            cmd.env("CREDENTIALS_DIRECTORY", d);
        }
        async move { cmd.output().await.unwrap() }
    };
    let out = run(Some(creds.clone())).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/ims/validate_token/v1", emulator.base_url()))
        .form(&[
            ("type", "access_token"),
            ("client_id", "cli-client"),
            ("token", token.trim()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], true, "{v}");

    let out = run(None).await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("systemd:s2s-secret"), "{err}");
    assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
    assert!(!err.contains("systemd-secret-value"), "{err}");
}

#[test]
fn config_problems_are_all_reported_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        r#"
[server]
listn = "127.0.0.1:1"

[credentials.s2s]
type = "oauth_server_to_server"
client_id = "x"
client_secret = "file:s.secret"
scope = "openid"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("unknown key `server.listn` (line 3); did you mean `listen`?")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("unknown key `credentials.s2s.scope` (line 9); did you mean `scopes`?")),
        "{err}"
    );
    // The secret file is missing too: said in the same run, under the key as written.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("credentials.s2s.client_secret: secret file")
                && l.contains("s.secret cannot be read")),
        "{err}"
    );
    // The typo also leaves the credential without scopes, and that is reported in the same run.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("credentials.s2s: scopes must list at least one scope")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("imsgate: ") && l.contains("imsgate.toml")),
        "{err}"
    );
}

#[test]
fn a_group_readable_secret_names_the_chmod_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s2s.secret");
    write_private(&secret, "value", 0o644);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(&cfg, config("http://127.0.0.1:9")).unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", secret.display())),
        "{err}"
    );
    assert!(!err.contains("value\n"));

    write_private(&secret, "value", 0o600);
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_config_file_says_how_to_fix_it() {
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/imsgate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn logs_are_json_lines_with_the_flag_and_text_without() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("s2s.secret"), "value", 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}",
            config("http://127.0.0.1:9")
        ),
    )
    .unwrap();
    let first_line = |extra: &[&str]| {
        let mut child = Command::new(BIN)
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let _guard = Killed(child);
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        line
    };
    let json_line = first_line(&["--log-format", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&json_line).unwrap_or_else(|e| panic!("{e}: {json_line}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "imsgate broker listening");
    assert!(v["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    let text_line = first_line(&[]);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text_line).is_err(),
        "{text_line}"
    );
    assert!(
        text_line.contains("INFO") && text_line.contains("imsgate broker listening"),
        "{text_line}"
    );
}

#[test]
fn doctor_reports_each_redirect_rule_violation_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("w.secret"), "value", 0o600);
    write_private(&dir.path().join("k.secret"), &"k".repeat(40), 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        r#"
[credentials.web]
type = "enterprise_web_app"
client_id = "w"
client_secret = "file:w.secret"
scopes = ["openid"]
default_redirect_uri = "http://app.example.com/cb"
redirect_uri_patterns = ["https://.*\\.example\\.com/cb", "https://app\\.example\\.com:.*/cb", "https://app.example\\.com/cb/.*"]

[consent]
credential = "web"
public_url = "https://app.example.com"
return_to_origins = ["https://app.example.com"]

[internal_api]
api_key = "file:k.secret"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.trim().lines().collect();
    for want in [
        "default redirect URI, position 0",
        "redirect pattern [0], position 8",
        "redirect pattern [1], position 26",
        "redirect pattern [2], position 11",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(want) && l.starts_with("imsgate: ")),
            "missing {want:?} in:\n{err}"
        );
    }
}

// Multi-threaded: the emulator must keep serving while this thread waits on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_shows_which_client_secret_last_worked() {
    // IMS knows only the new secret; the config lists the old one first, as during rotation.
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "cli-client",
            "new-secret-value",
            &["openid", "AdobeID", "firefly_api"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("old.secret"), "old-secret-value", 0o600);
    write_private(&dir.path().join("new.secret"), "new-secret-value", 0o600);
    let cfg = dir.path().join("imsgate.toml");
    let text = config(emulator.base_url()).replace(
        "client_secret = \"file:s2s.secret\"",
        "client_secrets = [\"file:old.secret\", \"file:new.secret\"]",
    ) + "\n[storage]\nsqlite_path = \"state.sqlite\"\n";
    std::fs::write(&cfg, text).unwrap();

    let doctor = || {
        let out = Command::new(BIN)
            .args(["doctor", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let before = doctor();
    assert!(before.contains("secret [0] file:"), "{before}");
    assert!(before.contains("old.secret: never succeeded"), "{before}");
    assert!(before.contains("new.secret: never succeeded"), "{before}");

    let out = Command::new(BIN)
        .args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "s2s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = doctor();
    let old = after.lines().find(|l| l.contains("old.secret")).unwrap();
    let new = after.lines().find(|l| l.contains("new.secret")).unwrap();
    assert!(
        old.contains("never succeeded, refused by IMS 20"),
        "{after}"
    );
    assert!(new.contains("last succeeded 20"), "{after}");
    assert!(!after.contains("new-secret-value") && !after.contains("old-secret-value"));
}

#[test]
fn keys_generate_writes_a_private_key_and_a_certificate_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "keys",
            "generate",
            "--out-dir",
            dir.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Command::new(BIN).args(&args).output().unwrap()
    };
    let out = run(&[
        "--name",
        "sa",
        "--common-name",
        "Partner SA",
        "--organization",
        "Partner",
        "--days",
        "10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.path().join("sa.key.pem");
    let cert = dir.path().join("sa.cert.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("BEGIN PRIVATE KEY"),
        "the key is not printed"
    );
    let info = imsgate_ims::certificate::parse_pem(&std::fs::read(&cert).unwrap()).unwrap();
    assert!(
        info.subject.contains("CN=Partner SA") && info.subject.contains("O=Partner"),
        "{}",
        info.subject
    );
    let days = (info.not_after - info.not_before) / 86_400;
    assert_eq!(days, 10);
    let signer = imsgate_ims::service_account::AssertionKey::from_pem(
        &imsgate_ims::SecretString::new(key_pem),
    )
    .unwrap();
    assert_eq!(signer.public_key_der(), info.public_key);

    // Again with the same name: refused, and the existing key is untouched.
    let before = std::fs::read(&key).unwrap();
    let out = run(&["--name", "sa"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let out = run(&["--name", "x", "--bits", "1024"]);
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--bits 1024 is not supported")
    );
}

#[test]
fn keys_list_and_doctor_show_which_certificate_signs_and_warn() {
    let dir = tempfile::tempdir().unwrap();
    let gen_key = |name: &str, days: &str| {
        let out = Command::new(BIN)
            .args([
                "keys",
                "generate",
                "--out-dir",
                dir.path().to_str().unwrap(),
                "--name",
                name,
                "--days",
                days,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    gen_key("old", "5");
    gen_key("new", "20");
    write_private(&dir.path().join("sa.secret"), "secret", 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        r#"
[ims]
base_url = "http://127.0.0.1:9"

[credentials.legacy]
type = "service_account"
client_id = "sa"
client_secret = "file:sa.secret"
org_id = "ORG@AdobeOrg"
technical_account_id = "TA@techacct.adobe.com"
metascopes = ["ent_dataservices_sdk"]
keys = [
  { private_key = "file:old.key.pem", certificate = "old.cert.pem" },
  { private_key = "file:new.key.pem", certificate = "new.cert.pem" },
]
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["keys", "list", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(out.stdout).unwrap();
    let old = list.lines().find(|l| l.contains("old.cert.pem")).unwrap();
    let new = list.lines().find(|l| l.contains("new.cert.pem")).unwrap();
    assert!(
        old.ends_with("valid  (CN=imsgate service account)"),
        "{list}"
    );
    assert!(new.contains("signs now"), "{list}");
    // The last valid certificate expires in 20 days, inside the 30-day warning.
    let warned = |text: &str| {
        ["19", "20"]
            .iter()
            .any(|d| text.contains(&format!("the last valid certificate expires in {d} days")))
    };
    assert!(warned(&list), "{list}");

    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = String::from_utf8(out.stdout).unwrap();
    assert!(
        doctor.contains("Adobe retired Service Account (JWT) credentials"),
        "{doctor}"
    );
    assert!(
        doctor.contains("new.cert.pem valid") && doctor.contains("(signs now)"),
        "{doctor}"
    );
    assert!(warned(&doctor), "{doctor}");
}

#[test]
fn an_api_key_credential_is_shown_by_doctor_and_has_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        "[credentials.stock]\ntype = \"api_key\"\nclient_id = \"stock-search-client\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = String::from_utf8(out.stdout).unwrap();
    assert!(
        doctor.contains("credential \"stock\": api_key, client id stock-search-client"),
        "{doctor}"
    );
    assert!(doctor.contains("x-api-key"), "{doctor}");
    let out = Command::new(BIN)
        .args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "stock",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("has no token; send its client id as the x-api-key header"),
        "{err}"
    );
}

fn run_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

// Multi-threaded: the emulator keeps serving while this thread waits on child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystore_round_trip_master_rotation_and_a_wrong_master_key() {
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "cli-client",
            "kept-in-the-keystore-42",
            &["openid", "AdobeID", "firefly_api"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imsgate.toml");
    let write_config = |master: &str| {
        let text = config(emulator.base_url()).replace(
            "client_secret = \"file:s2s.secret\"",
            "client_secret = \"keystore:s2s\"",
        ) + &format!(
            "\n[keystore]\npath = \"secrets.keystore\"\nmaster_keys = [\"file:{master}\"]\n"
        );
        std::fs::write(&cfg, text).unwrap();
    };
    let c = cfg.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut all = vec!["secrets", "--config", c.as_str()];
        all.extend_from_slice(args);
        Command::new(BIN).args(&all).output().unwrap()
    };
    let token = || {
        Command::new(BIN)
            .args(["token", "--config", c.as_str(), "--credential", "s2s"])
            .output()
            .unwrap()
    };
    write_config("master.key");

    let out = cli(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let out = run_with_stdin(
        &["secrets", "--config", &c, "set", "s2s"],
        "kept-in-the-keystore-42\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keystore = std::fs::read_to_string(dir.path().join("secrets.keystore")).unwrap();
    assert!(!keystore.contains("kept-in-the-keystore-42"));

    let list = String::from_utf8(cli(&["list"]).stdout).unwrap();
    assert!(list.starts_with("s2s  (master key "), "{list}");
    assert!(!list.contains("kept-in"));
    let out = cli(&["get", "s2s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("--reveal"));
    let out = cli(&["get", "s2s", "--reveal"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "kept-in-the-keystore-42\n"
    );

    let out = token();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Rotate the master key, point the config at the new one, delete the old one.
    let out = cli(&[
        "rotate-master",
        "--new-key",
        dir.path().join("master2.key").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_config("master2.key");
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let out = token();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The wrong master key: one clear line, and the keystore is untouched.
    let before = std::fs::read(dir.path().join("secrets.keystore")).unwrap();
    write_private(
        &dir.path().join("other.key"),
        imsgate_broker::keystore::MasterKey::generate_text().expose(),
        0o600,
    );
    write_config("other.key");
    let out = token();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("credentials.s2s.client_secret: ") && err.contains("not among master_keys"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("secrets.keystore")).unwrap(),
        before
    );
    // With the right key back, everything is still there.
    write_config("master2.key");
    assert!(token().status.success());
}

#[test]
fn an_encryption_key_seals_user_tokens_and_doctor_shows_user_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tokens.key");
    let out = Command::new(BIN)
        .args(["keys", "encryption-key", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let kid = printed
        .trim()
        .rsplit("key id ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    assert_eq!(kid.len(), 16, "{printed}");
    // Never over an existing key.
    let before = std::fs::read(&key).unwrap();
    let out = Command::new(BIN)
        .args(["keys", "encryption-key", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    write_private(&dir.path().join("web.secret"), "s", 0o600);
    write_private(&dir.path().join("internal.key"), &"k".repeat(40), 0o600);
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        r#"
[credentials.web]
type = "oauth_web_app"
client_id = "web-client"
client_secret = "file:web.secret"
scopes = ["openid", "AdobeID"]
default_redirect_uri = "https://app.example.com/user/callback"

[user_login]
credential = "web"
public_url = "https://app.example.com"
return_to_origins = ["https://app.example.com"]
token_encryption_keys = ["file:tokens.key"]

[internal_api]
api_key = "file:internal.key"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = String::from_utf8(out.stdout).unwrap();
    assert!(
        doctor.contains(
            "user sign-in: credential \"web\", callback https://app.example.com/user/callback"
        ),
        "{doctor}"
    );
    assert!(
        doctor.contains(&format!("user tokens sealed with key {kid}")),
        "{doctor}"
    );
    assert!(
        doctor.contains("without the offline_access scope"),
        "{doctor}"
    );
    assert!(doctor.contains("0 user grant(s) stored"), "{doctor}");
    let out = Command::new(BIN)
        .args(["user-tokens", "list", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "no user has signed in"
    );
    let out = Command::new(BIN)
        .args(["user-tokens", "reseal", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("re-sealed 0 grant(s) with key {kid}")
    );
    let out = Command::new(BIN)
        .args([
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "web",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("its tokens belong to signed-in users"),
        "{err}"
    );

    // A key file that is not a key: one clear line.
    std::fs::write(&key, "not a key").unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("user_login.token_encryption_keys"), "{err}");

    // Without [user_login] the command says so in one line.
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        "[credentials.stock]\ntype = \"api_key\"\nclient_id = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["user-tokens", "list", "--config", plain.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no [user_login] section"), "{err}");
}

/// The emulator's /__admin API has no authentication, so `imsgate emulator` listens beyond
/// loopback only with `--allow-remote-admin`; without it, one line says what is wrong and how to
/// fix it.
#[test]
fn the_emulator_refuses_a_non_loopback_listen_without_the_flag() {
    // What the emulator does within a few seconds: exits (with its stderr) or prints its URL.
    let run = |args: &[&str]| -> Result<String, (bool, String)> {
        let mut child = Command::new(BIN)
            .arg("emulator")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut guard = Killed(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => Ok(line),
            // Stdout closed without a line: the process is exiting.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = guard.0.wait().unwrap();
                let mut err = String::new();
                std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
                Err((!status.success(), err))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err((false, "neither printed its URL nor exited".to_owned()))
            }
        }
    };
    for listen in ["0.0.0.0:0", "[::]:0"] {
        match run(&["--listen", listen]) {
            Err((true, err)) => {
                assert_eq!(err.trim().lines().count(), 1, "{err}");
                assert!(
                    err.starts_with("imsgate: ")
                        && err.contains(&format!("--listen {listen} is not a loopback address"))
                        && err.contains("/__admin")
                        && err.contains("--allow-remote-admin"),
                    "{err}"
                );
            }
            other => panic!("--listen {listen} without the flag: {other:?}"),
        }
    }
    // Loopback needs no flag; the flag lets it listen everywhere.
    for args in [
        &["--listen", "127.0.0.1:0"][..],
        &["--listen", "0.0.0.0:0", "--allow-remote-admin"][..],
    ] {
        let line = run(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
        assert!(
            line.starts_with("IMS emulator: http://"),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn the_demo_keeps_its_emulator_on_loopback() {
    let out = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--emulator-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("imsgate: ")
            && err.contains("--emulator-listen 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
}
