//! `imsgate doctor` (offline, no side effects) and `imsgate doctor --online` (real checks), and
//! network errors that name the URL and the cause, run as the real binary against the emulator.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use imsgate_emulator::{
    Emulator, EmulatorClient, EmulatorConfig, Endpoint, Fault, RunningEmulator,
};

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");

fn write_private(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn emulator() -> RunningEmulator {
    Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "doc-client",
            "good-secret-value",
            &["openid", "AdobeID", "firefly_api"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

/// A config with a client-token endpoint (whose token `serve` would fetch at once) and storage.
fn config(base_url: &str, extra_ims: &str) -> String {
    format!(
        r#"
[ims]
base_url = "{base_url}"
{extra_ims}

[credentials.s2s]
type = "oauth_server_to_server"
client_id = "doc-client"
client_secret = "file:s2s.secret"
scopes = "openid,AdobeID,firefly_api"

[client_token]
credential = "s2s"
token_id_namespace = "6f1f7e36-4a36-4a4b-9a57-1b5a8c1b4f10"

[client_token.caller_auth]
issuer = "https://app.example.com"
audience = "imsgate"
hs256_secret = "file:caller.key"

[storage]
sqlite_path = "state.sqlite"
"#
    )
}

fn setup(dir: &Path, base_url: &str, secret: &str, extra_ims: &str) -> std::path::PathBuf {
    write_private(&dir.join("s2s.secret"), secret);
    write_private(&dir.join("caller.key"), &"c".repeat(48));
    let cfg = dir.join("imsgate.toml");
    std::fs::write(&cfg, config(base_url, extra_ims)).unwrap();
    cfg
}

/// Name → (size, mtime in ns) of every entry in `dir`. The `-shm` file's mtime is left out: it is
/// SQLite's shared-memory index of the WAL, not data, and any reader of a WAL database (a
/// read-only one too) records its read mark there.
fn listing(dir: &Path) -> BTreeMap<String, (u64, i128)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let mtime = if name.ends_with("-shm") {
                0
            } else {
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
            };
            (name, (m.len(), mtime))
        })
        .collect()
}

fn total_requests(emulator: &RunningEmulator) -> u64 {
    Endpoint::ALL.iter().map(|e| emulator.count(*e)).sum()
}

async fn imsgate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_offline() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), emulator.base_url(), "good-secret-value", "");
    let cfg = cfg.to_str().unwrap();

    // No database yet: doctor creates none, and asks IMS nothing.
    let before = listing(dir.path());
    let (code, out, err) = imsgate(&["doctor", "--config", cfg]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("state.sqlite (does not exist yet"), "{out}");
    assert_eq!(listing(dir.path()), before, "doctor changed the directory");
    assert_eq!(total_requests(&emulator), 0, "doctor sent a request to IMS");

    // With a database (written by `imsgate token`), doctor reads it without touching it.
    let (code, _, err) = imsgate(&["token", "--config", cfg, "--credential", "s2s"]).await;
    assert_eq!(code, Some(0), "{err}");
    emulator.reset_counts();
    assert!(dir.path().join("state.sqlite").exists());
    let before = listing(dir.path());
    let (code, out, err) = imsgate(&["doctor", "--config", cfg]).await;
    assert_eq!(code, Some(0), "{err}");
    let secret_line = out.lines().find(|l| l.contains("secret [0]")).unwrap();
    assert!(secret_line.contains("last succeeded 20"), "{out}");
    assert_eq!(listing(dir.path()), before, "doctor changed the directory");
    assert_eq!(total_requests(&emulator), 0, "doctor sent a request to IMS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_online_passes_every_check_against_a_healthy_ims() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), emulator.base_url(), "good-secret-value", "");
    // A caller-auth JWKS too (the emulator's keys serve as one).
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "hs256_secret = \"file:caller.key\"",
        &format!("jwks_url = \"{}/ims/keys\"", emulator.base_url()),
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) =
        imsgate(&["doctor", "--online", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let checks: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "online checks:")
        .skip(1)
        .collect();
    let expected: &[(&str, &str)] = &[
        (
            "PASS credential \"s2s\" secret [0] file:",
            "IMS issued a token (valid 3600 s); IMS validates it",
        ),
        ("PASS IMS keys: ", " key(s)"),
        ("PASS IMS discovery: ", "issuer "),
        ("PASS storage: ", "does not exist yet"),
        ("PASS caller-auth keys: ", "/ims/keys: "),
    ];
    assert_eq!(checks.len(), expected.len(), "{out}");
    for (line, (start, middle)) in checks.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "{line:?} should start with {start:?}"
        );
        assert!(line.contains(middle), "{line:?} should contain {middle:?}");
        assert!(
            regex_like_ms(line),
            "{line:?} should end with its time in ms"
        );
    }
    assert!(!out.contains("good-secret-value"));
    // The store check leaves nothing behind, and a token request per secret was made.
    assert!(!dir.path().join("state.sqlite").exists());
    assert_eq!(emulator.count(Endpoint::Token), 1);
    assert_eq!(emulator.count(Endpoint::Validate), 1);

    // With the database present the write is tried and rolled back.
    let (code, _, err) = imsgate(&[
        "token",
        "--config",
        cfg.to_str().unwrap(),
        "--credential",
        "s2s",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = imsgate(&["doctor", "--online", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("accepts writes (a test write was rolled back)"),
        "{out}"
    );
}

/// `... (N ms)` at the end of the line.
fn regex_like_ms(line: &str) -> bool {
    line.strip_suffix(" ms)")
        .and_then(|l| l.rsplit_once(" ("))
        .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
}

/// Each failure exits 1, names the check and says why in plain words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_online_failures_name_the_credential_and_the_cause() {
    let emulator = emulator().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ok = emulator.base_url().to_owned();
    let refused = format!("http://127.0.0.1:{closed}");
    // (what, base_url, secret, [ims] extra, slow token endpoint, expected in the FAIL line)
    type Case<'a> = (&'a str, String, &'a str, &'a str, bool, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            ok.clone(),
            "wrong-secret-value",
            "",
            false,
            vec![
                "FAIL credential \"s2s\" secret [0] file:".into(),
                "IMS refused the client id or client secret (invalid_client".into(),
            ],
        ),
        (
            "IMS unreachable",
            refused.clone(),
            "good-secret-value",
            "",
            false,
            vec![
                "FAIL credential \"s2s\" secret [0]".into(),
                format!("cannot reach IMS at {refused}/ims/token/v3: connection refused"),
            ],
        ),
        (
            "slow IMS",
            ok.clone(),
            "good-secret-value",
            "request_timeout_ms = 300",
            true,
            vec![
                "FAIL credential \"s2s\" secret [0]".into(),
                format!(
                    "cannot reach IMS at {ok}/ims/token/v3: timed out (no answer after 300 ms)"
                ),
            ],
        ),
    ];
    for (what, base, secret, extra, slow, expected) in cases {
        if slow {
            emulator.set_fault(Endpoint::Token, Fault::latency(Duration::from_secs(3)));
        } else {
            emulator.clear_faults();
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path(), &base, secret, extra);
        let (code, out, err) =
            imsgate(&["doctor", "--online", "--config", cfg.to_str().unwrap()]).await;
        assert_eq!(code, Some(1), "{what}: {out}\n{err}");
        let fail = out
            .lines()
            .find(|l| l.starts_with("FAIL credential"))
            .unwrap_or_else(|| panic!("{what}: no FAIL line in {out}"));
        for e in &expected {
            assert!(
                fail.contains(e.as_str()),
                "{what}: {fail:?} should contain {e:?}"
            );
        }
        let err_lines: Vec<&str> = err.trim().lines().collect();
        assert_eq!(err_lines.len(), 1, "{what}: {err}");
        assert!(
            err_lines[0].starts_with("imsgate: ")
                && err_lines[0].contains("online checks failed: credential \"s2s\" secret [0]"),
            "{what}: {err}"
        );
        assert!(!out.contains(secret) && !err.contains(secret), "{what}");
    }
    emulator.clear_faults();
}

/// `imsgate token` names the URL and the cause of a network failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_errors_name_the_url_and_the_cause() {
    let emulator = emulator().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ok = emulator.base_url().to_owned();
    let tls = ok.replace("http://", "https://");
    let refused = format!("http://127.0.0.1:{closed}");
    let dns = "http://imsgate-test.invalid".to_owned();
    // (base_url, [ims] extra, slow, expected)
    let cases: Vec<(String, &str, bool, String)> = vec![
        (
            refused.clone(),
            "",
            false,
            format!("cannot reach IMS at {refused}/ims/token/v3: connection refused"),
        ),
        (
            dns.clone(),
            "",
            false,
            format!(
                "cannot reach IMS at {dns}/ims/token/v3: DNS lookup of \"imsgate-test.invalid\" failed"
            ),
        ),
        (
            tls.clone(),
            "",
            false,
            format!(
                "cannot reach IMS at {tls}/ims/token/v3: TLS error: the server did not answer with TLS"
            ),
        ),
        (
            ok.clone(),
            "request_timeout_ms = 300",
            true,
            format!("cannot reach IMS at {ok}/ims/token/v3: timed out (no answer after 300 ms)"),
        ),
    ];
    for (base, extra, slow, expected) in cases {
        if slow {
            emulator.set_fault(Endpoint::Token, Fault::latency(Duration::from_secs(3)));
        } else {
            emulator.clear_faults();
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path(), &base, "good-secret-value", extra);
        let (code, out, err) = imsgate(&[
            "token",
            "--config",
            cfg.to_str().unwrap(),
            "--credential",
            "s2s",
        ])
        .await;
        assert_eq!(code, Some(1), "{base}: {out}\n{err}");
        // The log line (a warning) says the same; the error is the one `imsgate:` line.
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("imsgate: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        let err = errors[0];
        assert!(
            err.starts_with("imsgate: cannot obtain a token for \"s2s\": "),
            "{err}"
        );
        assert!(
            err.contains(&expected),
            "{err:?} should contain {expected:?}"
        );
    }
    emulator.clear_faults();
}

/// A key pair with a certificate valid from `from_days` to `to_days` from now.
fn certificate(dir: &Path, name: &str, from_days: i64, to_days: i64) {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::default();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let cert = params.self_signed(&key).unwrap();
    write_private(&dir.join(format!("{name}.key.pem")), &key.serialize_pem());
    std::fs::write(dir.join(format!("{name}.cert.pem")), cert.pem()).unwrap();
}

/// Doctor says which certificates are expired or not yet valid, and fails when none of a
/// service account's certificates is valid now.
#[test]
fn doctor_fails_when_no_certificate_of_a_service_account_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "old", -30, -1);
    certificate(dir.path(), "future", 5, 60);
    certificate(dir.path(), "current", -1, 365);
    write_private(&dir.path().join("sa.secret"), "secret");
    let cfg = dir.path().join("imsgate.toml");
    let write = |keys: &str| {
        std::fs::write(
            &cfg,
            format!(
                r#"
[credentials.legacy]
type = "service_account"
client_id = "sa"
client_secret = "file:sa.secret"
org_id = "ORG@AdobeOrg"
technical_account_id = "TA@techacct.adobe.com"
metascopes = ["ent_dataservices_sdk"]
keys = [{keys}]
"#
            ),
        )
        .unwrap();
    };
    let key = |n: &str| {
        format!("{{ private_key = \"file:{n}.key.pem\", certificate = \"{n}.cert.pem\" }}")
    };
    let doctor = || {
        std::process::Command::new(BIN)
            .args(["doctor", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };

    write(&[key("old"), key("future"), key("current")].join(", "));
    let out = doctor();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (file, state) in [
        ("old.cert.pem", "(expired)"),
        ("future.cert.pem", "(not yet valid)"),
        ("current.cert.pem", "(signs now)"),
    ] {
        let line = text.lines().find(|l| l.contains(file)).unwrap();
        assert!(line.ends_with(state), "{line}");
    }

    write(&[key("old"), key("future")].join(", "));
    let out = doctor();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("imsgate: credentials.legacy: no certificate is valid now (each is expired or not yet valid)"),
        "{err}"
    );
}

/// Each secret of a service account is tried on its own at the JWT exchange: the right one
/// passes, the wrong one fails naming itself, and the preferred secret is not changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_online_tries_each_service_account_secret_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "sa", -1, 365);
    let cert = std::fs::read_to_string(dir.path().join("sa.cert.pem")).unwrap();
    let mut client = EmulatorClient::new("sa-client", "sa-secret-value", &["openid"], 3600);
    client.org_id = "ORG@AdobeOrg".into();
    client.technical_account = "TA@techacct.adobe.com".into();
    client.certificates = vec![cert];
    client.metascopes = vec!["ent_dataservices_sdk".into()];
    let emulator = Emulator::new(EmulatorConfig {
        clients: vec![client],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    write_private(&dir.path().join("new.secret"), "sa-secret-value");
    write_private(&dir.path().join("old.secret"), "revoked-secret-value");
    let cfg = dir.path().join("imsgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[ims]
base_url = "{}"

[credentials.sa]
type = "service_account"
client_id = "sa-client"
client_secrets = ["file:new.secret", "file:old.secret"]
org_id = "ORG@AdobeOrg"
technical_account_id = "TA@techacct.adobe.com"
metascopes = ["ent_dataservices_sdk"]
keys = [{{ private_key = "file:sa.key.pem", certificate = "sa.cert.pem" }}]
"#,
            emulator.base_url()
        ),
    )
    .unwrap();
    let (code, out, err) =
        imsgate(&["doctor", "--online", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| (l.starts_with("PASS") || l.starts_with("FAIL")) && l.contains(needle))
            .unwrap_or_else(|| panic!("no check line for {needle:?} in {out}"))
            .to_owned()
    };
    let new = line("new.secret");
    let old = line("old.secret");
    assert!(
        new.starts_with("PASS credential \"sa\" secret [0]") && new.contains("IMS issued a token"),
        "{new}"
    );
    assert!(
        old.starts_with("FAIL credential \"sa\" secret [1]")
            && old.contains("IMS refused the client id or client secret (invalid_client"),
        "{old}"
    );
    assert_eq!(emulator.count(Endpoint::JwtExchange), 2);
    assert_eq!(emulator.count(Endpoint::Token), 0);
    assert!(
        err.contains("1 of 4 online checks failed: credential \"sa\" secret [1]"),
        "{err}"
    );
}

/// Doctor loads the TLS pair as `serve` would: a key that does not match the certificate fails
/// it (naming the key), and the matching key passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_tls_pair() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "tls", -1, 30);
    certificate(dir.path(), "other", -1, 30);
    let cfg = setup(dir.path(), emulator.base_url(), "good-secret-value", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let with_key = |key: &str| {
        text.replacen(
            "[ims]",
            &format!("[server]\ntls_cert = \"tls.cert.pem\"\ntls_key = \"file:{key}\"\n\n[ims]"),
            1,
        )
    };
    std::fs::write(&cfg, with_key("other.key.pem")).unwrap();
    let (code, out, err) = imsgate(&["doctor", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("server.tls_key"), "{err}");
    std::fs::write(&cfg, with_key("tls.key.pem")).unwrap();
    let (code, out, err) = imsgate(&["doctor", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(total_requests(&emulator), 0);
}
