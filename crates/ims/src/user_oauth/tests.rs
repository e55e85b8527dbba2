use super::*;

#[test]
fn s256_matches_rfc7636_appendix_b() {
    // The worked example of RFC 7636 Appendix B.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert!(is_verifier(verifier));
    assert_eq!(
        s256_challenge(verifier),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn verifier_shape_table() {
    for (v, ok) in [
        ("a".repeat(42), false),
        ("a".repeat(43), true),
        ("a".repeat(128), true),
        ("a".repeat(129), false),
        (format!("{}~._-", "a".repeat(40)), true),
        (format!("{}+", "a".repeat(43)), false),
        (format!("{} ", "a".repeat(43)), false),
    ] {
        assert_eq!(is_verifier(&v), ok, "{v:?}");
    }
}

#[test]
fn authorize_url_sends_s256_explicitly() {
    let scopes = ScopeSet::new(["openid", "AdobeID", "offline_access"]);
    let url = AuthorizeRequest {
        client_id: "cid",
        redirect_uri: "https://app.example/user/callback",
        scopes: &scopes,
        state: "st&=",
        nonce: "no",
        code_challenge: "ch",
        prompt: Some("login"),
    }
    .to_url(&Url::parse("https://ims.example/ims/authorize/v2").unwrap());
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| {
        q.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("client_id"), ["cid"]);
    assert_eq!(get("redirect_uri"), ["https://app.example/user/callback"]);
    assert_eq!(get("response_type"), ["code"]);
    assert_eq!(get("state"), ["st&="]);
    assert_eq!(get("code_challenge_method"), ["S256"]);
    assert_eq!(get("code_challenge"), ["ch"]);
    assert_eq!(get("prompt"), ["login"]);
    assert_eq!(get("scope"), ["AdobeID,offline_access,openid"]);
}

#[test]
fn redirect_table() {
    use AuthorizeRedirectError as E;
    let long = "s".repeat(MAX_STATE_LEN + 1);
    let cases: Vec<(String, Result<AuthorizeOutcome, E>)> = vec![
        (
            "code=abc&state=s".into(),
            Ok(AuthorizeOutcome::Code("abc".into())),
        ),
        (
            "state=s&error=access_denied".into(),
            Ok(AuthorizeOutcome::Error("access_denied".into())),
        ),
        // Odd error text is reduced to a safe token, never echoed.
        (
            "state=s&error=%3Cscript%3E".into(),
            Ok(AuthorizeOutcome::Error("error".into())),
        ),
        ("code=a&code=b&state=s".into(), Err(E::Duplicate("code"))),
        ("code=a&state=s&state=t".into(), Err(E::Duplicate("state"))),
        ("error=a&error=b&state=s".into(), Err(E::Duplicate("error"))),
        ("code=a&error=b&state=s".into(), Err(E::Conflicting)),
        ("state=s".into(), Err(E::NoOutcome)),
        ("code=a".into(), Err(E::MissingState)),
        ("code=a&state=".into(), Err(E::MissingState)),
        ("error=access_denied".into(), Err(E::MissingState)),
        ("code=&state=s".into(), Err(E::BadCode)),
        ("code=a%20b&state=s".into(), Err(E::BadCode)),
        (format!("code=a&state={long}"), Err(E::StateTooLong)),
    ];
    for (q, want) in cases {
        let got = parse_redirect(&q).map(|r| r.outcome);
        assert_eq!(got, want, "{q}");
    }
}

#[test]
fn client_auth_post_and_basic() {
    let secret = SecretString::new("p@ss:w&rd");
    let verifier = SecretString::new("v".repeat(43));
    let url = Url::parse("https://ims.example/ims/token/v3").unwrap();
    let exchange = |auth| {
        CodeExchange {
            client_id: "cid",
            client_secret: &secret,
            auth,
            code: "the-code",
            code_verifier: &verifier,
            redirect_uri: "https://app.example/cb",
        }
        .to_http(&url)
    };
    let post = exchange(ClientAuth::Post);
    let body: Vec<(String, String)> = serde_urlencoded::from_bytes(&post.body).unwrap();
    let has = |b: &[(String, String)], k: &str, v: &str| b.iter().any(|(n, x)| n == k && x == v);
    assert!(has(&body, "grant_type", "authorization_code"));
    assert!(has(&body, "client_secret", "p@ss:w&rd"));
    assert!(has(&body, "code_verifier", &"v".repeat(43)));
    assert!(!post.headers.iter().any(|(k, _)| *k == "authorization"));

    let basic = exchange(ClientAuth::Basic);
    let body: Vec<(String, String)> = serde_urlencoded::from_bytes(&basic.body).unwrap();
    assert!(!body.iter().any(|(k, _)| k == "client_secret"));
    let header = basic
        .headers
        .iter()
        .find(|(k, _)| *k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.strip_prefix("Basic ").unwrap())
        .unwrap();
    // The secret's ':' and '&' are form-encoded so the split at ':' stays unambiguous.
    assert_eq!(String::from_utf8(decoded).unwrap(), "cid:p%40ss%3Aw%26rd");
    // The exchange's own Debug shows neither the code nor the secrets.
    let shown = format!(
        "{:?}",
        CodeExchange {
            client_id: "cid",
            client_secret: &secret,
            auth: ClientAuth::Post,
            code: "the-code",
            code_verifier: &verifier,
            redirect_uri: "https://app.example/cb",
        }
    );
    assert!(shown.contains("cid"), "{shown}");
    for hidden in ["the-code", "p@ss", &"v".repeat(43)] {
        assert!(!shown.contains(hidden), "{shown}");
    }
}

#[test]
fn user_token_response_table() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let resp = |status: u16, body: &str| HttpResponse {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    };
    let ok = parse_user_token_response(
        &resp(
            200,
            r#"{"access_token":"at","refresh_token":"rt","id_token":"x.y.z","expires_in":86399,"token_type":"bearer"}"#,
        ),
        now,
    )
    .unwrap();
    assert_eq!(ok.access.lifetime().as_secs(), 86399);
    assert_eq!(ok.refresh_token.unwrap().expose(), "rt");
    assert_eq!(ok.id_token.as_deref(), Some("x.y.z"));

    let no_refresh =
        parse_user_token_response(&resp(200, r#"{"access_token":"at","expires_in":60}"#), now)
            .unwrap();
    assert!(no_refresh.refresh_token.is_none());

    let bad = parse_user_token_response(
        &resp(
            200,
            r#"{"access_token":"at","expires_in":60,"refresh_token":5}"#,
        ),
        now,
    );
    assert!(bad.is_err());
    let refused = parse_user_token_response(
        &resp(400, r#"{"error":"invalid_grant","error_description":"x"}"#),
        now,
    )
    .unwrap_err();
    assert_eq!(refused.error.as_deref(), Some("invalid_grant"));
}
