//! The operator console and the browser-facing HTML pages, end to end over real HTTP against the
//! in-process emulator: sign-in and its throttle, CSRF on every action, pagination and search
//! bounds, unlink, revoke a sign-in, a forced refresh costing one IMS request, and the error
//! pages each browser flow shows by `Accept`.

mod support;

use std::time::Duration;

use imsgate_emulator::{Endpoint, Fault};
use reqwest::StatusCode;
use serde_json::Value;

use support::consent::{
    ConsentHarness, ConsentOptions, EWA_CLIENT, INTERNAL_KEY, ORG_A, hidden_inputs,
};
use support::user_login::{UserHarness, UserOptions};

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// An operator's browser on the console: its session cookie and the page's CSRF token.
struct Operator {
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(http: &reqwest::Client, url: &str, password: &str) -> reqwest::Response {
    http.post(format!("{url}/admin/login"))
        .header("accept", BROWSER_ACCEPT)
        .header("origin", url)
        .header("sec-fetch-site", "same-origin")
        .form(&[("password", password)])
        .send()
        .await
        .unwrap()
}

impl Operator {
    async fn sign_in(url: &str) -> Self {
        let http = client();
        let r = login(&http, url, INTERNAL_KEY).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(set.starts_with("__Host-imsgate-admin="), "{set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut op = Self {
            http,
            url: url.to_owned(),
            cookie,
            csrf: String::new(),
        };
        let html = op.page("").await;
        op.csrf = hidden_inputs(&html)
            .into_iter()
            .find(|(k, _)| k == "csrf")
            .expect("the console carries a CSRF token")
            .1;
        op
    }

    async fn page(&self, query: &str) -> String {
        let r = self
            .http
            .get(format!("{}/admin{query}", self.url))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    /// A form post as the console page sends it.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.url))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &self.cookie)
            .header("origin", &self.url)
            .header("sec-fetch-site", "same-origin")
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn rows(html: &str, attr: &str) -> usize {
    html.matches(&format!("<tr {attr}=")).count()
        + html
            .matches(&format!("<tr class=\"linked\" {attr}="))
            .count()
        + html
            .matches(&format!("<tr class=\"unlinked\" {attr}="))
            .count()
        + html
            .matches(&format!("<tr class=\"needs_reauthorization\" {attr}="))
            .count()
}

fn assert_page_headers(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    // Console pages send `same-origin` so their forms carry a real Origin; flow pages nothing.
    let policy = if r.url().path().starts_with("/admin") {
        "same-origin"
    } else {
        "no-referrer"
    };
    assert_eq!(h["referrer-policy"], policy, "{}", r.url());
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
}

#[tokio::test]
async fn browser_flows_answer_a_page_or_json_by_accept() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let u = UserHarness::start(UserOptions::default()).await;
    let http = client();
    // A connect link used once already, and a sign-in link used once already.
    let used_connect = h.connect_url("acct-used").await;
    assert_eq!(
        h.browser().get(&used_connect).await.status(),
        StatusCode::SEE_OTHER
    );
    let used_login = u.login_url("user-used").await;
    assert_eq!(
        u.browser().get(&used_login).await.status(),
        StatusCode::SEE_OTHER
    );
    let never = format!("{}/connect/{}", h.url, "A".repeat(43));
    let admin_wrong = format!("{}/admin/login", h.url);
    struct Case<'a> {
        name: &'a str,
        method: &'a str,
        url: String,
        status: StatusCode,
        code: &'a str,
        phrase: &'a str,
    }
    let cases = [
        Case {
            name: "reused connect link",
            method: "GET",
            url: used_connect.clone(),
            status: StatusCode::GONE,
            code: "connect_link_unusable",
            phrase: "click Connect with Adobe again",
        },
        Case {
            name: "unknown connect link",
            method: "GET",
            url: never,
            status: StatusCode::GONE,
            code: "connect_link_unusable",
            phrase: "already used, has expired, or was never issued",
        },
        Case {
            name: "malformed connect link",
            method: "GET",
            url: format!("{}/connect/%FF%FE", h.url),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            phrase: "not one this service issued",
        },
        Case {
            name: "consent callback without the session cookie",
            method: "GET",
            url: format!("{}/consent/callback?admin_consent=true&state=x", h.url),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_session",
            phrase: "does not hold the session",
        },
        Case {
            name: "reused sign-in link",
            method: "GET",
            url: used_login.clone(),
            status: StatusCode::GONE,
            code: "login_link_unusable",
            phrase: "click Sign in with Adobe again",
        },
        Case {
            name: "sign-in callback without the session cookie",
            method: "GET",
            url: format!("{}/user/callback?code=x&state=y", u.url),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_session",
            phrase: "Sign in with Adobe again",
        },
        Case {
            name: "wrong console password",
            method: "POST",
            url: admin_wrong,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            phrase: "That password is wrong",
        },
    ];
    for c in &cases {
        for (accept, html) in [
            (Some(BROWSER_ACCEPT), true),
            (Some("text/html"), true),
            (Some("application/json"), false),
            (Some("*/*"), false),
            (None, false),
        ] {
            let mut req = match c.method {
                "GET" => http.get(&c.url),
                _ => http.post(&c.url).form(&[("password", "wrong")]),
            };
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), c.status, "{} / {accept:?}", c.name);
            if html {
                assert_page_headers(&r);
                let body = r.text().await.unwrap();
                assert!(body.contains(c.phrase), "{} / {accept:?}: {body}", c.name);
                assert!(body.starts_with("<!doctype html>"));
            } else {
                assert_eq!(r.headers()["content-type"], "application/json");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"], c.code, "{} / {accept:?}", c.name);
                assert!(v["error_description"].is_string());
            }
        }
    }
}

#[tokio::test]
async fn console_sign_in_and_every_action_needs_session_origin_and_csrf() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-csrf", ORG_A, "allow").await;
    let http = client();
    // Without a session: the sign-in form for a browser, 401 JSON for an API client.
    let r = http
        .get(format!("{}/admin", h.url))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_page_headers(&r);
    assert!(r.text().await.unwrap().contains("action=\"/admin/login\""));
    let r = http.get(format!("{}/admin", h.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // HTTP Basic no longer signs in.
    let r = http
        .get(format!("{}/admin", h.url))
        .basic_auth("admin", Some(INTERNAL_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let op = Operator::sign_in(&h.url).await;
    let html = op.page("").await;
    assert!(html.contains("data-account=\"acct-csrf\""), "{html}");
    assert!(html.contains("id=\"health-section\""));
    // A sign-in form posted from another site is refused before the password is looked at.
    let r = http
        .post(format!("{}/admin/login", h.url))
        .header("origin", "https://evil.test")
        .form(&[("password", INTERNAL_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let other = Operator::sign_in(&h.url).await;
    assert_ne!(other.csrf, op.csrf, "each session has its own CSRF token");
    struct Case<'a> {
        name: &'a str,
        cookie: bool,
        csrf: Option<&'a str>,
        origin: Option<&'a str>,
        site: Option<&'a str>,
        status: StatusCode,
    }
    let cases = [
        Case {
            name: "no session",
            cookie: false,
            csrf: Some(&op.csrf),
            origin: Some(&h.url),
            site: Some("same-origin"),
            status: StatusCode::UNAUTHORIZED,
        },
        Case {
            name: "no CSRF token",
            cookie: true,
            csrf: None,
            origin: Some(&h.url),
            site: Some("same-origin"),
            status: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a wrong CSRF token",
            cookie: true,
            csrf: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            origin: Some(&h.url),
            site: Some("same-origin"),
            status: StatusCode::FORBIDDEN,
        },
        Case {
            name: "another session's CSRF token",
            cookie: true,
            csrf: Some(&other.csrf),
            origin: Some(&h.url),
            site: Some("same-origin"),
            status: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a foreign Origin",
            cookie: true,
            csrf: Some(&op.csrf),
            origin: Some("https://evil.test"),
            site: None,
            status: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a cross-site fetch",
            cookie: true,
            csrf: Some(&op.csrf),
            origin: None,
            site: Some("cross-site"),
            status: StatusCode::FORBIDDEN,
        },
    ];
    for (path, fields) in [
        ("/admin/unlink", vec![("account_id", "acct-csrf")]),
        ("/admin/revoke-sign-in", vec![("user", "someone")]),
        (
            "/admin/refresh",
            vec![("credential", "partner"), ("org", ORG_A)],
        ),
        ("/admin/logout", vec![]),
    ] {
        for c in &cases {
            let mut form = fields.clone();
            if let Some(t) = c.csrf {
                form.push(("csrf", t));
            }
            let mut req = http.post(format!("{}{path}", h.url)).form(&form);
            if c.cookie {
                req = req.header("cookie", &op.cookie);
            }
            if let Some(o) = c.origin {
                req = req.header("origin", o);
            }
            if let Some(s) = c.site {
                req = req.header("sec-fetch-site", s);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), c.status, "{path}: {}", c.name);
        }
    }
    // Nothing happened.
    assert_eq!(h.connection("acct-csrf").await["status"], "linked");
    assert!(op.page("").await.contains("id=\"sign-out\""));

    // With everything right, the action runs, as the JSON API would do it.
    let r = op
        .post("/admin/unlink", &[("account_id", "acct-csrf")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, "/admin?notice=unlinked&subject=acct-csrf");
    assert_eq!(h.connection("acct-csrf").await["status"], "unlinked");
    assert!(
        op.page("?notice=unlinked&subject=acct-csrf")
            .await
            .contains("was unlinked")
    );
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::NOT_FOUND);
    // Unlinking an account never linked: 404 with a page.
    let r = op
        .post("/admin/unlink", &[("account_id", "acct-never")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("Back to the console"));
    // A notice's subject is escaped.
    let html = op
        .page("?notice=unlinked&subject=%3Cscript%3Ex%3C%2Fscript%3E")
        .await;
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!html.contains("<script>"));

    // Sign out: the session is gone server-side, not only in the browser.
    let r = op.post("/admin/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = op.post("/admin/unlink", &[("account_id", "acct-x")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_are_throttled_with_a_page_saying_when_to_retry() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let http = client();
    for i in 0..5 {
        let r = login(&http, &h.url, "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for password in ["wrong", INTERNAL_KEY] {
        let r = login(&http, &h.url, password).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&secs), "{secs}");
        assert_page_headers(&r);
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("Wait {secs} seconds")), "{body}");
        assert!(body.contains("Too many attempts"));
    }
    // JSON clients get the same status with JSON.
    let r = http
        .post(format!("{}/admin/login", h.url))
        .form(&[("password", INTERNAL_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "too_many_attempts");
}

#[tokio::test]
async fn linked_orgs_page_and_search_within_bounds() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    let store = h.broker.state.store.clone().unwrap();
    for i in 0..45u64 {
        let org = if i % 3 == 0 {
            ORG_A.to_owned()
        } else {
            format!("ORG{i:02}ZZZZZZZZZZZZZZZZZ@AdobeOrg")
        };
        store
            .link(
                format!("acct-{i:02}"),
                org,
                format!("ta-{i}@techacct.adobe.com"),
                1_000 + i,
            )
            .await
            .unwrap();
    }
    let op = Operator::sign_in(&h.url).await;
    // (query, rows shown, range text or None)
    let table: &[(&str, usize, Option<&str>)] = &[
        ("", 20, Some("1–20 of 45")),
        ("?offset=20", 20, Some("21–40 of 45")),
        ("?offset=40", 5, Some("41–45 of 45")),
        ("?offset=45", 0, None),
        ("?offset=99999999999999999999", 20, Some("1–20 of 45")),
        ("?offset=-1", 20, Some("1–20 of 45")),
        ("?q=acct-1", 10, Some("1–10 of 10")),
        ("?q=ACCT-4", 5, Some("1–5 of 5")),
        ("?q=customera", 15, Some("1–15 of 15")),
        ("?q=ORG07", 1, Some("1–1 of 1")),
        ("?q=%25", 0, None),
        ("?q=_", 0, None),
        ("?q=nobody", 0, None),
        ("?q=acct&offset=40", 5, Some("41–45 of 45")),
        ("?limit=7", 7, Some("1–7 of 45")),
        ("?limit=7&offset=42", 3, Some("43–45 of 45")),
        ("?limit=0", 1, Some("1–1 of 45")),
        ("?limit=100000", 45, Some("1–45 of 45")),
        ("?limit=abc", 20, Some("1–20 of 45")),
    ];
    for (q, n, range) in table {
        let html = op.page(q).await;
        assert_eq!(rows(&html, "data-account"), *n, "{q}");
        match range {
            Some(r) => assert!(html.contains(r), "{q}: {r}"),
            None => assert!(!html.contains("links-range"), "{q}"),
        }
    }
    // Newest first, and the next link keeps the search.
    let html = op.page("?q=acct").await;
    assert!(html.find("acct-44").unwrap() < html.find("acct-43").unwrap());
    assert!(
        html.contains("href=\"/admin?q=acct&amp;offset=20\""),
        "{html}"
    );
    assert!(!html.contains("links-prev"));
    let html = op.page("?q=acct&offset=20").await;
    assert!(html.contains("links-prev") && html.contains("links-next"));
    // A chosen page size is kept by the pager and the search form.
    let html = op.page("?q=acct&limit=7&offset=7").await;
    assert!(
        html.contains("href=\"/admin?q=acct&amp;limit=7\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/admin?q=acct&amp;offset=14&amp;limit=7\""),
        "{html}"
    );
    assert!(html.contains("<input type=\"hidden\" name=\"limit\" value=\"7\">"));
    assert!(
        op.page("?q=nobody")
            .await
            .contains("No link matches this search.")
    );
    let html = op.page("?offset=45").await;
    assert!(html.contains("past the end of the 45 rows"), "{html}");
    assert!(
        html.contains("id=\"links-first\" href=\"/admin\""),
        "{html}"
    );
}

#[tokio::test]
async fn force_refresh_sends_one_ims_request_however_often_pressed() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-r", ORG_A, "allow").await;
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::OK);
    let op = Operator::sign_in(&h.url).await;
    let html = op.page("").await;
    assert!(
        html.contains(&format!("data-credential=\"partner\" data-org=\"{ORG_A}\"")),
        "{html}"
    );
    let before = h.emulator.count(Endpoint::Token);
    // Slow IMS, so the presses overlap the flight.
    h.emulator
        .set_fault(Endpoint::Token, Fault::latency(Duration::from_millis(300)));
    let press = || {
        op.post(
            "/admin/refresh",
            &[("credential", "partner"), ("org", ORG_A)],
        )
    };
    let (a, b, c, d, e) = tokio::join!(press(), press(), press(), press(), press());
    for r in [a, b, c, d, e] {
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/admin?notice=refreshed")
        );
    }
    // And once more after the flight ended: still the same one request.
    let r = op
        .post(
            "/admin/refresh",
            &[("credential", "partner"), ("org", ORG_A)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(h.emulator.count(Endpoint::Token), before + 1);
    h.emulator.clear_faults();

    // A key the cache does not hold and no credential of its own: refused, no IMS request.
    let r = op
        .post(
            "/admin/refresh",
            &[("credential", "partner"), ("org", "OTHER@AdobeOrg")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.emulator.count(Endpoint::Token), before + 1);
}

/// An org's forced refresh follows the org-token rules: IMS refusing it (consent revoked) marks
/// the link `needs_reauthorization`, and after that the console refuses to ask IMS again.
#[tokio::test]
async fn a_forced_org_refresh_keeps_to_the_revocation_rule() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-v", ORG_A, "allow").await;
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::OK);
    let op = Operator::sign_in(&h.url).await;
    assert!(h.emulator.revoke_consent(EWA_CLIENT, ORG_A));
    let press = || {
        op.post(
            "/admin/refresh",
            &[("credential", "partner"), ("org", ORG_A)],
        )
    };
    let before = h.emulator.count(Endpoint::Token);
    let r = press().await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/admin?notice=org_refused"),
        "{:?}",
        r.headers()["location"]
    );
    assert_eq!(h.emulator.count(Endpoint::Token), before + 1);
    assert_eq!(
        h.connection("acct-v").await["status"],
        "needs_reauthorization"
    );
    // Pressed again: refused before IMS is asked.
    let r = press().await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(h.emulator.count(Endpoint::Token), before + 1);
}

/// Polls the page until `f` holds, within a bounded time.
async fn wait_for_page(op: &Operator, f: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let html = op.page("").await;
        if f(&html) {
            return html;
        }
        assert!(tokio::time::Instant::now() < deadline, "{html}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_last_ims_error_shows_its_code_and_debug_id() {
    let h = ConsentHarness::start(ConsentOptions::default()).await;
    h.consent("acct-e", ORG_A, "allow").await;
    assert_eq!(h.org_token(ORG_A).await.status(), StatusCode::OK);
    let op = Operator::sign_in(&h.url).await;
    let html = op.page("").await;
    assert!(
        html.contains("in use: <code>client_secrets[0]</code>"),
        "{html}"
    );
    h.emulator.set_fault(
        Endpoint::Token,
        Fault::status(
            503,
            r#"{"error":"server_busy","error_description":"<b>later</b>"}"#,
        ),
    );
    let r = op
        .post(
            "/admin/refresh",
            &[("credential", "partner"), ("org", ORG_A)],
        )
        .await;
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!(
            "/admin?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("notice", "refresh_failed")
                .append_pair("subject", &format!("partner / {ORG_A}"))
                .finish()
        )
    );
    let html = wait_for_page(&op, |h| h.contains("server_busy")).await;
    assert!(html.contains("(HTTP 503)"), "{html}");
    let debug = regex::Regex::new(r"x-debug-id <code>([^<]+)</code>").unwrap();
    let id = &debug.captures(&html).expect("a debug id")[1];
    assert_ne!(id, "none");
    assert!(!html.contains("<b>later</b>"));
    // The token still held is shown as served until it expires.
    assert!(html.contains(">served<"), "{html}");
    h.emulator.clear_faults();
}

#[tokio::test]
async fn sign_ins_are_listed_and_revoked_at_ims() {
    let u = UserHarness::start(UserOptions::default()).await;
    u.sign_in("user-1", "USERA00000000000000000@AdobeID").await;
    u.sign_in("user-2", "USERB00000000000000000@AdobeID").await;
    let op = Operator::sign_in(&u.url).await;
    let html = op.page("").await;
    assert_eq!(rows(&html, "data-user"), 2, "{html}");
    assert!(html.contains("USERA00000000000000000@AdobeID"));
    // Never a token: only ids, times and the key id.
    assert!(!html.to_lowercase().contains("access_token"));
    let html = op.page("?users_q=USERB").await;
    assert_eq!(rows(&html, "data-user"), 1);
    assert!(html.contains("data-user=\"user-2\""));
    // No consent configured: no links section.
    assert!(!html.contains("links-section"));

    let revokes = u.emulator.count(Endpoint::Revoke);
    let r = op
        .post("/admin/revoke-sign-in", &[("user", "user-1")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/admin?notice=revoked&subject=user-1"
    );
    assert!(u.emulator.count(Endpoint::Revoke) > revokes);
    assert_eq!(u.user_token("user-1").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(u.user_token("user-2").await.status(), StatusCode::OK);
    assert_eq!(rows(&op.page("").await, "data-user"), 1);
    let r = op
        .post("/admin/revoke-sign-in", &[("user", "user-1")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = op.post("/admin/revoke-sign-in", &[("user", "<bad>")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_only_internal_api_and_client_tokens_the_console_shows_tokens_and_rejections() {
    let emulator = support::start_emulator(3600).await;
    let o = support::Options {
        per_user_per_minute: 1,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    support::write_secret(dir.path(), "client.secret", &o.broker_secret);
    support::write_secret(dir.path(), "caller.key", support::CALLER_KEY);
    support::write_secret(dir.path(), "internal.key", INTERNAL_KEY);
    let text = format!(
        "{}\n[internal_api]\napi_key = \"file:internal.key\"\n",
        support::config_text(emulator.base_url(), &o)
    );
    let config = imsgate_broker::config::Config::parse(&text, dir.path()).unwrap();
    let broker = imsgate_broker::Broker::build(
        config,
        std::sync::Arc::new(imsgate_broker::clock::SystemClock),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = broker.serve(listener, std::future::pending()).await;
    });
    let http = client();
    let get = || {
        http.get(format!("{url}/api/client-token"))
            .bearer_auth(support::caller("rate-limited-user"))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);

    let op = Operator::sign_in(&url).await;
    let html = op.page("").await;
    assert!(!html.contains("links-section") && !html.contains("sign-ins-section"));
    let re = regex::Regex::new(r#"data-limit="user_per_minute"><td[^>]*><code>user_per_minute</code></td><td[^>]*>(\d+)</td>"#).unwrap();
    assert_eq!(&re.captures(&html).expect("the user limit row")[1], "2");
    // The pinned client-token key, served, with its refresh button.
    assert!(
        html.contains("data-credential=\"entitlement\" data-org=\"\""),
        "{html}"
    );
    let before = emulator.count(Endpoint::Token);
    let r = op
        .post(
            "/admin/refresh",
            &[("credential", "entitlement"), ("org", "")],
        )
        .await;
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/admin?notice=refreshed&subject=entitlement"
    );
    assert_eq!(emulator.count(Endpoint::Token), before + 1);
    // The sections that do not apply have no actions either.
    let r = op.post("/admin/unlink", &[("account_id", "a")]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    server.abort();
}
