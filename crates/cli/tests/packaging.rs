//! The deployment files: the systemd unit (`systemd-analyze verify` with the built binary, and a
//! table of the hardening it must keep) and the Containerfile (multi-stage, pinned bases, non-root,
//! nothing run in the runtime stage). No container engine runs here, so the image is not built.

#[path = "../../broker/tests/support/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_imsgate");

fn packaging(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging")
        .join(name)
}

/// `[Section]` -> key -> every value given (systemd keys may repeat).
fn unit_settings(text: &str) -> HashMap<String, HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry(section.clone())
            .or_default()
            .entry(k.to_owned())
            .or_default()
            .push(v.to_owned());
    }
    out
}

#[test]
fn the_systemd_unit_keeps_its_hardening() {
    let text = std::fs::read_to_string(packaging("imsgate.service")).unwrap();
    let units = unit_settings(&text);
    let service = &units["Service"];
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "imsgate"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        (
            "LoadCredential",
            "master.key:/etc/imsgate/credentials/master.key",
        ),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LimitNOFILE", "65536"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        (
            "ExecStart",
            "/usr/local/bin/imsgate serve --config /etc/imsgate/imsgate.toml --log-format json",
        ),
    ] {
        let got = service.get(key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            got.iter().any(|v| v == want),
            "[Service] {key}={want} is missing (found {got:?})"
        );
    }
    assert!(
        !service.contains_key("User") && !service.contains_key("Group"),
        "DynamicUser picks the user"
    );
    assert_eq!(units["Install"]["WantedBy"], ["multi-user.target"]);
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(analyze) = tools::external_tool("systemd-analyze") else {
        return;
    };
    // `verify` checks that ExecStart's program exists: point it at the binary just built.
    let text = std::fs::read_to_string(packaging("imsgate.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/imsgate "));
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("imsgate.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/imsgate", BIN)).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings (exit 0), so any line about the unit fails the test.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("imsgate.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_containerfile_is_multi_stage_pinned_and_non_root() {
    let text = std::fs::read_to_string(packaging("Containerfile")).unwrap();
    // Instructions, with continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let args: HashMap<&str, &str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .collect();
    let stages: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    for &i in &stages {
        let image = lines[i].split_whitespace().nth(1).unwrap();
        let image = args.iter().fold(image.to_owned(), |s, (k, v)| {
            s.replace(&format!("${{{k}}}"), v)
        });
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/') && !tag.contains('$'),
            "{image} names a pinned tag"
        );
    }
    let runtime = &lines[*stages.last().unwrap()..];
    assert!(
        runtime[0].contains("distroless") || runtime[0].contains("-slim"),
        "a minimal runtime base: {}",
        runtime[0]
    );
    let user = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as non-root, not {user}");
    assert!(
        !runtime.iter().any(|l| l.starts_with("RUN ")),
        "nothing runs in the runtime stage: it has no shell"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=build ") && l.ends_with(" /usr/local/bin/imsgate")),
        "only the binary is copied in"
    );
    let entrypoint = runtime
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let exec: Vec<String> = serde_json::from_str(entrypoint).expect("exec form (no shell)");
    assert_eq!(exec, ["/usr/local/bin/imsgate"]);
    assert!(!runtime.iter().any(|l| l.starts_with("HEALTHCHECK ")));
}
