//! Benchmark baseline: a bare axum server answering `GET /api/client-token` with a static JSON body
//! of a given size, so `scripts/bench` can compare imsgate's cached path against the floor.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use axum::Router;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    // A JSON string padded to the requested total size.
    let pad = size.saturating_sub(r#"{"clientAccessToken":""}"#.len());
    let body: &'static [u8] = Box::leak(
        format!(r#"{{"clientAccessToken":"{}"}}"#, "x".repeat(pad))
            .into_bytes()
            .into_boxed_slice(),
    );
    let app = Router::new().route(
        "/api/client-token",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("http://{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}
