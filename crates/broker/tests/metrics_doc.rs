//! The metrics table in docs/http-api.md lists exactly the metric families `/metrics` exposes:
//! a broker with every feature configured (client token with a caller key set, consent, user
//! sign-in, a service account) is exercised until every family has a series, then scraped, and
//! the two sets of (name, type) must be equal, with a failure naming what to add or remove.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imsgate_broker::Broker;
use imsgate_broker::config::Config;
use imsgate_broker::keystore::MasterKey;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, Endpoint};
use serde_json::{Value, json};
use support::consent::{
    Browser, EWA_CLIENT, EWA_SECRET, INTERNAL_KEY, ORG_A, callback_pattern, hidden_inputs, location,
};
use support::user_login::{ADA, ShiftedClock, WEB_CLIENT, WEB_SECRET};
use support::*;
use tokio::io::AsyncReadExt;

const SA_CLIENT: &str = "sa-client";
const SA_SECRET: &str = "sa-client-secret-9e8d7c";
const SA_ORG: &str = "SAORG000000000000000000@AdobeOrg";
const SA_TA: &str = "SATECH00000000000000000@techacct.adobe.com";

/// (name as a sample is written, type) for every `# TYPE` line. Counters are declared without
/// `_total` in OpenMetrics and sampled with it, which is how the docs name them.
fn exposed(metrics: &str) -> BTreeSet<(String, String)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            (name, kind.to_owned())
        })
        .collect()
}

/// (name, type) of every row of the metrics table in docs/http-api.md.
fn documented() -> BTreeSet<(String, String)> {
    let doc = include_str!("../../../docs/http-api.md");
    let start = doc
        .find("| metric | type | labels |")
        .expect("docs/http-api.md has the metrics table");
    doc[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_table_lists_exactly_what_metrics_exposes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());

    let s2s = EmulatorClient::new(
        CLIENT_ID,
        CLIENT_SECRET,
        &["openid", "AdobeID", "firefly_api", "ff_apis"],
        300,
    );
    let mut ewa = EmulatorClient::new(
        EWA_CLIENT,
        EWA_SECRET,
        &["openid", "AdobeID", "read_organizations"],
        3599,
    );
    ewa.default_redirect_uri = Some(format!("{url}/consent/callback"));
    ewa.redirect_uri_patterns = vec![callback_pattern(&url)];
    let mut web = EmulatorClient::new(
        WEB_CLIENT,
        WEB_SECRET,
        &["openid", "AdobeID", "offline_access"],
        3600,
    );
    web.default_redirect_uri = Some(format!("{url}/user/callback"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["imsgate.test".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).unwrap().pem();
    let mut sa = EmulatorClient::new(SA_CLIENT, SA_SECRET, &["openid"], 3600);
    sa.org_id = SA_ORG.into();
    sa.technical_account = SA_TA.into();
    sa.certificates = vec![cert.clone()];
    sa.metascopes = vec!["ent_dataservices_sdk".into()];
    let emulator = Emulator::new(EmulatorConfig {
        clients: vec![s2s, ewa, web, sa],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let e = emulator.base_url().to_owned();

    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("client.secret", CLIENT_SECRET),
        ("ewa.secret", EWA_SECRET),
        ("web.secret", WEB_SECRET),
        ("sa.secret", SA_SECRET),
        ("internal.key", INTERNAL_KEY),
    ] {
        write_secret(dir.path(), name, value);
    }
    write_secret(
        dir.path(),
        "tokens.key",
        MasterKey::generate_text().expose(),
    );
    write_secret(dir.path(), "sa.pem", &key.serialize_pem());
    std::fs::write(dir.path().join("sa.crt"), &cert).unwrap();
    let pattern = callback_pattern(&url).replace('\\', "\\\\");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
header_timeout_ms = 300

[ims]
base_url = "{e}"
request_timeout_ms = 2000

[credentials.entitlement]
type = "oauth_server_to_server"
client_id = "{CLIENT_ID}"
client_secret = "file:client.secret"
scopes = ["openid", "AdobeID", "firefly_api", "ff_apis"]

[credentials.partner]
type = "enterprise_web_app"
client_id = "{EWA_CLIENT}"
client_secret = "file:ewa.secret"
scopes = ["openid", "AdobeID", "read_organizations"]
default_redirect_uri = "{url}/consent/callback"
redirect_uri_patterns = ["{pattern}"]

[credentials.web]
type = "oauth_web_app"
client_id = "{WEB_CLIENT}"
client_secret = "file:web.secret"
scopes = ["openid", "AdobeID", "offline_access"]
default_redirect_uri = "{url}/user/callback"

[credentials.sa]
type = "service_account"
client_id = "{SA_CLIENT}"
client_secret = "file:sa.secret"
org_id = "{SA_ORG}"
technical_account_id = "{SA_TA}"
metascopes = ["ent_dataservices_sdk"]
keys = [{{ private_key = "file:sa.pem", certificate = "sa.crt" }}]

[client_token]
credential = "entitlement"
token_id_namespace = "{NAMESPACE}"
allowed_origins = ["https://app.partner.test"]

[client_token.caller_auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{e}/ims/keys"

[client_token.rate_limit]
per_user_per_minute = 2

[consent]
credential = "partner"
public_url = "{url}"
consent_url = "{e}/consent"
return_to_origins = ["https://app.partner.test"]
development_mode = true

[user_login]
credential = "web"
public_url = "{url}"
return_to_origins = ["https://app.partner.test"]
token_encryption_keys = ["file:tokens.key"]
development_mode = true

[internal_api]
api_key = "file:internal.key"

[storage]
sqlite_path = "imsgate.sqlite"
"#
    );
    let clock = Arc::new(ShiftedClock::default());
    let config = Config::parse(&text, dir.path()).unwrap();
    let broker = Broker::build(config, clock.clone()).unwrap();
    let b = broker.clone();
    let server = tokio::spawn(async move {
        let _ = b.serve(listener, std::future::pending()).await;
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Client tokens: served, rate-limited, refused.
    let caller_token = emulator.sign(json!({"typ": "JWT"}), &claims("metrics-user"));
    let client_token = |t: String| {
        http.get(format!("{url}/api/client-token"))
            .header("Authorization", format!("Bearer {t}"))
            .send()
    };
    assert_eq!(
        client_token(caller_token.clone()).await.unwrap().status(),
        200
    );
    assert_eq!(
        client_token(caller_token.clone()).await.unwrap().status(),
        200
    );
    assert_eq!(
        client_token(caller_token.clone()).await.unwrap().status(),
        429
    );
    assert_eq!(client_token("garbage".into()).await.unwrap().status(), 401);

    // Consent: the whole flow through the emulator's page, then an org token.
    let r: Value = http
        .post(format!("{url}/api/connections"))
        .bearer_auth(INTERNAL_KEY)
        .json(&json!({"account_id": "acct-1", "return_to": "https://app.partner.test/x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut browser = Browser::new(http.clone());
    let r = browser.get(r["connect_url"].as_str().unwrap()).await;
    let page = browser.get(location(&r).as_str()).await;
    let mut form = hidden_inputs(&page.text().await.unwrap());
    form.push(("org_id".into(), ORG_A.into()));
    form.push(("action".into(), "allow".into()));
    let r = browser.post_form(&format!("{e}/consent"), &form).await;
    let r = browser.get(location(&r).as_str()).await;
    assert_eq!(r.status(), 303);
    let r = http
        .post(format!("{url}/api/orgs/{ORG_A}/token"))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A service account's token.
    broker.token("sa").await.unwrap();

    // A key set that does not load (the caller key set, refetched for an unknown kid).
    emulator.set_published_jwks(Some("not json".into()));
    let mut parts: Vec<String> = caller_token.split('.').map(str::to_owned).collect();
    parts[0] = b64(r#"{"alg":"RS256","kid":"no-such-kid"}"#);
    assert_eq!(client_token(parts.join(".")).await.unwrap().status(), 401);
    emulator.set_published_jwks(None);

    // User sign-in, then a refresh once the access token is near its end.
    let r: Value = http
        .post(format!("{url}/api/user-logins"))
        .bearer_auth(INTERNAL_KEY)
        .json(&json!({"user": "u-1", "return_to": "https://app.partner.test/profile"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut browser = Browser::new(http.clone());
    let r = browser.get(r["login_url"].as_str().unwrap()).await;
    let page = browser.get(location(&r).as_str()).await;
    let mut form = hidden_inputs(&page.text().await.unwrap());
    form.push(("user".into(), ADA.into()));
    let r = browser
        .post_form(&format!("{e}/ims/authorize/v2"), &form)
        .await;
    let r = browser.get(location(&r).as_str()).await;
    assert_eq!(r.status(), 303);
    let refreshes = emulator.count(Endpoint::Token);
    clock.advance(Duration::from_secs(3500));
    let r = http
        .post(format!("{url}/api/users/u-1/token"))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(emulator.count(Endpoint::Token) > refreshes, "a refresh");

    // A connection that never sends a request is closed at the header timeout.
    let mut idle = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed at the header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);

    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.abort();

    for (what, secret) in [
        ("client secret", CLIENT_SECRET),
        ("consent client secret", EWA_SECRET),
        ("web client secret", WEB_SECRET),
        ("service account secret", SA_SECRET),
        ("internal API key", INTERNAL_KEY),
        ("customer org id", ORG_A),
        ("signed-in user", ADA),
        ("caller token", caller_token.as_str()),
    ] {
        assert!(!metrics.contains(secret), "/metrics contains the {what}");
    }

    let exposed = exposed(&metrics);
    let documented = documented();
    let add: Vec<String> = exposed
        .difference(&documented)
        .map(|(n, t)| format!("  add `{n}` ({t})"))
        .collect();
    let remove: Vec<String> = documented
        .difference(&exposed)
        .map(|(n, t)| format!("  remove `{n}` ({t})"))
        .collect();
    assert!(
        add.is_empty() && remove.is_empty(),
        "the metrics table in docs/http-api.md differs from what /metrics exposes \
         (a row whose type is wrong shows as both):\n{}\n{}\n--- /metrics:\n{metrics}",
        add.join("\n"),
        remove.join("\n"),
    );
}
