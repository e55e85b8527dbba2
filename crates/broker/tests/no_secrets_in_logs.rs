//! A run with known secret values whose captured logs, at every level, contain none of them.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imsgate_emulator::{Endpoint, Fault};
use serde_json::Value;
use support::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so every task's events reach the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_secrets_or_tokens() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::start(Options {
        lifetime_secs: 2,
        ..Options::default()
    })
    .await;
    h.wait_ready().await;
    let caller_token = caller("secret-user-id-991");
    let body: Value = h.client_token(&caller_token).await.json().await.unwrap();
    let access_token = body["clientAccessToken"].as_str().unwrap().to_owned();
    // Refused callers, IMS failures with bodies, and a refresh cycle all get logged.
    let forged = hs256(&claims("x"), "wrong-key-wrong-key-wrong-key-wrong");
    assert_eq!(h.client_token(&forged).await.status(), 401);
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            401,
            r#"{"error":"invalid_client","error_description":"invalid client_secret parameter"}"#,
        ),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.emulator.clear_faults();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = h.client_token(&caller_token).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("IMS token request failed"),
        "the failure was logged: {logs}"
    );
    for (name, secret) in [
        ("client secret", CLIENT_SECRET),
        ("caller signing key", CALLER_KEY),
        ("access token", access_token.as_str()),
        (
            "access token signature",
            access_token.rsplit('.').next().unwrap(),
        ),
        ("caller token", caller_token.as_str()),
        ("forged caller token", forged.as_str()),
        ("caller's user id", "secret-user-id-991"),
    ] {
        assert!(!logs.contains(secret), "logs contain the {name}");
    }
}
