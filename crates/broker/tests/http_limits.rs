//! Connection limits and error shapes at the HTTP edge, over real TCP against a broker wired to the
//! in-process emulator: half-open connections above the cap, oversize and slow bodies, idle
//! keep-alive, and JSON for every refusal the service can shape.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::consent::{ConsentHarness, ConsentOptions, INTERNAL_KEY, RETURN_TO};
use support::{Harness, Options, caller};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// A request written raw, and everything the server sends back until it closes or `wait` passes.
async fn raw(url: &str, request: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr(url)).await.unwrap();
    s.write_all(request).await.unwrap();
    read_until_close(&mut s, wait).await
}

/// One response (head and a `Content-Length` body), without waiting for the connection to end.
async fn raw_response(url: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(url)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = header_of(&text, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return format!("{head}\r\n\r\n{body}");
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return text,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// What the server sent, and whether it closed the connection within `wait`.
async fn read_until_close(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json_of(resp: &str) -> Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn header_of<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Far more half-open connections than the cap: the broker keeps answering new clients at once,
/// and every held connection is closed by the header timeout (or earlier, to make room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_above_the_cap_do_not_starve_new_clients() {
    const CAP: usize = 40;
    const HELD: usize = 120;
    let h = Harness::start(Options {
        extra_server: format!("max_connections = {CAP}\nheader_timeout_ms = 1500"),
        ..Options::default()
    })
    .await;
    h.wait_ready().await;

    let mut held = Vec::new();
    for _ in 0..HELD {
        let mut s = TcpStream::connect(addr(&h.url)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: ")
            .await
            .unwrap();
        held.push(s);
    }
    let opened = Instant::now();

    // Fresh connections each time, so nothing rides on a kept-alive one.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    for _ in 0..5 {
        let t = Instant::now();
        let r = fresh()
            .get(format!("{}/healthz", h.url))
            .send()
            .await
            .expect("/healthz answers within a second while the cap is full");
        assert_eq!(r.status(), 200);
        let r = fresh()
            .get(format!("{}/api/client-token", h.url))
            .header("Authorization", format!("Bearer {}", caller("user-1")))
            .send()
            .await
            .expect("/api/client-token answers within a second while the cap is full");
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    // Every held connection is closed: most were evicted for room, the rest by the header
    // timeout (1.5 s). None may survive past the timeout plus the sweep period and some slack.
    let mut closed_late = 0;
    for s in &mut held {
        let left = Duration::from_millis(3500).saturating_sub(opened.elapsed());
        let (_, closed) = read_until_close(s, left).await;
        if !closed {
            closed_late += 1;
        }
    }
    assert_eq!(
        closed_late, 0,
        "held connections still open after the header timeout"
    );

    let m = fresh()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evicted = metric(
        &m,
        "imsgate_http_connections_closed_total{reason=\"evicted\"}",
    );
    let timed_out = metric(
        &m,
        "imsgate_http_connections_closed_total{reason=\"header_timeout\"}",
    );
    assert!(evicted >= (HELD - CAP) as f64, "evicted {evicted}");
    assert!(timed_out >= 1.0, "header timeouts {timed_out}");
    assert!(evicted + timed_out >= HELD as f64);
}

/// A connection that sent nothing at all, and one that sent part of its headers, are both closed
/// by the header timeout; a kept-alive connection idle after a response by the keep-alive timeout;
/// an answered connection with part of its next request by the header timeout again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_on_time() {
    let h = Harness::start(Options {
        extra_server: "header_timeout_ms = 600\nkeepalive_timeout_ms = 1800".into(),
        ..Options::default()
    })
    .await;
    let full = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".as_slice();
    // (what is sent, earliest close, latest close)
    let cases: &[(&str, &[u8], u64, u64)] = &[
        ("nothing", b"", 500, 1500),
        (
            "half a request head",
            b"GET /healthz HTTP/1.1\r\nHo",
            500,
            1500,
        ),
        ("a request, then idle", full, 1700, 3000),
    ];
    for (name, sent, min_ms, max_ms) in cases {
        let t = Instant::now();
        let (resp, closed) = raw(&h.url, sent, Duration::from_millis(*max_ms)).await;
        let took = t.elapsed().as_millis() as u64;
        assert!(closed, "{name}: still open after {max_ms} ms");
        assert!(took >= *min_ms, "{name}: closed after only {took} ms");
        if !sent.is_empty() && sent.ends_with(b"\r\n\r\n") {
            assert_eq!(status_of(&resp), 200, "{name}");
        }
    }
    // A kept-alive connection that starts its next request head and stalls: the header timeout,
    // not the longer keep-alive timeout.
    let mut s = TcpStream::connect(addr(&h.url)).await.unwrap();
    s.write_all(full).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
    let (_, closed) = read_until_close(&mut s, Duration::from_millis(1500)).await;
    assert!(
        closed,
        "a stalled second request head outlived the header timeout"
    );
    assert!(t.elapsed() < Duration::from_millis(1500));

    // A kept-alive connection idle for longer than the header timeout (but within the keep-alive
    // timeout) that then sends its next request head in two parts: the header timeout runs from
    // the first part, so the request is answered.
    let mut s = TcpStream::connect(addr(&h.url)).await.unwrap();
    s.write_all(full).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "a request head split in two after a long idle was not answered"
    );
}

/// A declared body above the cap is refused at once with 413 JSON, and the connection closed,
/// without waiting for a body that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_declared_body_is_refused_at_once() {
    let h = Harness::start(Options::default()).await;
    for path in ["/healthz", "/api/client-token", "/no/such/route"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999\r\n\r\n"
        );
        let t = Instant::now();
        let (resp, closed) = raw(&h.url, req.as_bytes(), Duration::from_secs(2)).await;
        assert_eq!(status_of(&resp), 413, "{path}: {resp}");
        assert_eq!(json_of(&resp)["error"], "request_too_large", "{path}");
        assert!(closed, "{path}: connection left open");
        assert!(t.elapsed() < Duration::from_secs(1), "{path}");
    }
}

/// Refusals the HTTP layer used to write as text/plain, each now JSON with the right status;
/// unauthenticated callers learn nothing about the path before the 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json() {
    let h = ConsentHarness::start(ConsentOptions {
        extra_server: "body_timeout_ms = 500\nmax_body_bytes = 2048".into(),
        ..ConsentOptions::default()
    })
    .await;
    let auth = format!("Authorization: Bearer {INTERNAL_KEY}\r\n");
    let good_body = format!(r#"{{"account_id":"acct-1","return_to":"{RETURN_TO}"}}"#);
    let big = "x".repeat(4000);
    // (name, raw request, status, error code)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "invalid UTF-8 in a path parameter, unauthenticated",
            "GET /api/connections/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            401,
            "unauthorized",
        ),
        (
            "invalid UTF-8 in a path parameter, authenticated",
            format!("GET /api/connections/%FF%FE HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8 in an org id, unauthenticated",
            "POST /api/orgs/%C3%28/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(),
            401,
            "unauthorized",
        ),
        (
            "a non-JSON body on a JSON endpoint",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{good_body}",
                good_body.len()
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "a JSON body with no content type",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{good_body}",
                good_body.len()
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "a chunked body above the cap",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
                big.len()
            ),
            413,
            "request_too_large",
        ),
        (
            "a malformed chunk",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            ),
            400,
            "invalid_request",
        ),
        (
            "a body that stops arriving",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"account_id\""
            ),
            408,
            "request_timeout",
        ),
        (
            "malformed JSON",
            format!(
                "POST /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{{\"a\":"
            ),
            400,
            "invalid_request",
        ),
        (
            "an unknown method on a route",
            format!(
                "PATCH /api/connections HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n"
            ),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, req, status, code) in &cases {
        let resp = raw_response(&h.url, req.as_bytes()).await;
        assert_eq!(status_of(&resp), *status, "{name}: {resp}");
        assert_eq!(
            header_of(&resp, "content-type"),
            Some("application/json"),
            "{name}: {resp}"
        );
        let body = json_of(&resp);
        assert_eq!(body["error"], *code, "{name}: {resp}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{name}: {resp}"
        );
    }
    // The well-formed request still works.
    let r = h
        .http
        .post(format!("{}/api/connections", h.url))
        .bearer_auth(INTERNAL_KEY)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(good_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The answers docs/http-api.md lists as written by the HTTP layer itself, before imsgate sees
/// the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_the_http_layer_are_as_documented() {
    let h = Harness::start(Options::default()).await;
    let huge = "a".repeat(20 * 1024);
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    // (name, raw request, status). With both framings the body is read as chunked (RFC 9112
    // §6.3) and the connection closed after the answer, so nothing can be smuggled behind it.
    let cases: Vec<(&str, String, u16)> = vec![
        ("garbage request line", "NOT HTTP\r\n\r\n".into(), 400),
        (
            "invalid header name",
            "GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n".into(),
            400,
        ),
        (
            "non-numeric Content-Length",
            "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".into(),
            400,
        ),
        (
            "two different Content-Lengths",
            "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .into(),
            400,
        ),
        (
            "both Content-Length and Transfer-Encoding",
            "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            405,
        ),
        ("HTTP/2.0 request line", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".into(), 400),
        (
            "a head above max_header_bytes",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
            431,
        ),
        (
            "more than 100 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            431,
        ),
    ];
    for (name, req, status) in &cases {
        let (resp, closed) = raw(&h.url, req.as_bytes(), Duration::from_secs(2)).await;
        assert_eq!(status_of(&resp), *status, "{name}: {resp}");
        assert!(closed, "{name}: connection left open");
    }
}
