//! The admin consent flow over real HTTP: the consent page, its redirects with IMS's parameters,
//! id_tokens verified against `/ims/keys`, consent gating org-scoped tokens, and the admin API.

use std::collections::HashMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use imsgate_emulator::{
    EmulatedOrg, Emulator, EmulatorClient, EmulatorConfig, Endpoint, Fault, IssuerForm, OrgClaim,
    RunningEmulator,
};
use serde_json::{Value, json};

const CLIENT: &str = "ewa-client";
const SECRET: &str = "ewa-secret";
const OWN_ORG: &str = "PARTNER00000000000000000@AdobeOrg";
const OWN_TA: &str = "PARTNERTA000000000000000@techacct.adobe.com";
const CUSTOMER_A: &str = "CUSTOMERA0000000000000@AdobeOrg";
const CUSTOMER_B: &str = "CUSTOMERB0000000000000@AdobeOrg";
const PRECONSENTED: &str = "PRECONSENTED000000000000@AdobeOrg";
const DEFAULT_REDIRECT: &str = "https://partner.example/callback";
const HOSTILE: &str = r#""><script>alert(1)</script>"#;

async fn start() -> RunningEmulator {
    Emulator::new(EmulatorConfig {
        clients: vec![
            EmulatorClient {
                org_id: OWN_ORG.into(),
                technical_account: OWN_TA.into(),
                allowed_org_ids: vec![PRECONSENTED.into()],
                default_redirect_uri: Some(DEFAULT_REDIRECT.into()),
                redirect_uri_patterns: vec![r"https://partner\.example/alt/.*".into()],
                ..EmulatorClient::new(
                    CLIENT,
                    SECRET,
                    &["openid", "AdobeID", "read_organizations"],
                    3599,
                )
            },
            EmulatorClient {
                consent_orgs: vec![EmulatedOrg::new(
                    "ONLY0000000000000000@AdobeOrg",
                    "Only Org",
                )],
                redirect_uri_patterns: vec![r"https://nd\.example/cb".into()],
                ..EmulatorClient::new("no-default", "s", &["openid"], 3599)
            },
        ],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_consent(e: &RunningEmulator, query: &[(&str, &str)]) -> reqwest::Response {
    let url = url::Url::parse_with_params(&format!("{}/consent", e.base_url()), query).unwrap();
    http().get(url.as_str()).send().await.unwrap()
}

async fn post_consent(e: &RunningEmulator, form: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(format!("{}/consent", e.base_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A 303's target without its query, and the query as a map (each key must appear once).
fn redirected(r: &reqwest::Response) -> (String, HashMap<String, String>) {
    assert_eq!(r.status(), 303, "expected a redirect");
    let loc = r.headers()["location"].to_str().unwrap();
    let url = url::Url::parse(loc).unwrap();
    let mut params = HashMap::new();
    for (k, v) in url.query_pairs() {
        assert!(
            params.insert(k.to_string(), v.to_string()).is_none(),
            "{k} twice in {loc}"
        );
    }
    let mut base = url.clone();
    base.set_query(None);
    (base.to_string(), params)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of the consent form, as a browser would submit them.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let re =
        regex::Regex::new(r#"<input type="hidden" name="([a-z_]+)" value="([^"]*)">"#).unwrap();
    re.captures_iter(html)
        .map(|c| (c[1].to_owned(), unescape(&c[2])))
        .collect()
}

/// Loads the consent page for `query` and submits its form with `extra` fields, as the admin's
/// browser does.
async fn decide(
    e: &RunningEmulator,
    query: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let page = get_consent(e, query).await;
    assert_eq!(page.status(), 200);
    let mut form = hidden_fields(&page.text().await.unwrap());
    assert_eq!(form.len(), 5, "{form:?}");
    form.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post_consent(e, &form).await
}

fn query<'a>(state: &'a str, nonce: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", CLIENT),
        ("scope", "openid,AdobeID"),
        ("state", state),
        ("nonce", nonce),
    ]
}

/// Verifies an id_token's RS256 signature against the emulator's published JWKS and returns its
/// header and claims.
async fn verify(e: &RunningEmulator, token: &str) -> (Value, Value) {
    let jwks: Value = http()
        .get(format!("{}/ims/keys", e.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid is published");
    let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let ex = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let sig = B64.decode(parts[2]).unwrap();
    let message = format!("{}.{}", parts[0], parts[1]);
    RsaPublicKeyComponents { n: &n, e: &ex }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &sig)
        .expect("id_token signature verifies against /ims/keys");
    let mut tampered = sig.clone();
    tampered[0] ^= 1;
    assert!(
        RsaPublicKeyComponents { n: &n, e: &ex }
            .verify(&RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &tampered)
            .is_err()
    );
    (header, claims)
}

async fn token_for_org(e: &RunningEmulator, org: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{}/ims/token/v3", e.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "openid,AdobeID"),
            ("org_id", org),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The emulator stamps id_tokens with wall time, so checking their units needs it too.
#[allow(clippy::disallowed_methods)]
fn wall_clock_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn access_token_claims(body: &Value) -> Value {
    let t = body["access_token"].as_str().unwrap();
    serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn consent_page_offers_orgs_and_escapes_the_query() {
    let e = start().await;
    let hostile_redirect = r#"https://partner.example/alt/"><img src=x>"#;
    let r = get_consent(
        &e,
        &[
            ("client_id", CLIENT),
            ("scope", "openid,AdobeID"),
            ("state", HOSTILE),
            ("nonce", "<b>nonce</b>"),
            ("redirect_uri", hostile_redirect),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'; "), "{csp}");
    // Browsers apply form-action to the whole redirect chain after the POST, which continues to
    // wherever the partner sends the browser, so the page must not restrict it.
    assert!(!csp.contains("form-action"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    for id in ["org", "allow", "cancel", "error-code", "fail"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(html.contains(r#"<select id="org" name="org_id">"#));
    assert!(html.contains(&format!(
        r#"<option value="{CUSTOMER_A}">Customer A ({CUSTOMER_A})</option>"#
    )));
    assert!(html.contains(&format!(r#"<option value="{CUSTOMER_B}">"#)));
    assert!(html.contains(&format!(
        r#"<option value="{OWN_ORG}">Your own organization ({OWN_ORG}): test technical account</option>"#
    )));
    for code in [
        "insufficient_privilege",
        "incompatible_account_type",
        "error",
    ] {
        assert!(
            html.contains(&format!(r#"<option value="{code}">"#)),
            "{code}"
        );
    }
    assert!(html.contains(r#"<button type="submit" id="allow" name="action" value="allow">"#));
    assert!(html.contains(r#"<button type="submit" id="cancel" name="action" value="cancel">"#));
    assert!(html.contains(r#"<button type="submit" id="fail" name="action" value="error">"#));
    // The hidden fields carry the values back unchanged once the browser unescapes them.
    let fields: HashMap<String, String> = hidden_fields(&html).into_iter().collect();
    assert_eq!(fields["client_id"], CLIENT);
    assert_eq!(fields["scope"], "openid,AdobeID");
    assert_eq!(fields["state"], HOSTILE);
    assert_eq!(fields["nonce"], "<b>nonce</b>");
    assert_eq!(fields["redirect_uri"], hostile_redirect);

    // A client with its own org list offers those and its own org, not the defaults.
    let r = get_consent(
        &e,
        &[
            ("client_id", "no-default"),
            ("scope", "openid"),
            ("state", "s"),
            ("redirect_uri", "https://nd.example/cb"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<option value="ONLY0000000000000000@AdobeOrg">Only Org ("#));
    assert!(html.contains("EMULATEDORG000000000000@AdobeOrg): test technical account"));
    assert!(!html.contains(CUSTOMER_A));

    // Without a default redirect URI a bad redirect_uri has nowhere to go.
    let r = get_consent(
        &e,
        &[
            ("client_id", "no-default"),
            ("scope", "openid"),
            ("state", "s"),
            ("redirect_uri", "https://nd.example/other"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no default redirect URI"));
}

#[tokio::test]
async fn allow_redirects_with_a_verifiable_id_token_shaped_by_the_options() {
    let e = start().await;
    let cases = [
        (
            OrgClaim::OrgId,
            IssuerForm::Discovery,
            &["org_id"][..],
            &["orgId"][..],
        ),
        (
            OrgClaim::CamelOrgId,
            IssuerForm::Docs,
            &["orgId"][..],
            &["org_id"][..],
        ),
        (
            OrgClaim::Both,
            IssuerForm::Discovery,
            &["org_id", "orgId"][..],
            &[][..],
        ),
    ];
    let mut expected_sub = None;
    let techacct = regex::Regex::new(r"^[0-9A-F]{24}@techacct\.adobe\.com$").unwrap();
    for (org_claim, issuer_form, present, absent) in cases {
        e.set_id_token_options(org_claim, issuer_form);
        let kid = e.rotate_keys();
        let r = decide(
            &e,
            &query(HOSTILE, "nonce-123"),
            &[
                ("org_id", CUSTOMER_A),
                ("action", "allow"),
                ("error_code", "error"),
            ],
        )
        .await;
        let (target, params) = redirected(&r);
        assert_eq!(target, DEFAULT_REDIRECT);
        assert_eq!(params.len(), 3, "{params:?}");
        assert_eq!(params["admin_consent"], "true");
        assert_eq!(params["state"], HOSTILE);
        let (header, claims) = verify(&e, &params["id_token"]).await;
        assert_eq!(header, json!({"alg": "RS256", "kid": kid, "typ": "JWT"}));
        let iss = match issuer_form {
            IssuerForm::Discovery => e.base_url().to_owned(),
            IssuerForm::Docs => format!("{}/ims", e.base_url()),
        };
        assert_eq!(claims["iss"], iss);
        assert_eq!(e.id_token_issuer(), iss);
        assert_eq!(claims["aud"], CLIENT);
        assert_eq!(claims["nonce"], "nonce-123");
        assert_eq!(claims["as"], "ims-na1");
        assert_eq!(claims["type"], "id_token");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3600);
        let now = wall_clock_secs();
        assert!(iat.abs_diff(now) < 60, "iat is in seconds: {iat}");
        for name in present {
            assert_eq!(claims[*name], CUSTOMER_A, "{org_claim:?}");
        }
        for name in absent {
            assert!(claims.get(*name).is_none(), "{org_claim:?}: {name}");
        }
        let sub = claims["sub"].as_str().unwrap().to_owned();
        assert!(techacct.is_match(&sub), "{sub}");
        assert_ne!(sub, OWN_TA);
        // Consenting again for the same org keeps the same technical account.
        assert_eq!(expected_sub.get_or_insert(sub.clone()), &sub);
    }
    let consents = e.consents();
    let a = consents
        .iter()
        .find(|c| c.client_id == CLIENT && c.org_id == CUSTOMER_A)
        .unwrap();
    assert_eq!(Some(&a.technical_account), expected_sub.as_ref());

    // Without a nonce there is no nonce claim; an allowed redirect_uri keeps its own query.
    let r = decide(
        &e,
        &[
            ("client_id", CLIENT),
            ("scope", "openid"),
            ("state", "s2"),
            (
                "redirect_uri",
                "https://partner.example/alt/page?tenant=a b",
            ),
        ],
        &[("org_id", CUSTOMER_B), ("action", "allow")],
    )
    .await;
    let (target, params) = redirected(&r);
    assert_eq!(target, "https://partner.example/alt/page");
    assert_eq!(params["tenant"], "a b");
    assert_eq!(params["state"], "s2");
    let (_, claims) = verify(&e, &params["id_token"]).await;
    assert!(claims.get("nonce").is_none(), "{claims}");
    assert_eq!(claims["orgId"], CUSTOMER_B);
}

#[tokio::test]
async fn cancel_and_error_outcomes_carry_no_id_token() {
    let e = start().await;
    let before = e.consents();
    let r = decide(
        &e,
        &query("st-cancel", "n"),
        &[
            ("org_id", CUSTOMER_A),
            ("action", "cancel"),
            ("error_code", "error"),
        ],
    )
    .await;
    let (target, params) = redirected(&r);
    assert_eq!(target, DEFAULT_REDIRECT);
    assert_eq!(
        params,
        HashMap::from([
            ("admin_consent".to_owned(), "false".to_owned()),
            ("state".to_owned(), "st-cancel".to_owned()),
        ])
    );
    for code in [
        "insufficient_privilege",
        "incompatible_account_type",
        "error",
    ] {
        let r = decide(
            &e,
            &query("st-err", "n"),
            &[
                ("org_id", CUSTOMER_A),
                ("action", "error"),
                ("error_code", code),
            ],
        )
        .await;
        let (target, params) = redirected(&r);
        assert_eq!(target, DEFAULT_REDIRECT);
        assert_eq!(
            params,
            HashMap::from([
                ("error".to_owned(), code.to_owned()),
                ("state".to_owned(), "st-err".to_owned()),
            ]),
            "{code}"
        );
    }
    // Codes the page does not offer, unknown actions and orgs not offered are refused.
    for (extra, what) in [
        (
            vec![("action", "error"), ("error_code", "invalid_scopes")],
            "Unknown error code",
        ),
        (vec![("action", "error")], "Unknown error code"),
        (vec![("action", "approve")], "Unknown action"),
        (vec![], "Unknown action"),
        (
            vec![("action", "allow"), ("org_id", "OTHER@AdobeOrg")],
            "Unknown organization",
        ),
        (vec![("action", "allow")], "Unknown organization"),
    ] {
        let r = decide(&e, &query("s", "n"), &extra).await;
        assert_eq!(r.status(), 400, "{extra:?}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert!(r.text().await.unwrap().contains(what), "{extra:?}");
    }
    assert_eq!(e.consents(), before, "nothing was consented");
}

#[tokio::test]
async fn bad_requests_redirect_with_ims_error_codes() {
    let e = start().await;
    let alt = "https://partner.example/alt/x";
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a str,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "redirect_uri not matching any pattern",
            vec![
                ("client_id", CLIENT),
                ("scope", "openid"),
                ("state", "s1"),
                ("redirect_uri", "https://evil.example/cb"),
            ],
            DEFAULT_REDIRECT,
            vec![("error", "invalid_redirect_uri"), ("state", "s1")],
        ),
        (
            "patterns match the whole URI only",
            vec![
                ("client_id", CLIENT),
                ("scope", "openid"),
                ("state", "s1"),
                (
                    "redirect_uri",
                    "https://evil.example/?https://partner.example/alt/x",
                ),
            ],
            DEFAULT_REDIRECT,
            vec![("error", "invalid_redirect_uri"), ("state", "s1")],
        ),
        (
            "bad redirect_uri and no state",
            vec![
                ("client_id", CLIENT),
                ("scope", "openid"),
                ("redirect_uri", "http://partner.example/alt/x"),
            ],
            DEFAULT_REDIRECT,
            vec![("error", "invalid_redirect_uri")],
        ),
        (
            "missing state",
            vec![
                ("client_id", CLIENT),
                ("scope", "openid"),
                ("redirect_uri", alt),
            ],
            alt,
            vec![("error", "missing_state_param")],
        ),
        (
            "empty state",
            vec![("client_id", CLIENT), ("scope", "openid"), ("state", "")],
            DEFAULT_REDIRECT,
            vec![("error", "missing_state_param")],
        ),
        (
            "scope not the client's",
            vec![
                ("client_id", CLIENT),
                ("scope", "openid,firefly_api"),
                ("state", "s2"),
                ("redirect_uri", alt),
            ],
            alt,
            vec![("error", "invalid_scopes"), ("state", "s2")],
        ),
        (
            "no scope",
            vec![("client_id", CLIENT), ("state", "s3")],
            DEFAULT_REDIRECT,
            vec![("error", "invalid_scopes"), ("state", "s3")],
        ),
    ];
    for (name, q, target, expected) in cases {
        let r = get_consent(&e, &q).await;
        assert_eq!(r.status(), 303, "{name}");
        let (got_target, params) = redirected(&r);
        assert_eq!(got_target, target, "{name}");
        let expected: HashMap<String, String> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(params, expected, "{name}");
    }

    // Nothing to redirect to: an HTML page.
    for (name, q) in [
        (
            "unknown client",
            vec![("client_id", "nope"), ("scope", "openid"), ("state", "s")],
        ),
        ("no client", vec![("scope", "openid"), ("state", "s")]),
        (
            "no default redirect",
            vec![
                ("client_id", "no-default"),
                ("scope", "openid"),
                ("state", "s"),
            ],
        ),
    ] {
        let r = get_consent(&e, &q).await;
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(
            r.headers()["content-type"],
            "text/html; charset=utf-8",
            "{name}"
        );
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"),
            "{name}"
        );
    }

    // The POST re-checks the hidden fields instead of trusting them.
    let tampered = [
        ("client_id", CLIENT),
        ("scope", "openid"),
        ("state", "s4"),
        ("nonce", "n"),
        ("redirect_uri", "https://evil.example/cb"),
        ("org_id", CUSTOMER_A),
        ("action", "allow"),
    ];
    let (target, params) = redirected(&post_consent(&e, &tampered).await);
    assert_eq!(target, DEFAULT_REDIRECT);
    assert_eq!(params["error"], "invalid_redirect_uri");
    assert!(!params.contains_key("id_token"));
    let mut tampered = tampered;
    tampered[4] = ("redirect_uri", DEFAULT_REDIRECT);
    tampered[1] = ("scope", "openid,firefly_api");
    let (_, params) = redirected(&post_consent(&e, &tampered).await);
    assert_eq!(params["error"], "invalid_scopes");
    tampered[1] = ("scope", "openid");
    tampered[0] = ("client_id", "nope");
    assert_eq!(post_consent(&e, &tampered).await.status(), 400);
    assert!(
        e.consents().iter().all(|c| c.org_id != CUSTOMER_A),
        "no tampered request consented"
    );
}

#[tokio::test]
async fn consent_gates_org_scoped_tokens_and_revoke_stops_new_ones() {
    let e = start().await;
    let (status, body) = token_for_org(&e, CUSTOMER_B).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_org")));

    let r = decide(
        &e,
        &query("s", "n"),
        &[("org_id", CUSTOMER_B), ("action", "allow")],
    )
    .await;
    let (_, params) = redirected(&r);
    let (_, id_claims) = verify(&e, &params["id_token"]).await;
    let (status, body) = token_for_org(&e, CUSTOMER_B).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3599);
    let at = access_token_claims(&body);
    assert_eq!(at["org_id"], CUSTOMER_B);
    assert_eq!(
        at["user_id"], id_claims["sub"],
        "the token acts as the consent's technical account"
    );

    // Revoke through the admin API: new requests fail the way never-consented orgs do.
    let admin = format!("{}/__admin/consents", e.base_url());
    let r = http()
        .delete(format!("{admin}/{CLIENT}/{CUSTOMER_B}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = token_for_org(&e, CUSTOMER_B).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_org")));
    let r = http()
        .delete(format!("{admin}/{CLIENT}/{CUSTOMER_B}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unknown_consent");

    // Re-consent through the admin API: the same technical account again.
    let r = http()
        .post(&admin)
        .json(&json!({"client_id": CLIENT, "org_id": CUSTOMER_B}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let granted: Value = r.json().await.unwrap();
    assert_eq!(
        granted,
        json!({"client_id": CLIENT, "org_id": CUSTOMER_B, "technical_account": id_claims["sub"]})
    );
    assert_eq!(token_for_org(&e, CUSTOMER_B).await.0, 200);

    // The same through the in-process handle.
    assert!(e.revoke_consent(CLIENT, CUSTOMER_B));
    assert!(!e.revoke_consent(CLIENT, CUSTOMER_B));
    assert_eq!(token_for_org(&e, CUSTOMER_B).await.0, 400);
    assert_eq!(
        e.grant_consent(CLIENT, CUSTOMER_B).as_deref(),
        id_claims["sub"].as_str()
    );
    assert_eq!(token_for_org(&e, CUSTOMER_B).await.0, 200);
    assert_eq!(e.grant_consent("nope", CUSTOMER_B), None);

    // The listing: configured allowed_org_ids start consented.
    let list: Value = http()
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter()
            .any(|c| c["client_id"] == CLIENT && c["org_id"] == PRECONSENTED)
    );
    assert!(
        list.iter()
            .any(|c| c["org_id"] == CUSTOMER_B && c["technical_account"] == id_claims["sub"])
    );
    assert_eq!(token_for_org(&e, PRECONSENTED).await.0, 200);

    // Bad admin input.
    for (body, status, error) in [
        (
            json!({"client_id": "nope", "org_id": CUSTOMER_A}),
            404,
            "unknown_client",
        ),
        (json!({"client_id": CLIENT}), 400, "invalid_request"),
        (
            json!({"client_id": CLIENT, "org_id": ""}),
            400,
            "invalid_request",
        ),
        (
            json!({"client_id": CLIENT, "org_id": CUSTOMER_A, "x": 1}),
            400,
            "invalid_request",
        ),
    ] {
        let r = http().post(&admin).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{body}");
    }
}

#[tokio::test]
async fn own_org_consent_creates_the_test_technical_account() {
    let e = start().await;
    assert_eq!(
        token_for_org(&e, OWN_ORG).await.0,
        400,
        "no test technical account yet"
    );
    let r = decide(
        &e,
        &query("s", "n"),
        &[("org_id", OWN_ORG), ("action", "allow")],
    )
    .await;
    let (_, params) = redirected(&r);
    let (_, claims) = verify(&e, &params["id_token"]).await;
    assert_eq!(claims["sub"], OWN_TA);
    assert_eq!(claims["org_id"], OWN_ORG);
    let (status, body) = token_for_org(&e, OWN_ORG).await;
    assert_eq!(status, 200);
    assert_eq!(access_token_claims(&body)["user_id"], OWN_TA);
}

#[tokio::test]
async fn id_token_options_over_the_admin_api_and_the_test_helper() {
    let e = start().await;
    let url = format!("{}/__admin/id-token", e.base_url());
    let get = || async {
        http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        get().await,
        json!({"org_claim": "org_id", "issuer_form": "discovery", "issuer": e.base_url()})
    );
    for bad in [
        r#"{"org_claim": "orgid"}"#,
        r#"{"issuer_form": "ims"}"#,
        r#"{"org_claim": "both", "extra": 1}"#,
        "not json",
    ] {
        let r = http().put(&url).body(bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_id_token_options", "{bad}");
        assert!(body["error_description"].is_string());
    }
    let r = http()
        .put(&url)
        .body(r#"{"issuer_form": "docs"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http()
        .put(&url)
        .body(r#"{"org_claim": "orgId"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let docs_iss = format!("{}/ims", e.base_url());
    assert_eq!(
        get().await,
        json!({"org_claim": "orgId", "issuer_form": "docs", "issuer": docs_iss}),
        "each PUT changes only what it names"
    );
    assert_eq!(e.id_token_options().org_claim, OrgClaim::CamelOrgId);

    // The helper issues what the page would, for the consent's technical account.
    let t = e.issue_id_token(CLIENT, OWN_ORG, Some("hn"));
    let (header, claims) = verify(&e, &t).await;
    assert_eq!(header["kid"], e.current_kid());
    assert_eq!(claims["iss"], docs_iss);
    assert_eq!(claims["sub"], OWN_TA);
    assert_eq!(claims["orgId"], OWN_ORG);
    assert!(claims.get("org_id").is_none());
    assert_eq!(claims["nonce"], "hn");
    let pre = e
        .consents()
        .into_iter()
        .find(|c| c.org_id == PRECONSENTED)
        .unwrap();
    let (_, claims) = verify(&e, &e.issue_id_token(CLIENT, PRECONSENTED, None)).await;
    assert_eq!(claims["sub"], pre.technical_account);
    assert!(claims.get("nonce").is_none());
    assert_eq!(e.consents().len(), 1, "the helper records no consent");
}

#[tokio::test]
async fn consent_requests_are_counted_and_can_be_faulted() {
    let e = start().await;
    decide(&e, &query("s", "n"), &[("action", "cancel")]).await;
    get_consent(&e, &[("client_id", "nope")]).await;
    let counters: Value = http()
        .get(format!("{}/__admin/counters", e.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["consent"], 3);
    assert_eq!(counters["token"], 0);
    assert_eq!(e.count(Endpoint::Consent), 3);

    let r = http()
        .put(format!("{}/__admin/faults/consent", e.base_url()))
        .body(r#"{"status": 503, "body": "{\"error\":\"internal_error\"}", "times": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get_consent(&e, &query("s", "n")).await.status(), 503);
    assert_eq!(get_consent(&e, &query("s", "n")).await.status(), 200);
    e.set_fault(Endpoint::Consent, Fault::status(500, "{}"));
    let r = post_consent(&e, &[("client_id", CLIENT)]).await;
    assert_eq!(r.status(), 500);
    assert_eq!(e.count(Endpoint::Consent), 6);
}

#[tokio::test]
async fn an_invalid_redirect_pattern_is_refused_at_start() {
    let err = Emulator::new(EmulatorConfig {
        clients: vec![EmulatorClient {
            redirect_uri_patterns: vec![r"https://ok\.example/.*".into(), "https://(".into()],
            ..EmulatorClient::new("c", "s", &["openid"], 60)
        }],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("clients[0] (c): redirect_uri_patterns[1]"),
        "{err}"
    );
}

#[test]
fn the_documented_config_example_parses() {
    // `imsgate emulator --config` reads this TOML into `EmulatorConfig`; the docs must not drift.
    let doc = include_str!("../../../docs/emulator.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let config: EmulatorConfig = toml::from_str(&doc[start..end]).unwrap();
    let c = &config.clients[0];
    assert_eq!(
        c.default_redirect_uri.as_deref(),
        Some("https://localhost:8443/callback")
    );
    assert_eq!(c.redirect_uri_patterns, ["https://localhost:8443/alt/.*"]);
    assert_eq!(
        c.consent_orgs,
        [EmulatedOrg::new(
            "CUSTOMERA0000000000000@AdobeOrg",
            "Customer A"
        )]
    );
    assert_eq!(c.refresh_token_lifetime_secs, 14 * 24 * 3600);
    assert_eq!(
        config.users,
        [imsgate_emulator::EmulatedUser::new(
            "USERA00000000000000000@AdobeID",
            "ada@example.com",
            "Ada"
        )]
    );
    assert!(config.validate().is_ok());
    let unknown = toml::from_str::<EmulatorConfig>(
        "[[clients]]\nclient_id = \"c\"\nclient_secrets = []\nscopes = []\nredirect_uris = []\n",
    );
    assert!(unknown.is_err(), "unknown keys stay refused");
}
