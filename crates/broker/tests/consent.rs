//! The admin-consent flow end to end over real HTTP: the broker on SQLite, the emulator's consent
//! page, a browser stand-in with a cookie jar.

mod support;

use std::collections::HashMap;

use imsgate_emulator::{Endpoint, IssuerForm, OrgClaim};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::consent::*;

fn b64(s: &str) -> String {
    support::b64(s)
}

#[tokio::test]
async fn consent_links_the_account_and_mints_org_tokens() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let back = h.consent("acct-1", ORG_A, "allow").await;
    assert!(back.as_str().starts_with(RETURN_TO), "{back}");
    let q = query_of(&back);
    assert_eq!(q["result"], "linked");
    assert_eq!(q["code"], "linked");

    let link = h.connection("acct-1").await;
    assert_eq!(link["status"], "linked");
    assert_eq!(link["org_id"], ORG_A);
    let consents = h.emulator.consents();
    let ta = consents
        .iter()
        .find(|c| c.org_id == ORG_A && c.client_id == EWA_CLIENT)
        .map(|c| c.technical_account.clone())
        .unwrap();
    assert_eq!(link["technical_account"], ta.as_str());
    assert!(link["linked_at"].as_str().unwrap().ends_with('Z'));

    // Org-scoped tokens come from the shared cache: one IMS request for two calls.
    h.emulator.reset_counts();
    let r = h.org_token(ORG_A).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(h.emulator_accepts(&token).await);
    assert_eq!(body["org_id"], ORG_A);
    assert!(body["expires_in"].as_u64().unwrap() > 3000);
    let again: Value = h.org_token(ORG_A).await.json().await.unwrap();
    assert_eq!(again["access_token"], token.as_str());
    assert_eq!(h.emulator.count(Endpoint::Token), 1);

    // An org nobody linked gets nothing, and IMS is not asked.
    let r = h.org_token(ORG_B).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.emulator.count(Endpoint::Token), 1);

    // Metrics count the outcome and the links.
    let metrics = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"imsgate_consent_callbacks_total{result="linked",code="linked"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"imsgate_links{status="linked"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/consent/callback""#));
}

#[tokio::test]
async fn cancel_and_error_outcomes_link_nothing() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let back = h.consent("acct-c", ORG_A, "cancel").await;
    let q = query_of(&back);
    assert_eq!(
        (q["result"].as_str(), q["code"].as_str()),
        ("cancelled", "admin_cancelled")
    );
    let back = h.consent("acct-c", ORG_A, "error").await;
    let q = query_of(&back);
    assert_eq!(
        (q["result"].as_str(), q["code"].as_str()),
        ("error", "insufficient_privilege")
    );
    assert_eq!(h.connection("acct-c").await["status"], "unlinked");
    assert!(h.emulator.consents().iter().all(|c| c.org_id != ORG_A));
}

#[tokio::test]
async fn both_org_claim_spellings_and_issuer_forms_are_accepted() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    for (i, (claim, form)) in [
        (OrgClaim::CamelOrgId, IssuerForm::Docs),
        (OrgClaim::Both, IssuerForm::Discovery),
        (OrgClaim::OrgId, IssuerForm::Docs),
    ]
    .into_iter()
    .enumerate()
    {
        h.emulator.set_id_token_options(claim, form);
        let account = format!("acct-form-{i}");
        let back = h.consent(&account, ORG_B, "allow").await;
        assert_eq!(query_of(&back)["result"], "linked", "{claim:?} {form:?}");
        assert_eq!(h.connection(&account).await["org_id"], ORG_B);
    }
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    assert_eq!(
        query_of(&h.consent("acct-r1", ORG_A, "allow").await)["result"],
        "linked"
    );
    let before = h.emulator.count(Endpoint::Keys);
    h.emulator.rotate_keys();
    assert_eq!(
        query_of(&h.consent("acct-r2", ORG_A, "allow").await)["result"],
        "linked"
    );
    assert_eq!(h.emulator.count(Endpoint::Keys), before + 1);
}

#[tokio::test]
async fn starting_a_connection_checks_the_caller_and_the_input() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let post = |auth: Option<&str>, body: String| {
        let mut req = h
            .http
            .post(format!("{}/api/connections", h.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let good = json!({"account_id": "acct-x", "return_to": RETURN_TO}).to_string();
    let cases: Vec<(Option<String>, String, u16, &str)> = vec![
        (None, good.clone(), 401, "unauthorized"),
        (
            Some("Bearer wrong-key".into()),
            good.clone(),
            401,
            "unauthorized",
        ),
        (
            Some(format!("Basic {INTERNAL_KEY}")),
            good.clone(),
            401,
            "unauthorized",
        ),
        (
            Some(format!("bearer {INTERNAL_KEY}")),
            "{".into(),
            400,
            "invalid_request",
        ),
        (
            Some(format!("Bearer {INTERNAL_KEY}")),
            json!({"account_id": "acct-x", "return_to": RETURN_TO, "org_id": "x"}).to_string(),
            400,
            "invalid_request",
        ),
        (
            Some(format!("Bearer {INTERNAL_KEY}")),
            json!({"account_id": "a b", "return_to": RETURN_TO}).to_string(),
            400,
            "invalid_account_id",
        ),
    ];
    for (auth, body, status, code) in cases {
        let r = post(auth.as_deref(), body.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{auth:?} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], code, "{auth:?} {body}");
    }
    for bad in [
        "https://evil.test/settings",
        "//evil.test/x",
        "/\\evil.test",
        "https://app.partner.test@evil.test/",
        "javascript:alert(1)",
        "http://app.partner.test/settings",
        "https://app.partner.test:444/",
    ] {
        let body = json!({"account_id": "acct-x", "return_to": bad}).to_string();
        let r = post(Some(&format!("Bearer {INTERNAL_KEY}")), body)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_return_to", "{bad}");
        assert!(
            !v["error_description"].as_str().unwrap().contains("evil"),
            "{v}"
        );
    }

    let r = h.start_connection("acct-x").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let connect = v["connect_url"].as_str().unwrap();
    assert!(connect.starts_with(&format!("{}/connect/", h.url)));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    // The connect URL works once: it sets the session cookie and sends the browser to consent.
    let mut browser = h.browser();
    let r = browser.get(connect).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-imsgate-consent="), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let consent = location(&r);
    assert_eq!(consent.path(), "/consent");
    let q = query_of(&consent);
    assert_eq!(q["client_id"], EWA_CLIENT);
    assert_eq!(q["scope"], "AdobeID,openid,read_organizations");
    for k in ["state", "nonce"] {
        assert!(q[k].len() >= 22, "{k} carries at least 128 bits");
        assert!(
            q[k].bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    assert_ne!(q["state"], q["nonce"]);
    // A pattern matches the callback, so it is sent explicitly (and the emulator checks it).
    assert_eq!(q["redirect_uri"], format!("{}/consent/callback", h.url));
    let r = h.browser().get(connect).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let r = h
        .browser()
        .get(&format!("{}/connect/not-a-ticket", h.url))
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
}

/// What a negative case sends to the callback, given the session's state and nonce.
struct Forge<'a> {
    h: &'a ConsentHarness,
    state: String,
    nonce: String,
    /// The emulator's public modulus as published, the "key" of the HS256 confusion attack.
    jwk_n: String,
}

impl Forge<'_> {
    fn claims(&self) -> Value {
        let now = support::now_secs();
        json!({
            "iss": self.h.emulator.id_token_issuer(), "sub": "TECHACCT0000@techacct.adobe.com",
            "aud": EWA_CLIENT, "iat": now, "exp": now + 600, "nonce": self.nonce,
            "org_id": ORG_A,
        })
    }

    fn token(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = self.claims();
        edit(c.as_object_mut().unwrap());
        self.h.emulator.sign(json!({"typ": "JWT"}), &c)
    }

    fn with_header(&self, header: Value) -> String {
        let c = self.claims();
        self.h.emulator.sign(header, &c)
    }

    fn raw(&self, header: &str, claims: &str) -> String {
        self.h.emulator.sign_segments(header, claims)
    }

    fn unsigned(&self, alg: &str) -> String {
        format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": self.h.emulator.current_kid()}).to_string()),
            b64(&self.claims().to_string())
        )
    }

    fn consented(&self, token: &str) -> String {
        format!(
            "admin_consent=true&state={}&id_token={}",
            self.state,
            urlencode(token)
        )
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn hmac(key: &[u8], input: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::hmac::sign(&k, input.as_bytes()))
}

/// Every refused callback: the browser lands on `return_to` with `result=error` and the code, no
/// link exists, and the session cannot be used again even with a valid redirect.
#[tokio::test]
async fn refused_callbacks_table() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    type Case = (&'static str, Box<dyn Fn(&Forge) -> String>, &'static str);
    let previous_nonce = {
        let (_, q) = h.open_session("acct-prev").await;
        q["nonce"].clone()
    };
    let prev = previous_nonce.clone();
    let jwks: Value = h
        .http
        .get(format!("{}/ims/keys", h.emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk_n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let cases: Vec<Case> = vec![
        (
            "bad signature",
            Box::new(|f| {
                let t = f.token(|_| {});
                let (head, sig) = t.rsplit_once('.').unwrap();
                let flipped = if sig.starts_with('A') { "B" } else { "A" };
                f.consented(&format!("{head}.{flipped}{}", &sig[1..]))
            }),
            "id_token_signature",
        ),
        (
            "alg none",
            Box::new(|f| f.consented(&f.unsigned("none"))),
            "id_token_alg",
        ),
        (
            "alg None",
            Box::new(|f| f.consented(&f.unsigned("None"))),
            "id_token_alg",
        ),
        (
            "alg NONE",
            Box::new(|f| f.consented(&f.unsigned("NONE"))),
            "id_token_alg",
        ),
        (
            "HS256 keyed with the RSA public key",
            Box::new(|f| {
                let head =
                    b64(&json!({"alg": "HS256", "kid": f.h.emulator.current_kid()}).to_string());
                let input = format!("{head}.{}", b64(&f.claims().to_string()));
                f.consented(&format!("{input}.{}", hmac(f.jwk_n.as_bytes(), &input)))
            }),
            "id_token_alg",
        ),
        (
            "unknown kid",
            Box::new(|f| {
                f.consented(&f.raw(
                    r#"{"alg":"RS256","kid":"attacker-key"}"#,
                    &f.claims().to_string(),
                ))
            }),
            "id_token_unknown_kid",
        ),
        (
            "jwk in header",
            Box::new(|f| {
                f.consented(
                    &f.with_header(json!({"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}})),
                )
            }),
            "id_token_header_key",
        ),
        (
            "jku in header",
            Box::new(|f| f.consented(&f.with_header(json!({"jku": "https://evil.test/keys"})))),
            "id_token_header_key",
        ),
        (
            "x5c in header",
            Box::new(|f| f.consented(&f.with_header(json!({"x5c": ["MIIB"]})))),
            "id_token_header_key",
        ),
        (
            "x5u URL in header",
            Box::new(|f| f.consented(&f.with_header(json!({"x5u": "https://evil.test/k.cer"})))),
            "id_token_header_key",
        ),
        (
            "crit",
            Box::new(|f| f.consented(&f.with_header(json!({"crit": ["exp"]})))),
            "id_token_crit",
        ),
        (
            "wrong issuer",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("iss".into(), "https://evil.test".into());
                }))
            }),
            "id_token_issuer",
        ),
        (
            "wrong audience",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("aud".into(), "other-client".into());
                }))
            }),
            "id_token_audience",
        ),
        (
            "extra audience without azp",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("aud".into(), json!([EWA_CLIENT, "other"]));
                }))
            }),
            "id_token_azp",
        ),
        (
            "expired",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("exp".into(), (support::now_secs() - 3600).into());
                }))
            }),
            "id_token_expired",
        ),
        (
            "iat in the future",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("iat".into(), (support::now_secs() + 3600).into());
                }))
            }),
            "id_token_iat",
        ),
        (
            "exp missing",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.remove("exp");
                }))
            }),
            "id_token_missing_claim",
        ),
        (
            "nonce missing",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.remove("nonce");
                }))
            }),
            "id_token_missing_claim",
        ),
        (
            "nonce of another session",
            Box::new(move |f| {
                f.consented(&f.token(|c| {
                    c.insert("nonce".into(), prev.clone().into());
                }))
            }),
            "id_token_nonce",
        ),
        (
            "org_id and orgId differ",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("orgId".into(), ORG_B.into());
                }))
            }),
            "id_token_org_conflict",
        ),
        (
            "org missing",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.remove("org_id");
                }))
            }),
            "id_token_missing_claim",
        ),
        (
            "duplicate org_id",
            Box::new(|f| {
                let c = f.claims().to_string();
                let dup = c.replacen('{', &format!("{{\"org_id\":\"{ORG_B}\","), 1);
                f.consented(&f.raw(
                    &json!({"alg": "RS256", "kid": f.h.emulator.current_kid()}).to_string(),
                    &dup,
                ))
            }),
            "id_token_duplicate_key",
        ),
        (
            "duplicate alg in header",
            Box::new(|f| {
                let head = format!(
                    r#"{{"alg":"none","kid":"{}","alg":"RS256"}}"#,
                    f.h.emulator.current_kid()
                );
                f.consented(&f.raw(&head, &f.claims().to_string()))
            }),
            "id_token_duplicate_key",
        ),
        (
            "oversize",
            Box::new(|f| {
                f.consented(&f.token(|c| {
                    c.insert("pad".into(), "x".repeat(9000).into());
                }))
            }),
            "id_token_too_large",
        ),
        (
            "state mismatch",
            Box::new(|f| {
                format!(
                    "admin_consent=true&state=not-{}&id_token={}",
                    f.state,
                    urlencode(&f.token(|_| {}))
                )
            }),
            "state_mismatch",
        ),
        (
            "state missing",
            Box::new(|f| {
                format!(
                    "admin_consent=true&id_token={}",
                    urlencode(&f.token(|_| {}))
                )
            }),
            "state_missing",
        ),
        (
            "state duplicated",
            Box::new(|f| format!("{}&state={}", f.consented(&f.token(|_| {})), f.state)),
            "duplicate_parameter",
        ),
        (
            "id_token duplicated",
            Box::new(|f| format!("{}&id_token=x.y.z", f.consented(&f.token(|_| {})))),
            "duplicate_parameter",
        ),
        (
            "consent without id_token",
            Box::new(|f| format!("admin_consent=true&state={}", f.state)),
            "id_token_missing",
        ),
        (
            "cancel with id_token",
            Box::new(|f| {
                format!(
                    "admin_consent=false&state={}&id_token={}",
                    f.state,
                    urlencode(&f.token(|_| {}))
                )
            }),
            "id_token_unexpected",
        ),
        (
            "unknown IMS error code is not echoed",
            Box::new(|f| {
                format!(
                    "error=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={}",
                    f.state
                )
            }),
            "error",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, build, code)) in cases.iter().enumerate() {
        let account = format!("acct-neg-{i}");
        let (mut browser, q) = h.open_session(&account).await;
        let f = Forge {
            h: &h,
            state: q["state"].clone(),
            nonce: q["nonce"].clone(),
            jwk_n: jwk_n.clone(),
        };
        let query = build(&f);
        let cookies = browser.cookies.clone();
        let r = browser
            .get(&format!("{}/consent/callback?{query}", h.url))
            .await;
        let got = if r.status() == StatusCode::SEE_OTHER {
            let back = location(&r);
            let q = query_of(&back);
            (q.get("result").cloned(), q.get("code").cloned())
        } else {
            (None, Some(format!("HTTP {}", r.status())))
        };
        if got != (Some("error".into()), Some((*code).into())) {
            failures.push(format!("{name}: want error/{code}, got {got:?}"));
        }
        if h.connection(&account).await["status"] != "unlinked" {
            failures.push(format!("{name}: a link was created"));
        }
        // The session is spent: even a valid redirect for it is refused now.
        browser.cookies = cookies;
        let valid = f.consented(&f.token(|_| {}));
        let r = browser
            .get(&format!("{}/consent/callback?{valid}", h.url))
            .await;
        if r.status() != StatusCode::BAD_REQUEST {
            failures.push(format!("{name}: session reusable (HTTP {})", r.status()));
        }
        if h.connection(&account).await["status"] != "unlinked" {
            failures.push(format!("{name}: replay created a link"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn callbacks_without_a_usable_session_are_refused() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let (browser, q) = h.open_session("acct-s").await;
    let f = Forge {
        h: &h,
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
        jwk_n: String::new(),
    };
    let valid = f.consented(&f.token(|_| {}));
    // No cookie (a forged cross-site request), a made-up session, a cookie without the prefix.
    let sid = browser.cookies["__Host-imsgate-consent"].clone();
    for cookie in [
        None,
        Some(format!("__Host-imsgate-consent={}", "A".repeat(43))),
        Some(format!("imsgate-consent={sid}")),
        Some(format!(
            "__Host-imsgate-consent={sid}; __Host-imsgate-consent={sid}"
        )),
    ] {
        let mut req = h.http.get(format!("{}/consent/callback?{valid}", h.url));
        if let Some(c) = &cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{cookie:?}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_session");
    }
    assert_eq!(h.connection("acct-s").await["status"], "unlinked");
    // None of those consumed the real session: its owner can still finish.
    let r = h
        .http
        .get(format!("{}/consent/callback?{valid}", h.url))
        .header("cookie", format!("__Host-imsgate-consent={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(query_of(&location(&r))["result"], "linked");
    assert_eq!(h.connection("acct-s").await["org_id"], ORG_A);
}

#[tokio::test]
async fn an_expired_session_is_refused_and_consumed() {
    let h = ConsentHarness::start(ConsentOptions {
        session_ttl_seconds: 1,
        ..ConsentOptions::default()
    })
    .await;
    let (mut browser, q) = h.open_session("acct-e").await;
    let f = Forge {
        h: &h,
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
        jwk_n: String::new(),
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let valid = f.consented(&f.token(|_| {}));
    let cookies = browser.cookies.clone();
    let r = browser
        .get(&format!("{}/consent/callback?{valid}", h.url))
        .await;
    assert_eq!(query_of(&location(&r))["code"], "session_expired");
    browser.cookies = cookies;
    let r = browser
        .get(&format!("{}/consent/callback?{valid}", h.url))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.connection("acct-e").await["status"], "unlinked");
}

#[tokio::test]
async fn revocation_needs_reauthorization_then_consent_restores() {
    let h = ConsentHarness::start(ConsentOptions {
        org_token_lifetime_secs: 2,
        ..ConsentOptions::default()
    })
    .await;
    assert_eq!(
        query_of(&h.consent("acct-v", ORG_A, "allow").await)["result"],
        "linked"
    );
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::OK);

    assert!(h.emulator.revoke_consent(EWA_CLIENT, ORG_A));
    // The cached token keeps being served until it lapses; then IMS refuses the org.
    let mut refused = None;
    for _ in 0..100 {
        let r = h.org_token(ORG_A).await;
        if r.status() != StatusCode::OK {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = refused.expect("IMS refusal noticed within 10 s");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "needs_reauthorization");
    assert_eq!(
        h.connection("acct-v").await["status"],
        "needs_reauthorization"
    );

    // No hammering: further requests are answered without asking IMS.
    let before = h.emulator.count(Endpoint::Token);
    for _ in 0..20 {
        assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::CONFLICT);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(h.emulator.count(Endpoint::Token), before);
    let metrics = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("imsgate_consent_revocations_detected_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"imsgate_links{status="needs_reauthorization"} 1"#));

    // A new consent restores the link and tokens flow again.
    assert_eq!(
        query_of(&h.consent("acct-v", ORG_A, "allow").await)["result"],
        "linked"
    );
    assert_eq!(h.connection("acct-v").await["status"], "linked");
    let r = h.org_token(ORG_A).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn unlink_through_the_api() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-u", ORG_A, "allow").await;

    let del = |acct: &str| {
        h.http
            .delete(format!("{}/api/connections/{acct}", h.url))
            .bearer_auth(INTERNAL_KEY)
            .send()
    };
    let r = del("acct-u").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "unlinked");
    assert!(v["unlinked_at"].is_string());
    assert_eq!(h.connection("acct-u").await["status"], "unlinked");
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        del("acct-never").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = h
        .http
        .delete(format!("{}/api/connections/acct-u", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let list: Value = h
        .http
        .get(format!("{}/api/connections", h.url))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: HashMap<String, String> = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["account_id"].as_str().unwrap().to_owned(),
                l["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(statuses.get("acct-u").map(String::as_str), Some("unlinked"));
}
