//! Captured logs: a JSON tracing subscriber for the current thread that writes into memory, so a
//! test can read what was logged (run such tests on `current_thread` so every task's events reach
//! the thread-local subscriber).
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs at `level` and above go to the returned capture until the guard is dropped.
pub fn capture(level: tracing::Level) -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .json()
        .with_writer(move || writer.clone())
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The access log lines (`fields` of each).
    pub fn access(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "imsgate::access")
            .map(|l| l["fields"].clone())
            .collect()
    }

    /// The one access log line of the request with this id.
    pub fn access_for(&self, request_id: &str) -> Value {
        let found: Vec<Value> = self
            .access()
            .into_iter()
            .filter(|f| f["request_id"] == request_id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one access line for {request_id}: {found:?}"
        );
        found.into_iter().next().unwrap()
    }
}
