//! Native TLS over real sockets with a throwaway CA: HTTP/1.1 and HTTP/2 by ALPN, TLS 1.2 and 1.3
//! only, curl, certificate reload while connections stay open, the header timeout covering the
//! handshake, configuration errors; and the listeners: host names and the operator listener.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::config::Config;
use support::logs;
use support::tls::{Leaf, TestCa, client_config, connect, eventually, install_files, presented};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TlsBroker {
    broker: Broker,
    addr: SocketAddr,
    url: String,
    dir: tempfile::TempDir,
    _emulator: imsgate_emulator::RunningEmulator,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A broker with the harness's client-token config, serving `leaf` on 127.0.0.1.
async fn start(leaf: &Leaf, extra_server: &str) -> TlsBroker {
    let emulator = support::start_emulator(300).await;
    let dir = tempfile::tempdir().unwrap();
    support::write_secret(dir.path(), "client.secret", support::CLIENT_SECRET);
    support::write_secret(dir.path(), "caller.key", support::CALLER_KEY);
    leaf.install(dir.path());
    let text = support::config_text(
        emulator.base_url(),
        &support::Options {
            extra_server: format!(
                "tls_cert = \"tls.crt\"\ntls_key = \"file:tls.key\"\n{extra_server}"
            ),
            ..support::Options::default()
        },
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let b = broker.clone();
    let server = tokio::spawn(async move {
        let _ = b.serve(listener, std::future::pending()).await;
    });
    TlsBroker {
        broker,
        addr,
        url: format!("https://localhost:{}", addr.port()),
        dir,
        _emulator: emulator,
        server,
    }
}

fn reqwest_trusting(ca: &TestCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
}

async fn metrics(b: &TlsBroker) -> String {
    b.broker.state.metrics.render()
}

/// The console over HTTP/2, as a browser reaches it over native TLS: HTTP/2 has no `Host` header
/// (the host is `:authority`), and the same-origin check of the console's forms must still
/// accept the console's own origin and refuse another.
#[tokio::test]
async fn the_console_signs_in_over_http2() {
    let ca = TestCa::new("imsgate test CA");
    let leaf = ca.leaf("broker", &[]);
    let emulator = support::start_emulator(300).await;
    let dir = tempfile::tempdir().unwrap();
    support::write_secret(dir.path(), "client.secret", support::CLIENT_SECRET);
    support::write_secret(dir.path(), "caller.key", support::CALLER_KEY);
    support::write_secret(
        dir.path(),
        "internal.key",
        "console-h2-internal-key-0123456789",
    );
    leaf.install(dir.path());
    let text = support::config_text(
        emulator.base_url(),
        &support::Options {
            extra_server: "tls_cert = \"tls.crt\"\ntls_key = \"file:tls.key\"\n".to_owned(),
            ..support::Options::default()
        },
    ) + "\n[internal_api]\napi_key = \"file:internal.key\"\n";
    let config = Config::parse(&text, dir.path()).unwrap();
    let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let b = broker.clone();
    let server = tokio::spawn(async move {
        let _ = b.serve(listener, std::future::pending()).await;
    });
    let url = format!("https://localhost:{port}");
    let client = reqwest_trusting(&ca)
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |origin: String| {
        client
            .post(format!("{url}/admin/login"))
            .header("Origin", origin)
            .header("Sec-Fetch-Site", "same-origin")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("password=console-h2-internal-key-0123456789")
            .send()
    };
    let r = sign_in(url.clone()).await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-imsgate-admin="), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(format!("{url}/admin"))
        .header("Cookie", &session)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"csrf\""));
    // Another origin is still refused over HTTP/2.
    let r = sign_in("https://evil.test".to_owned()).await.unwrap();
    assert_eq!(r.status(), 403);
    server.abort();
}

#[tokio::test]
async fn http1_and_http2_by_alpn_serve_client_tokens() {
    let ca = TestCa::new("imsgate test CA");
    let b = start(&ca.leaf("broker", &[]), "").await;
    let caller = support::hs256(&support::claims("tls-user"), support::CALLER_KEY);
    let cases: &[(&str, reqwest::Client, reqwest::Version)] = &[
        (
            "http1 only",
            reqwest_trusting(&ca).http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
        (
            "h2 offered",
            reqwest_trusting(&ca).build().unwrap(),
            reqwest::Version::HTTP_2,
        ),
    ];
    for (name, client, version) in cases {
        let ready = eventually(Duration::from_secs(5), || async {
            client
                .get(format!("{}/readyz", b.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "{name}: never ready");
        let r = client
            .get(format!("{}/api/client-token", b.url))
            .header("Authorization", format!("Bearer {caller}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), *version, "{name}");
        assert_eq!(r.status(), 200, "{name}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["clientAccessToken"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{name}: {body}"
        );
    }
    // Several requests at once on one HTTP/2 connection all complete.
    let client = reqwest_trusting(&ca)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let calls = (0..20).map(|_| {
        let client = client.clone();
        let url = format!("{}/healthz", b.url);
        async move { client.get(url).send().await.unwrap() }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_and_older_versions_refused() {
    let ca = TestCa::new("imsgate test CA");
    let b = start(&ca.leaf("broker", &[]), "").await;
    // (version pinned, version expected, ALPN offered, ALPN negotiated)
    type Case = (
        &'static rustls::SupportedProtocolVersion,
        rustls::ProtocolVersion,
        &'static [&'static [u8]],
        Option<&'static [u8]>,
    );
    let cases: &[Case] = &[
        (
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
            &[b"h2", b"http/1.1"],
            Some(b"h2"),
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            &[b"h2", b"http/1.1"],
            Some(b"h2"),
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            &[b"http/1.1"],
            Some(b"http/1.1"),
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            &[],
            None,
        ),
    ];
    for (pin, want, alpn, negotiated) in cases {
        let mut s = connect(b.addr, client_config(&ca.pem, &[*pin], alpn))
            .await
            .unwrap_or_else(|e| panic!("{want:?}: {e}"));
        assert_eq!(s.get_ref().1.protocol_version(), Some(*want));
        assert_eq!(
            s.get_ref().1.alpn_protocol(),
            *negotiated,
            "{want:?} {alpn:?}"
        );
        if negotiated != &Some(b"h2".as_slice()) {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            assert!(
                out.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    // rustls cannot speak TLS 1.1, so offer it by hand: a ClientHello with legacy_version 3.2 and
    // no supported_versions extension must get a protocol_version alert (70), never a ServerHello.
    for version in [[3u8, 2u8], [3, 1]] {
        let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        tcp.write_all(&legacy_client_hello(version)).await.unwrap();
        let mut reply = [0u8; 7];
        tcp.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[0], 21, "an alert record, not a handshake: {reply:?}");
        assert_eq!(&reply[5..], &[2, 70], "fatal protocol_version: {reply:?}");
    }
}

/// A minimal TLS 1.0/1.1 ClientHello: ECDHE-RSA-AES128-SHA and AES128-SHA, SNI localhost,
/// signature algorithms.
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 4, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[1, 0]);
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    // signature_algorithms, so the only thing wrong with this hello is its version.
    let schemes = [0x04u8, 0x01, 0x04, 0x03, 0x08, 0x04, 0x08, 0x07];
    ext.extend_from_slice(&[0, 13]);
    ext.extend_from_slice(&((schemes.len() + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(schemes.len() as u16).to_be_bytes());
    ext.extend_from_slice(&schemes);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn curl_speaks_http2_and_http1_with_the_test_ca() {
    let Some(curl) = support::tools::external_tool("curl") else {
        return;
    };
    let ca = TestCa::new("imsgate test CA");
    let b = start(&ca.leaf("broker", &[]), "").await;
    let ca_file = b.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = tokio::process::Command::new(&curl)
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca_file)
            .args([
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(format!("{}/healthz", b.url))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, format!("{want} 200"), "curl {flag}");
    }
    // Without the CA, curl refuses the certificate: the trust is real.
    let out = tokio::process::Command::new(&curl)
        .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
        .arg(format!("{}/healthz", b.url))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

/// Sends one request on an open HTTP/1.1 connection and returns the status line.
async fn request_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    // /healthz answers a short body; read it off so the next request starts clean.
    let text = String::from_utf8_lossy(&got).to_string();
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut have = got.len() - head_end;
    while have < len {
        have += s.read(&mut buf).await.unwrap();
    }
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn changed_files_are_reloaded_while_open_connections_carry_on() {
    let ca = TestCa::new("imsgate test CA");
    let first = ca.leaf("broker-1", &[]);
    let b = start(&first, "tls_check_interval_ms = 100").await;
    assert_eq!(presented(b.addr, &ca.pem).await, first.der);
    // Both outcome series exist before any reload.
    let m = metrics(&b).await;
    for outcome in ["success", "failure"] {
        let zero = format!("imsgate_tls_reloads_total{{outcome=\"{outcome}\"}} 0");
        assert!(m.contains(&zero), "{m}");
    }
    // A connection opened (and used) before the reload.
    let mut old = connect(
        b.addr,
        client_config(&ca.pem, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(request_on(&mut old).await, "HTTP/1.1 200 OK");

    let second = ca.leaf("broker-2", &["broker-2.test"]);
    second.install(b.dir.path());
    let swapped = eventually(Duration::from_secs(5), || async {
        presented(b.addr, &ca.pem).await == second.der
    })
    .await;
    assert!(swapped, "new handshakes never saw the new certificate");
    assert_eq!(request_on(&mut old).await, "HTTP/1.1 200 OK");
    assert_eq!(
        old.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
        first.der.as_slice()
    );
    let m = metrics(&b).await;
    assert!(
        m.contains("imsgate_tls_reloads_total{outcome=\"success\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("imsgate_tls_certificate_not_after_seconds "),
        "{m}"
    );

    // Broken replacements are refused and the current pair stays: a key from another pair, a
    // file that is not PEM, an empty chain.
    let other = ca.leaf("broker-3", &[]);
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.leaf_valid(
        "expired",
        &[],
        now - time::Duration::days(60),
        now - time::Duration::days(1),
    );
    let broken: &[(&str, &str, &str)] = &[
        // Valid PEM and a matching key, but expired: it would replace a certificate that works.
        ("expired certificate", &expired.chain_pem, &expired.key_pem),
        ("mismatched key", &other.chain_pem, &second.key_pem),
        ("garbage certificate", "not a certificate", &second.key_pem),
        (
            "garbage key",
            &second.chain_pem,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
    ];
    for (i, (name, cert, key)) in broken.iter().enumerate() {
        install_files(b.dir.path(), cert, key);
        let want = format!("imsgate_tls_reloads_total{{outcome=\"failure\"}} {}", i + 1);
        let refused = eventually(Duration::from_secs(5), || async {
            metrics(&b).await.contains(&want)
        })
        .await;
        assert!(
            refused,
            "{name}: no failed reload counted\n{}",
            metrics(&b).await
        );
        assert_eq!(presented(b.addr, &ca.pem).await, second.der, "{name}");
    }
    // A refused pair is reported once, not at every check.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        metrics(&b)
            .await
            .contains("imsgate_tls_reloads_total{outcome=\"failure\"} 4")
    );
    // Fixing the files brings the next pair in.
    other.install(b.dir.path());
    let fixed = eventually(Duration::from_secs(5), || async {
        presented(b.addr, &ca.pem).await == other.der
    })
    .await;
    assert!(fixed);
    // An explicit reload (what SIGHUP does) with unchanged files reloads the same pair.
    let summary = b.broker.tls.as_ref().unwrap().reload("test").unwrap();
    assert!(summary.subject.contains("broker-3"), "{summary:?}");
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_closed_after_the_header_timeout() {
    let ca = TestCa::new("imsgate test CA");
    let b = start(&ca.leaf("broker", &[]), "header_timeout_ms = 300").await;
    // Nothing at all, and half a ClientHello.
    let partial = &legacy_client_hello([3, 3])[..20];
    for (name, send) in [("silent", &[][..]), ("partial hello", partial)] {
        let started = std::time::Instant::now();
        let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        tcp.write_all(send).await.unwrap();
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{name}: still open after 5 s"));
        assert!(matches!(r, Ok(0) | Err(_)), "{name}: {r:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "{name}: closed too early ({took:?})"
        );
        assert!(took < Duration::from_secs(3), "{name}: {took:?}");
    }
    let m = metrics(&b).await;
    assert!(
        m.contains("imsgate_http_connections_closed_total{reason=\"header_timeout\"} 2"),
        "{m}"
    );
    // A real client still gets through.
    assert!(!presented(b.addr, &ca.pem).await.is_empty());
}

/// An HTTP/2 connection over TLS that has answered one request; the returned task ends when the
/// server closes the connection (the client keeps it open as long as its `SendRequest` lives).
async fn idle_h2(
    addr: SocketAddr,
    ca: &TestCa,
) -> (
    tokio::task::JoinHandle<()>,
    h2::client::SendRequest<bytes::Bytes>,
) {
    let tls = connect(
        addr,
        client_config(&ca.pem, rustls::DEFAULT_VERSIONS, &[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut send, conn) = h2::client::handshake(tls).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = axum::http::Request::get(format!("https://localhost:{}/healthz", addr.port()))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    (task, send)
}

#[tokio::test]
async fn http2_connections_keep_to_the_idle_timeout_and_the_connection_cap() {
    let ca = TestCa::new("imsgate test CA");
    let b = start(
        &ca.leaf("broker", &[]),
        "keepalive_timeout_ms = 400
max_connections = 1",
    )
    .await;
    // An idle HTTP/2 connection is closed after the keep-alive timeout, not before.
    let started = std::time::Instant::now();
    let (idle, _keep) = idle_h2(b.addr, &ca).await;
    tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .expect("an idle HTTP/2 connection stayed open")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    // At the cap (one), a new connection evicts the idle one.
    let (first, _keep_first) = idle_h2(b.addr, &ca).await;
    let _second = idle_h2(b.addr, &ca).await;
    tokio::time::timeout(Duration::from_secs(2), first)
        .await
        .expect("the idle HTTP/2 connection was not evicted for the new one")
        .unwrap();
    let m = metrics(&b).await;
    assert!(
        m.contains("imsgate_http_connections_closed_total{reason=\"idle_timeout\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("imsgate_http_connections_closed_total{reason=\"evicted\"} 1"),
        "{m}"
    );
}

fn dir_with_secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::write_secret(dir.path(), "client.secret", support::CLIENT_SECRET);
    support::write_secret(dir.path(), "caller.key", support::CALLER_KEY);
    dir
}

fn build(dir: &std::path::Path, extra_server: &str) -> Result<Broker, Vec<String>> {
    let text = support::config_text(
        "http://127.0.0.1:9",
        &support::Options {
            extra_server: extra_server.to_owned(),
            ..support::Options::default()
        },
    );
    let config = Config::parse(&text, dir).map_err(|e| e.problems)?;
    Broker::build(config, Arc::new(SystemClock))
}

#[tokio::test]
async fn tls_configuration_problems_are_clear() {
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::new("imsgate test CA");
    let good = ca.leaf("broker", &[]);
    let other = ca.leaf("other", &[]);
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.leaf_valid(
        "old",
        &[],
        now - time::Duration::days(60),
        now - time::Duration::days(1),
    );
    let both = "tls_cert = \"tls.crt\"\ntls_key = \"file:tls.key\"";
    // (case, cert file, key file, key mode, [server] lines, expected problem or None)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u32,
        &'a str,
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        (
            "good pair",
            Some(&good.chain_pem),
            Some(&good.key_pem),
            0o600,
            both,
            None,
        ),
        (
            "cert alone",
            Some(&good.chain_pem),
            None,
            0o600,
            "tls_cert = \"tls.crt\"",
            Some("server.tls_key: tls_cert is set but tls_key is not"),
        ),
        (
            "key alone",
            None,
            Some(&good.key_pem),
            0o600,
            "tls_key = \"file:tls.key\"",
            Some("server.tls_cert: tls_key is set but tls_cert is not"),
        ),
        (
            "inline key",
            Some(&good.chain_pem),
            None,
            0o600,
            "tls_cert = \"tls.crt\"\ntls_key = \"-----BEGIN PRIVATE KEY-----\"",
            Some("server.tls_key: secret reference"),
        ),
        (
            "missing cert file",
            None,
            Some(&good.key_pem),
            0o600,
            both,
            Some("server.tls_cert: cannot read"),
        ),
        (
            "not PEM",
            Some("hello"),
            Some(&good.key_pem),
            0o600,
            both,
            Some("holds no certificate"),
        ),
        (
            "missing key file",
            Some(&good.chain_pem),
            None,
            0o600,
            both,
            Some("server.tls_key: secret file"),
        ),
        (
            "key readable by others",
            Some(&good.chain_pem),
            Some(&good.key_pem),
            0o644,
            both,
            Some("chmod 600"),
        ),
        (
            "key not PEM",
            Some(&good.chain_pem),
            Some("secret"),
            0o600,
            both,
            Some("holds no PEM private key"),
        ),
        (
            "key of another pair",
            Some(&good.chain_pem),
            Some(&other.key_pem),
            0o600,
            both,
            Some("does not match the certificate"),
        ),
        // An expired certificate is served (with a warning): refusing to start would turn a
        // renewal mistake into an outage of every client that does not check.
        (
            "expired",
            Some(&expired.chain_pem),
            Some(&expired.key_pem),
            0o600,
            both,
            None,
        ),
    ];
    for (name, cert, key, mode, server, want) in cases {
        let dir = dir_with_secrets();
        if let Some(c) = cert {
            std::fs::write(dir.path().join("tls.crt"), c).unwrap();
        }
        if let Some(k) = key {
            let p = dir.path().join("tls.key");
            std::fs::write(&p, k).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let got = build(dir.path(), server);
        match (want, got) {
            (None, Ok(b)) => assert!(b.tls.is_some(), "{name}"),
            (Some(w), Err(problems)) => {
                assert!(
                    problems.iter().any(|p| p.contains(w)),
                    "{name}: {problems:?}"
                );
                // The key's content never shows up in a message.
                assert!(
                    !problems
                        .iter()
                        .any(|p| p.contains("BEGIN PRIVATE KEY-----\n")),
                    "{name}: {problems:?}"
                );
            }
            (want, got) => panic!("{name}: wanted {want:?}, got {:?}", got.err()),
        }
    }
}

/// A broker with client tokens, consent and user sign-in, so every route group exists.
fn full_config(emulator_url: &str, server: &str) -> String {
    let base = support::config_text(
        emulator_url,
        &support::Options {
            extra_server: server.to_owned(),
            ..support::Options::default()
        },
    );
    format!(
        r#"{base}
[credentials.partner]
type = "enterprise_web_app"
client_id = "partner-web-app"
client_secret = "file:client.secret"
scopes = ["openid", "AdobeID", "read_organizations"]
default_redirect_uri = "https://broker.partner.test/consent/callback"

[consent]
credential = "partner"
public_url = "https://broker.partner.test"
consent_url = "{emulator_url}/consent"
return_to_origins = ["https://app.partner.test"]

[credentials.web]
type = "oauth_web_app"
client_id = "partner-user-app"
client_secret = "file:client.secret"
scopes = ["openid", "AdobeID"]
default_redirect_uri = "https://broker.partner.test/user/callback"

[user_login]
credential = "web"
public_url = "https://broker.partner.test"
return_to_origins = ["https://app.partner.test"]
token_encryption_keys = ["file:tokens.key"]

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "imsgate.sqlite"
"#
    )
}

/// Whether the listener serves the route: anything but the router's own "no such endpoint".
async fn served(client: &reqwest::Client, method: &str, url: &str) -> bool {
    let r = client
        .request(method.parse().unwrap(), url)
        .send()
        .await
        .unwrap();
    if r.status() != 404 {
        return true;
    }
    let body = r.text().await.unwrap();
    !body.contains("no such endpoint")
}

#[tokio::test]
async fn the_operator_listener_takes_every_operator_route_off_the_public_one() {
    let emulator = support::start_emulator(300).await;
    // (method, path, on the public listener, on the operator listener)
    let routes: &[(&str, &str, bool, bool)] = &[
        ("GET", "/healthz", true, true),
        ("GET", "/readyz", true, true),
        ("GET", "/api/client-token", true, false),
        ("GET", "/connect/some-ticket", true, false),
        ("GET", "/consent/callback?state=x", true, false),
        ("GET", "/login/some-ticket", true, false),
        ("GET", "/user/callback?state=x", true, false),
        ("GET", "/metrics", false, true),
        ("GET", "/admin", false, true),
        ("POST", "/admin/login", false, true),
        ("POST", "/admin/refresh", false, true),
        ("GET", "/openapi.json", false, true),
        ("POST", "/api/connections", false, true),
        ("GET", "/api/connections", false, true),
        ("GET", "/api/connections/acct-1", false, true),
        ("DELETE", "/api/connections/acct-1", false, true),
        ("POST", "/api/orgs/ORG@AdobeOrg/token", false, true),
        ("POST", "/api/user-logins", false, true),
        ("POST", "/api/users/someone/token", false, true),
        ("DELETE", "/api/users/someone/token", false, true),
        ("GET", "/no/such/route", false, false),
    ];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for split in [true, false] {
        let dir = dir_with_secrets();
        support::write_secret(
            dir.path(),
            "internal.key",
            "internal-api-key-0123456789abcdefghij",
        );
        support::write_secret(
            dir.path(),
            "tokens.key",
            imsgate_broker::keystore::MasterKey::generate_text().expose(),
        );
        let server = if split {
            "admin_listen = \"127.0.0.1:0\""
        } else {
            ""
        };
        let config = Config::parse(&full_config(emulator.base_url(), server), dir.path()).unwrap();
        let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
        let listeners = broker.bind().await.unwrap();
        assert_eq!(listeners.admin.len(), usize::from(split));
        let public = listeners.public[0].local_addr().unwrap();
        let admin = listeners.admin.first().map(|l| l.local_addr().unwrap());
        let b = broker.clone();
        let task = tokio::spawn(async move {
            let _ = b.serve_listeners(listeners, std::future::pending()).await;
        });
        for (method, path, on_public, on_admin) in routes {
            let got = served(&client, method, &format!("http://{public}{path}")).await;
            // Without admin_listen the one listener serves every route.
            let want = if split {
                *on_public
            } else {
                *on_public || *on_admin
            };
            assert_eq!(
                got, want,
                "split={split}: {method} {path} on the public listener"
            );
            if let Some(admin) = admin {
                let got = served(&client, method, &format!("http://{admin}{path}")).await;
                assert_eq!(got, *on_admin, "{method} {path} on the operator listener");
            }
        }
        task.abort();
    }
}

#[tokio::test]
async fn listen_accepts_a_host_name() {
    let dir = dir_with_secrets();
    let text = support::config_text("http://127.0.0.1:9", &support::Options::default())
        .replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:0\"");
    let config = Config::parse(&text, dir.path()).unwrap();
    assert_eq!(config.server.listen.to_string(), "localhost:0");
    let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
    let listeners = broker.bind().await.unwrap();
    let addrs: Vec<SocketAddr> = listeners
        .public
        .iter()
        .map(|l| l.local_addr().unwrap())
        .collect();
    assert!(!addrs.is_empty());
    // Every address localhost resolved to is served, on one port.
    assert!(
        addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == addrs[0].port()),
        "{addrs:?}"
    );
    let b = broker.clone();
    let task = tokio::spawn(async move {
        let _ = b.serve_listeners(listeners, std::future::pending()).await;
    });
    for a in &addrs {
        let r = reqwest::get(format!("http://{a}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200, "{a}");
    }
    task.abort();
    // A name that resolves to nothing is a clear start-up error.
    let text = support::config_text("http://127.0.0.1:9", &support::Options::default()).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"no-such-host.invalid:0\"",
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
    let e = broker.bind().await.unwrap_err();
    assert!(
        e[0].starts_with("server.listen: no-such-host.invalid:0: cannot resolve"),
        "{e:?}"
    );
}

// One thread, so every event reaches the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn private_keys_never_reach_the_logs() {
    let (capture, _guard) = logs::capture(tracing::Level::TRACE);

    let ca = TestCa::new("imsgate test CA");
    let first = ca.leaf("broker", &[]);
    let other = ca.leaf("other", &[]);
    let b = start(&first, "tls_check_interval_ms = 3600000").await;
    let tls = b.broker.tls.as_ref().unwrap();
    // A key that does not match, a key that is not PEM, then a good one: each is logged.
    let marker = "MARKER-not-a-key-7f3a9c1e";
    for (cert, key) in [
        (&first.chain_pem, other.key_pem.clone()),
        (
            &first.chain_pem,
            format!("-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----\n"),
        ),
        (&other.chain_pem, other.key_pem.clone()),
    ] {
        install_files(b.dir.path(), cert, &key);
        let _ = tls.reload("test");
    }
    assert_eq!(presented(b.addr, &ca.pem).await, other.der);
    let logs = capture.text();
    assert!(logs.contains("TLS certificate reload refused"), "{logs}");
    assert!(logs.contains("TLS certificate reloaded"), "{logs}");
    assert!(!logs.contains(marker), "{logs}");
    for key in [&first.key_pem, &other.key_pem] {
        for line in key
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(!logs.contains(line), "a key line reached the logs: {line}");
        }
    }
}
