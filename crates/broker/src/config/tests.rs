//! Config parsing and validation tables.
use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"

[ims]
base_url = "http://127.0.0.1:9999"

[credentials.firefly]
type = "oauth_server_to_server"
client_id = "cid"
client_secret = "file:secret.txt"
scopes = "openid,AdobeID,firefly_api"

[client_token]
credential = "firefly"
token_id_namespace = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
allowed_origins = ["https://app.example.com", "http://localhost:5173"]

[client_token.caller_auth]
issuer = "https://partner.example"
audience = "imsgate"
hs256_secret = "file:/etc/imsgate/caller.key"
"#;

#[test]
fn good_config_parses() {
    let c = Config::parse(GOOD, Path::new("/cfg")).unwrap();
    assert_eq!(
        c.ims.endpoints.token.as_str(),
        "http://127.0.0.1:9999/ims/token/v3"
    );
    let cred = &c.credentials["firefly"];
    assert_eq!(
        cred.client_secrets,
        vec![SecretRef::File("/cfg/secret.txt".into())]
    );
    assert_eq!(cred.scopes.joined(), "AdobeID,firefly_api,openid");
    let ct = c.client_token.unwrap();
    assert_eq!(ct.rate_limit, RateLimitConfig::default());
    assert!(matches!(ct.caller_auth.key, CallerKeyConfig::Hs256 { .. }));
    assert_eq!(c.refresh.caller_wait, std::time::Duration::from_secs(2));
    let text = GOOD.replacen("[server]", "[refresh]\ncaller_wait_ms = 750\n[server]", 1);
    let c = Config::parse(&text, Path::new("/cfg")).unwrap();
    assert_eq!(c.refresh.caller_wait, std::time::Duration::from_millis(750));
}

/// Each case: a mutation of the good config, and fragments every reported problem must include.
#[test]
fn problems_table() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "client_id = \"cid\"",
            "client_id = \"cid\"\nclient_secet = \"x\"",
            &["credentials.firefly.client_secet` (line 11)"],
        ),
        (
            "[server]",
            "[server]\nlisten_addr = 1",
            &["server.listen_addr` (line 3)"],
        ),
        (
            "client_secret = \"file:secret.txt\"",
            "client_secret = \"hunter2\"",
            &[
                "credentials.firefly.client_secret: ",
                "file:",
                "keystore:",
                "systemd:",
            ],
        ),
        (
            "client_secret = \"file:secret.txt\"",
            "client_secret = \"env:SECRET\"",
            &["env:…"],
        ),
        (
            "token_id_namespace = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"",
            "token_id_namespace = \"nope\"",
            &["token_id_namespace", "uuidgen"],
        ),
        (
            "credential = \"firefly\"",
            "credential = \"other\"",
            &["no credential named \"other\""],
        ),
        (
            "\"http://localhost:5173\"",
            "\"https://app.example.com/path\"",
            &["allowed_origins[1]"],
        ),
        (
            "hs256_secret = \"file:/etc/imsgate/caller.key\"",
            "jwks_url = \"https://p.example/jwks\"\nalgorithms = [\"HS256\"]",
            &["algorithms[0]", "\"HS256\" is not allowed"],
        ),
        (
            "hs256_secret = \"file:/etc/imsgate/caller.key\"",
            "",
            &["set hs256_secret"],
        ),
        (
            "client_secret = \"file:secret.txt\"",
            "client_secrets = []",
            &["credentials.firefly.client_secrets: must list one or two"],
        ),
        (
            "type = \"oauth_server_to_server\"",
            "type = \"jwt\"",
            &["unknown credential type \"jwt\""],
        ),
        (
            "base_url = \"http://127.0.0.1:9999\"",
            "base_url = \"ftp://x\"",
            &["ims.base_url"],
        ),
        (
            "[server]",
            "[refresh]\ncaller_wait_ms = 0\n[server]",
            &["refresh.caller_wait_ms: must be between 1 and ims.request_timeout_ms"],
        ),
        (
            "[server]",
            "[refresh]\ncaller_wait_ms = 60001\n[server]",
            &["refresh.caller_wait_ms: must be between 1 and ims.request_timeout_ms"],
        ),
        ("listen = \"127.0.0.1:0\"", "listen = 5", &["invalid type"]),
        (
            "listen = \"127.0.0.1:0\"",
            "listen = \"\n",
            &["TOML parse error"],
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "case source missing: {from}");
        let text = GOOD.replacen(from, to, 1);
        let err = Config::parse(&text, Path::new("/cfg"))
            .expect_err(to)
            .to_string();
        for w in *want {
            assert!(err.contains(w), "{to}: error {err:?} lacks {w:?}");
        }
    }
}

/// Bad configs and the exact problems reported, in order: unknown keys with their full path,
/// line and a suggestion; keys named as written; all problems of one file in one run.
#[test]
fn exact_messages_table() {
    let cases: &[(&str, &str, &[&str])] = &[
        // Inside an optional table: the full path, no `?` markers, the line, a suggestion.
        (
            "audience = \"imsgate\"",
            "audiance = \"imsgate\"",
            &[
                "unknown key `client_token.caller_auth.audiance` (line 21); did you mean `audience`?",
                "client_token.caller_auth: audience is required (the `aud` your backend puts in caller tokens)",
            ],
        ),
        (
            "[server]\nlisten",
            "[server]\nlistn",
            &["unknown key `server.listn` (line 3); did you mean `listen`?"],
        ),
        (
            "scopes = \"openid,AdobeID,firefly_api\"",
            "scopes = \"openid,AdobeID,firefly_api\"\nclient_secrets_file = \"x\"",
            &[
                "unknown key `credentials.firefly.client_secrets_file` (line 13); see docs/configuration.md for the keys",
            ],
        ),
        // Top level, and a key far from any valid one: no suggestion.
        (
            "[server]",
            "colour = \"blue\"\n[server]",
            &["unknown key `colour` (line 2); see docs/configuration.md for the keys"],
        ),
        (
            "[server]",
            "[refresh]\ncaler_wait_ms = 5\n[server]",
            &["unknown key `refresh.caler_wait_ms` (line 3); did you mean `caller_wait_ms`?"],
        ),
        (
            "[client_token.caller_auth]",
            "[client_token.rate_limit]\nper_user_per_minit = 5\n[client_token.caller_auth]",
            &[
                "unknown key `client_token.rate_limit.per_user_per_minit` (line 20); did you mean `per_user_per_minute`?",
            ],
        ),
        // A secret written inline: named as written, every reference scheme offered, and the
        // typo elsewhere still reported.
        (
            "client_secret = \"file:secret.txt\"",
            "client_secret = \"hunter2\"\nscope = \"x\"",
            &[
                "unknown key `credentials.firefly.scope` (line 12); did you mean `scopes`?",
                "credentials.firefly.client_secret: secret reference \"<value hidden>\" is not supported: use `file:/path/to/secret`, `keystore:NAME` (see `imsgate secrets`) or `systemd:NAME` (systemd's LoadCredential=); secrets are never inline or in environment variables",
            ],
        ),
        (
            "client_secret = \"file:secret.txt\"",
            "client_secrets = [\"file:a\", \"file:a\"]",
            &[
                "credentials.firefly.client_secrets[1]: lists the same secret reference twice; during rotation list the old and the new secret",
            ],
        ),
        ("", "\n# only a comment\n", &[]),
    ];
    for (from, to, want) in cases {
        let text = if from.is_empty() {
            (*to).to_owned()
        } else {
            assert!(GOOD.contains(from), "case source missing: {from}");
            GOOD.replacen(from, to, 1)
        };
        let got = Config::parse(&text, Path::new("/cfg"))
            .expect_err(to)
            .problems;
        if want.is_empty() {
            assert_eq!(
                got,
                [
                    "the configuration file is empty; see docs/configuration.md for a minimal example"
                ]
            );
        } else {
            assert_eq!(got, *want, "{to}");
        }
    }
}

/// Keys in arrays of tables are found with their index, and a service-account key's typo is
/// suggested from the key table's own fields.
#[test]
fn unknown_keys_in_arrays_of_tables() {
    let text = r#"
[credentials.sa]
type = "service_account"
client_id = "cid"
client_secret = "file:s"
org_id = "O@AdobeOrg"
technical_account_id = "T@techacct.adobe.com"
metascopes = ["ent_dataservices_sdk"]

[[credentials.sa.keys]]
private_key = "file:k0"
certificate = "c0.pem"

[[credentials.sa.keys]]
private_key = "file:k1"
certficate = "c1.pem"
"#;
    let got = Config::parse(text, Path::new("/cfg")).unwrap_err().problems;
    assert_eq!(
        got[0],
        "unknown key `credentials.sa.keys[1].certficate` (line 16); did you mean `certificate`?"
    );
}

/// Loading from a file also loads the secrets when the config has other problems, so a missing
/// secret file is not hidden behind an inline secret.
#[test]
fn secrets_are_checked_when_the_config_has_other_problems() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imsgate.toml");
    let text =
        GOOD.replace(
            "hs256_secret = \"file:/etc/imsgate/caller.key\"",
            "hs256_secret = \"file:caller.key\"",
        )
        .replace(
            "client_secret = \"file:secret.txt\"",
            "client_secret = \"hunter2\"",
        ) + "\n[internal_api]\napi_key = \"file:missing.key\"\n";
    std::fs::write(&cfg, text).unwrap();
    let got = Config::load(&cfg).unwrap_err().problems;
    let shown = cfg.display().to_string();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with(&format!("{shown}: credentials.firefly.client_secret: ")));
    assert!(
        got[1].starts_with(&format!(
            "{shown}: client_token.caller_auth.hs256_secret: secret file "
        )),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with(&format!("{shown}: internal_api.api_key: secret file ")),
        "{got:#?}"
    );
}

#[test]
fn reports_every_problem_at_once() {
    let text = GOOD
        .replace("client_id = \"cid\"", "")
        .replace(
            "token_id_namespace = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"",
            "",
        )
        .replace("audience = \"imsgate\"", "");
    let err = Config::parse(&text, Path::new("/")).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    let unknown = GOOD.replace("[server]", "[server]\na = 1\nb = 2");
    let err = Config::parse(&unknown, Path::new("/")).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn the_documented_complete_example_parses() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    let c = Config::parse(&doc[start..end], Path::new("/etc/imsgate")).unwrap();
    let consent = c.consent.expect("the example configures consent");
    assert_eq!(
        consent.callback_url.as_str(),
        "https://app.example.com/imsgate/consent/callback"
    );
    assert_eq!(
        consent.issuers,
        vec![
            "https://ims-na1.adobelogin.com".to_owned(),
            "https://ims-na1.adobelogin.com/ims".to_owned()
        ]
    );
    assert!(!consent.development_mode);
    assert_eq!(
        consent.id_token_max_age,
        std::time::Duration::from_secs(300)
    );
    assert!(c.internal_api.is_some());
    assert_eq!(
        c.storage.unwrap().sqlite_path,
        Path::new("/var/lib/imsgate/imsgate.sqlite")
    );
    assert_eq!(
        c.credentials["partner"].kind,
        CredentialKind::EnterpriseWebApp
    );
    let ul = c.user_login.expect("the example configures user sign-in");
    assert_eq!(
        ul.callback_url.as_str(),
        "https://app.example.com/imsgate/user/callback"
    );
}

/// Each case: a consent config mutated one way, and a fragment of the problem it must report.
#[test]
fn consent_problems_table() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let good = &doc[start..end];
    let cases: &[(&str, &str, &str)] = &[
        (
            "public_url = \"https://app.example.com/imsgate\"",
            "public_url = \"https://other.example.com\"",
            "consent.callback_url: \"https://other.example.com/consent/callback\" is neither",
        ),
        (
            "credential = \"partner\"",
            "credential = \"firefly\"",
            "must have type = \"enterprise_web_app\"",
        ),
        (
            "return_to_origins = [\"https://app.example.com\"]",
            "return_to_origins = []",
            "return_to_origins must list",
        ),
        (
            "return_to_origins = [\"https://app.example.com\"]",
            "return_to_origins = [\"https://app.example.com/path\"]",
            "consent.return_to_origins",
        ),
        (
            "[internal_api]\napi_key = \"file:/etc/imsgate/internal-api.key\"",
            "",
            "internal_api: api_key is required",
        ),
        (
            "default_redirect_uri = \"https://app.example.com/imsgate/consent/callback\"",
            "default_redirect_uri = \"https://*.example.com/cb\"",
            "credentials.partner: default redirect URI, position",
        ),
        (
            "session_ttl_seconds = 900",
            "session_ttl_seconds = 0",
            "consent.session_ttl_seconds: must be between 1 and 3600",
        ),
        (
            "id_token_max_age_seconds = 300",
            "id_token_max_age_seconds = 0",
            "consent.id_token_max_age_seconds: must be between 1 and 3600",
        ),
        (
            "type = \"oauth_server_to_server\"",
            "type = \"oauth_server_to_server\"\ndefault_redirect_uri = \"https://a.example.com/\"",
            "apply to enterprise_web_app and oauth_web_app credentials only",
        ),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "case source missing: {from}");
        let text = good.replacen(from, to, 1);
        let err = Config::parse(&text, Path::new("/etc/imsgate")).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.contains(want)),
            "{to}: want {want:?} in {:?}",
            err.problems
        );
    }
}

#[test]
fn api_key_credentials_have_a_client_id_only() {
    let ok = "[credentials.stock]\ntype = \"api_key\"\nclient_id = \"0123abcd\"\n";
    let c = Config::parse(ok, Path::new("/cfg")).unwrap();
    assert_eq!(c.credentials["stock"].kind, CredentialKind::ApiKey);
    assert!(c.credentials["stock"].client_secrets.is_empty());
    for (text, want) in [
        (
            format!("{ok}client_secret = \"file:x\"\n"),
            "an api_key credential has no secret",
        ),
        (
            "[credentials.stock]\ntype = \"api_key\"\n".to_owned(),
            "client_id is required",
        ),
        (
            format!(
                "{ok}\n[client_token]\ncredential = \"stock\"\ntoken_id_namespace = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"\n[client_token.caller_auth]\nissuer = \"i\"\naudience = \"a\"\nhs256_secret = \"file:k\"\n"
            ),
            "an api_key credential has no token to hand out",
        ),
    ] {
        let err = Config::parse(&text, Path::new("/cfg")).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.contains(want)),
            "want {want:?} in {:?}",
            err.problems
        );
    }
}

const USER_LOGIN: &str = r#"
[credentials.web]
type = "oauth_web_app"
client_id = "web-cid"
client_secrets = ["file:web.secret"]
scopes = ["openid", "AdobeID", "offline_access"]
default_redirect_uri = "https://app.example.com/imsgate/user/callback"

[user_login]
credential = "web"
public_url = "https://app.example.com/imsgate"
return_to_origins = ["https://app.example.com"]
token_encryption_keys = ["file:tokens.key", "systemd:old-tokens.key"]

[internal_api]
api_key = "file:internal.key"
"#;

#[test]
fn user_login_parses_with_defaults() {
    let c = Config::parse(USER_LOGIN, Path::new("/cfg")).unwrap();
    let ul = c.user_login.unwrap();
    assert_eq!(
        ul.callback_url.as_str(),
        "https://app.example.com/imsgate/user/callback"
    );
    assert_eq!(ul.token_auth, imsgate_ims::user_oauth::ClientAuth::Post);
    assert_eq!(
        ul.token_encryption_keys,
        vec![
            crate::keystore::MasterKeyRef::File("/cfg/tokens.key".into()),
            crate::keystore::MasterKeyRef::Systemd("old-tokens.key".into()),
        ]
    );
    assert_eq!(
        ul.refresh_token_lifetime,
        Duration::from_secs(14 * 24 * 3600)
    );
    assert_eq!(c.credentials["web"].kind, CredentialKind::OAuthWebApp);
    // Storage defaults beside the config, as with consent.
    assert_eq!(
        c.storage.unwrap().sqlite_path,
        Path::new("/cfg/imsgate.sqlite")
    );
}

/// Each case: the user-login config mutated one way, and a fragment of the problem it must report.
#[test]
fn user_login_problems_table() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "token_encryption_keys = [\"file:tokens.key\", \"systemd:old-tokens.key\"]",
            "",
            "user_login.token_encryption_keys: must list at least one key",
        ),
        (
            "\"file:tokens.key\",",
            "\"env:TOKENS\",",
            "user_login.token_encryption_keys[0]: must be file:PATH or systemd:NAME",
        ),
        (
            "scopes = [\"openid\", \"AdobeID\", \"offline_access\"]",
            "scopes = [\"AdobeID\"]",
            "must include \"openid\"",
        ),
        (
            "public_url = \"https://app.example.com/imsgate\"",
            "public_url = \"https://other.example.com\"",
            "user_login.callback_url: \"https://other.example.com/user/callback\" is neither",
        ),
        (
            "type = \"oauth_web_app\"",
            "type = \"enterprise_web_app\"",
            "must have type = \"oauth_web_app\"",
        ),
        (
            "[user_login]",
            "[user_login]\ntoken_auth = \"private_key_jwt\"",
            "user_login.token_auth",
        ),
        (
            "[user_login]",
            "[user_login]\nprompt = \"always\"",
            "user_login.prompt",
        ),
        (
            "[internal_api]\napi_key = \"file:internal.key\"",
            "",
            "api_key is required with [consent] or [user_login]",
        ),
        (
            "return_to_origins = [\"https://app.example.com\"]",
            "return_to_origins = []",
            "return_to_origins must list",
        ),
    ];
    for (from, to, want) in cases {
        assert!(USER_LOGIN.contains(from), "case source missing: {from}");
        let text = USER_LOGIN.replacen(from, to, 1);
        let err = Config::parse(&text, Path::new("/cfg")).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.contains(want)),
            "{to}: want {want:?} in {:?}",
            err.problems
        );
    }
}

/// `[refresh]`: defaults, the caller wait following a shorter IMS timeout, and the bounds.
#[test]
fn refresh_table() {
    let ms = Duration::from_millis;
    /// Ok(caller wait, backoff cap without a token), or a fragment of the error.
    type Want = Result<(Duration, Duration), &'static str>;
    // (extra [ims] lines, [refresh] lines, what comes out)
    let cases: &[(&str, &str, Want)] = &[
        ("", "", Ok((ms(2000), ms(4000)))),
        ("request_timeout_ms = 400", "", Ok((ms(400), ms(4000)))),
        (
            "",
            "caller_wait_ms = 500\nbackoff_max_without_token_ms = 1500",
            Ok((ms(500), ms(1500))),
        ),
        ("", "caller_wait_ms = 10000", Ok((ms(10_000), ms(4000)))),
        (
            "",
            "caller_wait_ms = 10001",
            Err("refresh.caller_wait_ms: must be between 1 and ims.request_timeout_ms (10000 ms)"),
        ),
        (
            "request_timeout_ms = 400",
            "caller_wait_ms = 2000",
            Err("refresh.caller_wait_ms: must be between 1 and ims.request_timeout_ms (400 ms)"),
        ),
        ("", "caller_wait_ms = 0", Err("refresh.caller_wait_ms")),
        (
            "",
            "backoff_max_without_token_ms = 0",
            Err("refresh.backoff_max_without_token_ms: must be positive"),
        ),
        (
            "",
            "caller_wait = 5",
            Err("unknown key `refresh.caller_wait`"),
        ),
    ];
    for (ims, refresh, want) in cases {
        let text = GOOD.replacen(
            "base_url = \"http://127.0.0.1:9999\"",
            &format!("base_url = \"http://127.0.0.1:9999\"\n{ims}"),
            1,
        ) + &format!("\n[refresh]\n{refresh}\n");
        match (Config::parse(&text, Path::new("/cfg")), want) {
            (Ok(c), Ok((wait, cap))) => {
                assert_eq!(c.refresh.caller_wait, *wait, "{ims} / {refresh}");
                assert_eq!(
                    c.refresh.backoff_max_without_token, *cap,
                    "{ims} / {refresh}"
                );
            }
            (Err(e), Err(fragment)) => {
                let e = e.to_string();
                assert!(
                    e.contains(fragment),
                    "{refresh}: error {e:?} lacks {fragment:?}"
                );
            }
            (got, want) => panic!("{ims} / {refresh}: got {got:?}, want {want:?}"),
        }
    }
}

/// `callback_url` and `public_url` are compared string for string (with the redirect rules here,
/// with the Developer Console at IMS), so a spelling the URL parser would rewrite is refused with
/// the canonical form, in both flows, as it is for `default_redirect_uri`.
#[test]
fn flow_urls_must_be_canonical_in_both_flows() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let consent_good = &doc[start..end];
    // (key, value as written with {cb} for the flow's callback path, None if accepted or a
    // fragment of the problem)
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("callback_url", "https://app.example.com/imsgate{cb}", None),
        ("callback_url", "HTTPS://app.example.com/imsgate{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://APP.example.com/imsgate{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://app.example.com:443/imsgate{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://app.example.com/imsgate/x/..{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://app.example.com/imsgate/.{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://app.example.com/imsgate/%7e/..{cb}", Some("write \"https://app.example.com/imsgate{cb}\"")),
        ("callback_url", "https://app.example.com/imsgate{cb};x=1", Some("\";\" in the path")),
        ("callback_url", "https://app.example.com/imsgate{cb}%2e", Some("percent-encoded")),
        ("public_url", "https://app.example.com/imsgate", None),
        ("public_url", "https://APP.example.com/imsgate", Some("public_url: \"https://APP.example.com/imsgate\" is not in canonical form, so it would not be the string IMS compares; write \"https://app.example.com/imsgate\"")),
        ("public_url", "https://app.example.com:443/imsgate", Some("write \"https://app.example.com/imsgate\"")),
    ];
    for (section, good, cb) in [
        ("consent", consent_good, "/consent/callback"),
        ("user_login", USER_LOGIN, "/user/callback"),
    ] {
        let header = format!("[{section}]\n");
        assert!(good.contains(&header), "{section}");
        for (key, value, want) in cases {
            let value = value.replace("{cb}", cb);
            let text = if *key == "public_url" {
                good.replacen(
                    "public_url = \"https://app.example.com/imsgate\"",
                    &format!("public_url = \"{value}\""),
                    1,
                )
            } else {
                good.replacen(&header, &format!("{header}{key} = \"{value}\"\n"), 1)
            };
            let got = Config::parse(&text, Path::new("/etc/imsgate"));
            match (got, want) {
                (Ok(c), None) => {
                    let url = match section {
                        "consent" => c.consent.map(|x| x.callback_url),
                        _ => c.user_login.map(|x| x.callback_url),
                    };
                    assert_eq!(
                        url.as_ref().map(Url::as_str),
                        Some(format!("https://app.example.com/imsgate{cb}").as_str()),
                        "{section}.{key} = {value:?}"
                    );
                }
                (Err(e), Some(fragment)) => {
                    let fragment = fragment.replace("{cb}", cb);
                    let key_path = format!("{section}.{key}");
                    assert!(
                        e.problems
                            .iter()
                            .any(|p| p.contains(&key_path) && p.contains(&fragment)),
                        "{section}.{key} = {value:?}: want {fragment:?} in {:?}",
                        e.problems
                    );
                }
                (got, want) => panic!(
                    "{section}.{key} = {value:?}: got {:?}, want {want:?}",
                    got.map(drop).map_err(|e| e.problems)
                ),
            }
        }
    }
}

/// Found by fuzzing: a huge `certificate_warning_days` overflowed `days * 86_400` (a panic in
/// builds with overflow checks, a wrapped duration without). It is now a reported problem.
#[test]
fn huge_certificate_warning_days_is_a_problem_not_an_overflow() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    let example = &doc[start..end];
    assert!(example.contains("certificate_warning_days = 30 "));
    for (days, refused) in [
        ("30", false),
        ("3650", false),
        ("3651", true),
        ("300000000000000", true),
        ("9223372036854775807", true),
    ] {
        let text = example.replace(
            "certificate_warning_days = 30 ",
            &format!("certificate_warning_days = {days} "),
        );
        match Config::parse(&text, Path::new("/etc/imsgate")) {
            Ok(_) => assert!(!refused, "{days} accepted"),
            Err(e) => {
                assert!(refused, "{days} refused: {e}");
                assert_eq!(
                    e.problems,
                    vec![
                        "credentials.legacy.certificate_warning_days: must be at most 3650 (ten years)"
                            .to_owned()
                    ]
                );
            }
        }
    }
}
