//! Every CLI error is one line, starts with `imsgate:`, says what is wrong in plain words and
//! carries no Rust debris (`::`, `InvalidClient:`, `Os {`, `Sqlite(`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");

fn write_private(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A capitalized word directly followed by `(` or ` {`, or a CamelCase word followed by `:`, is
/// how a derived `Debug` or an enum name looks; plain sentences have neither.
fn enum_debris(line: &str) -> Option<String> {
    let bytes: Vec<char> = line.chars().collect();
    let mut word = String::new();
    for (i, c) in bytes.iter().enumerate() {
        if c.is_ascii_alphanumeric() || *c == '_' {
            word.push(*c);
            continue;
        }
        let capitalized = word.len() >= 2
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word.chars().skip(1).any(|c| c.is_ascii_lowercase());
        let camel = capitalized && word.chars().skip(1).any(|c| c.is_ascii_uppercase());
        let call = *c == '(' || (*c == ' ' && bytes.get(i + 1) == Some(&'{'));
        if (capitalized && call) || (camel && *c == ':') {
            return Some(word);
        }
        word.clear();
    }
    None
}

/// `word::word`, as in a Rust path (`std::io::Error`); an IPv6 address (`[::1]`) is not one.
fn rust_path(line: &str) -> bool {
    let c: Vec<char> = line.chars().collect();
    c.windows(4).any(|w| {
        let ident = |x: char| x.is_ascii_alphabetic() || x == '_';
        ident(w[0]) && w[1] == ':' && w[2] == ':' && ident(w[3])
    })
}

#[test]
fn the_debris_detector_finds_debris() {
    assert!(rust_path("imsgate: std::io::Error"));
    assert!(!rust_path("imsgate: listen on [::1]"));
    for bad in [
        "imsgate: InvalidClient: nope",
        "imsgate: Io(Os { code: 2 })",
        "imsgate: SqliteFailure(Error)",
    ] {
        assert!(enum_debris(bad).is_some(), "{bad}");
    }
    assert!(enum_debris("imsgate: use systemd's LoadCredential= (see docs)").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_plain_line() {
    let emulator = Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            "msg-client",
            "right-secret",
            &["openid"],
            3600,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_private(&d.join("wrong.secret"), "wrong-secret");
    let s2s = format!(
        "[ims]\nbase_url = \"{}\"\n\n[credentials.s2s]\ntype = \"oauth_server_to_server\"\nclient_id = \"msg-client\"\nclient_secret = \"file:wrong.secret\"\nscopes = [\"openid\"]\n\n[credentials.stock]\ntype = \"api_key\"\nclient_id = \"k\"\n",
        emulator.base_url()
    );
    let files: &[(&str, String)] = &[
        ("s2s.toml", s2s.clone()),
        ("empty.toml", String::new()),
        (
            "inline.toml",
            s2s.replace("file:wrong.secret", "p8e-inline-value"),
        ),
        (
            "typo.toml",
            s2s.replace("scopes = [\"openid\"]", "scoeps = [\"openid\"]"),
        ),
    ];
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
    // (arguments, what the one line must contain)
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "token".into(),
                "-c".into(),
                p("s2s.toml"),
                "--credential".into(),
                "nope".into(),
            ],
            "no credential named \"nope\" (known: s2s, stock)",
        ),
        (
            vec![
                "token".into(),
                "-c".into(),
                p("s2s.toml"),
                "--credential".into(),
                "s2s".into(),
            ],
            "cannot obtain a token for \"s2s\": IMS refused the client id or client secret (invalid_client",
        ),
        (
            vec![
                "token".into(),
                "-c".into(),
                p("s2s.toml"),
                "--credential".into(),
                "stock".into(),
            ],
            "is an api_key credential: it has no token",
        ),
        (
            vec!["doctor".into(), "-c".into(), p("empty.toml")],
            "the configuration file is empty; see docs/configuration.md for a minimal example",
        ),
        (
            vec!["doctor".into(), "-c".into(), p("missing.toml")],
            "cannot read config file (entity not found); pass an existing file with --config",
        ),
        (
            vec!["serve".into(), "-c".into(), p("inline.toml")],
            "credentials.s2s.client_secret: secret reference \"<value hidden>\" is not supported: use `file:/path/to/secret`, `keystore:NAME`",
        ),
        (
            vec!["doctor".into(), "-c".into(), p("typo.toml")],
            "unknown key `credentials.s2s.scoeps` (line 8); did you mean `scopes`?",
        ),
        (
            vec!["secrets".into(), "-c".into(), p("s2s.toml"), "list".into()],
            "no [keystore] section",
        ),
        (
            vec![
                "user-tokens".into(),
                "-c".into(),
                p("s2s.toml"),
                "list".into(),
            ],
            "no [user_login] section",
        ),
        (
            vec![
                "keys".into(),
                "generate".into(),
                "--out-dir".into(),
                d.to_str().unwrap().into(),
                "--bits".into(),
                "1024".into(),
            ],
            "--bits 1024 is not supported",
        ),
        (
            vec!["emulator".into(), "--listen".into(), "0.0.0.0:0".into()],
            "is not a loopback address",
        ),
    ];
    for (args, want) in cases {
        let out = tokio::process::Command::new(BIN)
            .args(["--log-level", "off"])
            .args(&args)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        let shown = args.join(" ");
        assert_eq!(out.status.code(), Some(1), "{shown}: {err}");
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.starts_with("imsgate: ")),
            "{shown}: {err}"
        );
        // One line per problem; the expected one is among them.
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "{shown}: {err:?} should contain {want:?}"
        );
        for line in lines {
            assert!(!rust_path(line), "{shown}: {line}");
            assert_eq!(enum_debris(line), None, "{shown}: {line}");
            assert!(
                !line.contains("wrong-secret") && !line.contains("p8e-inline"),
                "{shown}"
            );
        }
    }
}
