//! Service Account (JWT) credentials end to end through the emulator's exchange endpoint.

mod support;

use std::sync::Arc;
use std::time::Duration;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::config::Config;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, Endpoint, RunningEmulator};
use support::write_secret;

const CLIENT: &str = "sa-client";
const SECRET: &str = "sa-client-secret-9e8d7c";
const ORG: &str = "SAORG000000000000000000@AdobeOrg";
const TA: &str = "SATECH00000000000000000@techacct.adobe.com";
const INTERNAL_KEY: &str = "internal-api-key-0123456789abcdefghij";

/// A key and a self-signed certificate valid from `from_days` to `to_days` relative to now.
fn key_and_cert(from_days: i64, to_days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["imsgate.test".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let cert = params.self_signed(&key).unwrap();
    (key.serialize_pem(), cert.pem())
}

async fn emulator(lifetime_secs: u64, uploaded: Vec<String>) -> RunningEmulator {
    let mut c = EmulatorClient::new(CLIENT, SECRET, &["openid"], lifetime_secs);
    c.org_id = ORG.into();
    c.technical_account = TA.into();
    c.certificates = uploaded;
    c.metascopes = vec![
        "ent_dataservices_sdk".into(),
        "ent_analytics_bulk_ingest_sdk".into(),
    ];
    Emulator::new(EmulatorConfig {
        clients: vec![c],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn broker(
    emulator: &RunningEmulator,
    dir: &tempfile::TempDir,
    keys: &[(String, String)],
    metascopes: &str,
) -> Result<Broker, Vec<String>> {
    write_secret(dir.path(), "sa.secret", SECRET);
    write_secret(dir.path(), "internal.key", INTERNAL_KEY);
    let mut key_lines = String::new();
    for (i, (key, cert)) in keys.iter().enumerate() {
        write_secret(dir.path(), &format!("key{i}.pem"), key);
        std::fs::write(dir.path().join(format!("cert{i}.pem")), cert).unwrap();
        key_lines.push_str(&format!(
            "{{ private_key = \"file:key{i}.pem\", certificate = \"cert{i}.pem\" }},"
        ));
    }
    let text = format!(
        r#"
[ims]
base_url = "{}"
request_timeout_ms = 2000

[credentials.sa]
type = "service_account"
client_id = "{CLIENT}"
client_secret = "file:sa.secret"
org_id = "{ORG}"
technical_account_id = "{TA}"
metascopes = {metascopes}
keys = [{key_lines}]

[internal_api]
api_key = "file:internal.key"

[refresh]
backoff_initial_ms = 100
backoff_max_ms = 500
"#,
        emulator.base_url()
    );
    let config = Config::parse(&text, dir.path()).map_err(|e| e.problems)?;
    Broker::build(config, Arc::new(SystemClock))
}

#[tokio::test]
async fn a_jwt_exchanged_token_has_its_lifetime_read_in_milliseconds() {
    let (key, cert) = key_and_cert(-1, 365);
    let e = emulator(86_400, vec![cert.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&e, &dir, &[(key, cert)], r#"["ent_dataservices_sdk"]"#).unwrap();
    let t = b.token("sa").await.unwrap();
    // 86 400 000 ms is a day: not 86 seconds (milliseconds read as seconds would be 1000 days).
    assert_eq!(t.token.lifetime(), Duration::from_secs(86_400));
    let refresh_in = t.refresh_at - tokio::time::Instant::now();
    assert!(
        refresh_in > Duration::from_secs(23 * 3600),
        "{refresh_in:?}"
    );
    assert!(refresh_in < Duration::from_secs(24 * 3600));
    assert_eq!(e.count(Endpoint::JwtExchange), 1);
    b.token("sa").await.unwrap();
    assert_eq!(e.count(Endpoint::JwtExchange), 1, "served from the cache");
}

#[tokio::test]
async fn a_short_jwt_token_is_refreshed_on_its_own_schedule() {
    let (key, cert) = key_and_cert(-1, 365);
    let e = emulator(10, vec![cert.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&e, &dir, &[(key, cert)], r#"["ent_dataservices_sdk"]"#).unwrap();
    let t = b.token("sa").await.unwrap();
    assert_eq!(t.token.lifetime(), Duration::from_secs(10));
    let refresh_in = t.refresh_at - tokio::time::Instant::now();
    // A fifth of the lifetime before expiry, plus at most 10% jitter of that.
    assert!(
        refresh_in > Duration::from_millis(7_500) && refresh_in <= Duration::from_secs(8),
        "{refresh_in:?}"
    );
}

#[tokio::test]
async fn with_overlapping_certificates_the_one_expiring_last_signs() {
    let old = key_and_cert(-300, 10);
    let new = key_and_cert(-1, 400);
    // IMS knows only the new certificate: success proves the new key signed.
    let e = emulator(3600, vec![new.1.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        &e,
        &dir,
        &[old.clone(), new.clone()],
        r#"["ent_dataservices_sdk"]"#,
    )
    .unwrap();
    b.token("sa").await.unwrap();

    // IMS knows only the old one: the new key signs and IMS refuses the signature.
    let e = emulator(3600, vec![old.1.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&e, &dir, &[old, new], r#"["ent_dataservices_sdk"]"#).unwrap();
    let err = b.token("sa").await.unwrap_err().to_string();
    assert!(err.contains("invalid_signature"), "{err}");
}

#[tokio::test]
async fn expired_certificates_give_a_clear_error_and_no_request() {
    let expired = key_and_cert(-400, -1);
    let e = emulator(3600, vec![expired.1.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&e, &dir, &[expired], r#"["ent_dataservices_sdk"]"#).unwrap();
    let err = b.token("sa").await.unwrap_err().to_string();
    assert!(
        err.contains("no certificate of this service account is valid now"),
        "{err}"
    );
    assert_eq!(e.count(Endpoint::JwtExchange), 0);
}

#[tokio::test]
async fn ims_errors_come_through() {
    let (key, cert) = key_and_cert(-1, 365);
    let e = emulator(3600, vec![cert.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        &e,
        &dir,
        &[(key, cert)],
        r#"["ent_dataservices_sdk", "not_bound"]"#,
    )
    .unwrap();
    let err = b.token("sa").await.unwrap_err().to_string();
    assert!(err.contains("invalid_scope"), "{err}");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_refused_at_startup() {
    let (key, _) = key_and_cert(-1, 365);
    let (_, other_cert) = key_and_cert(-1, 365);
    let e = emulator(3600, vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let problems = broker(
        &e,
        &dir,
        &[(key, other_cert)],
        r#"["ent_dataservices_sdk"]"#,
    )
    .err()
    .unwrap();
    assert!(
        problems.iter().any(|p| p.contains(
            "credentials.sa.keys[0]: the private key does not belong to the certificate"
        )),
        "{problems:?}"
    );
}

#[tokio::test]
async fn the_console_shows_each_certificate_expiry_and_which_one_signs() {
    let (old_key, old_cert) = key_and_cert(-300, 10);
    let (new_key, new_cert) = key_and_cert(-1, 365);
    let e = emulator(3600, vec![old_cert.clone(), new_cert.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        &e,
        &dir,
        &[(old_key, old_cert), (new_key, new_cert)],
        r#"["ent_dataservices_sdk"]"#,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = b.clone();
    let server = tokio::spawn(async move {
        let _ = served.serve(listener, std::future::pending()).await;
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{url}/admin/login"))
        .form(&[("password", INTERNAL_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = http
        .get(format!("{url}/admin"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let day = |d: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(d))
            .date()
            .to_string()
    };
    // The certificate expiring in 10 days is flagged; the one valid for a year signs.
    let re = regex::Regex::new(
        r#"expires <span class="([a-z]*)">(\d{4}-\d{2}-\d{2}) [^<]*</span>( \(signing\))?"#,
    )
    .unwrap();
    let certs: Vec<(String, String, bool)> = re
        .captures_iter(&html)
        .map(|c| (c[1].to_owned(), c[2].to_owned(), c.get(3).is_some()))
        .collect();
    assert_eq!(
        certs,
        vec![
            ("warn".to_owned(), day(10), false),
            (String::new(), day(365), true)
        ],
        "{html}"
    );
    server.abort();
}
