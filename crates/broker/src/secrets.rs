//! Secret references (`file:PATH`, `keystore:NAME`, `systemd:NAME`) and loading them safely. Secrets are never inline in config and
//! never read from environment variables.

use std::path::{Path, PathBuf};

use imsgate_ims::SecretString;
use zeroize::Zeroize;

/// Where a secret lives. Parsed from strings such as `file:/etc/imsgate/client_secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file readable only by its owner; surrounding whitespace is trimmed.
    File(PathBuf),
    /// An entry in imsgate's encrypted keystore; the location is attached when the config has a
    /// `[keystore]` section.
    Keystore(
        String,
        Option<std::sync::Arc<crate::keystore::KeystoreLocation>>,
    ),
    /// A file in `$CREDENTIALS_DIRECTORY`, which systemd's `LoadCredential=` provides (only the
    /// directory's path comes from the environment, never the secret).
    Systemd(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "secret reference {0:?} is not supported: use `file:/path/to/secret`, `keystore:NAME` (see `imsgate secrets`) or `systemd:NAME` (systemd's LoadCredential=); secrets are never inline or in environment variables"
    )]
    BadReference(String),
    #[error(
        "systemd:{0} needs $CREDENTIALS_DIRECTORY, which systemd sets for a unit with LoadCredential={0}:/path/to/secret"
    )]
    NoCredentialsDirectory(String),
    #[error("secret file {path} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "secret file {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("secret file {path} is empty")]
    Empty { path: String },
    #[error("keystore:{0} needs a [keystore] section with path and master_keys")]
    KeystoreUnavailable(String),
    #[error("{0}")]
    Keystore(String),
}

/// The reference as written (`file:/path`), never the secret itself.
impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Keystore(name, _) => write!(f, "keystore:{name}"),
            Self::Systemd(name) => write!(f, "systemd:{name}"),
        }
    }
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::BadReference(s.to_owned()));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("keystore:")
            && !name.is_empty()
        {
            return Ok(Self::Keystore(name.to_owned(), None));
        }
        if let Some(name) = s.strip_prefix("systemd:")
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name != "."
            && name != ".."
        {
            return Ok(Self::Systemd(name.to_owned()));
        }
        // Do not echo the value: a user may have pasted the secret itself here.
        Err(SecretError::BadReference(redact_reference(s)))
    }

    /// Resolves a relative file path against the directory of the config file.
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            Self::File(p) if p.is_relative() => Self::File(base.join(p)),
            other => other,
        }
    }

    pub fn load(&self) -> Result<SecretString, SecretError> {
        match self {
            Self::File(path) => load_file(path),
            Self::Keystore(name, None) => Err(SecretError::KeystoreUnavailable(name.clone())),
            Self::Systemd(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => load_file(&PathBuf::from(dir).join(name)),
                None => Err(SecretError::NoCredentialsDirectory(name.clone())),
            },
            Self::Keystore(name, Some(location)) => crate::keystore::Keystore::open(location)
                .and_then(|ks| ks.get(name))
                .map_err(|e| SecretError::Keystore(e.to_string())),
        }
    }
}

fn redact_reference(s: &str) -> String {
    match s.split_once(':') {
        Some((scheme, _))
            if scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("{scheme}:…")
        }
        _ => "<value hidden>".to_owned(),
    }
}

fn load_file(path: &Path) -> Result<SecretString, SecretError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| SecretError::Unreadable {
        path: shown.clone(),
        reason: e.kind().to_string(),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::TooOpen { path: shown, mode });
        }
    }
    if !meta.is_file() {
        return Err(SecretError::Unreadable {
            path: shown,
            reason: "not a regular file".to_owned(),
        });
    }
    let mut raw = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
        path: shown.clone(),
        reason: if e.kind() == std::io::ErrorKind::InvalidData {
            // Secrets are text; a raw binary key would otherwise fail with "invalid data".
            "it is not UTF-8 text (write binary keys as base64, e.g. `openssl rand -base64 48`)"
                .to_owned()
        } else {
            e.kind().to_string()
        },
    })?;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        raw.zeroize();
        return Err(SecretError::Empty { path: shown });
    }
    let secret = SecretString::new(trimmed);
    // The untrimmed copy is wiped too, not just dropped.
    raw.zeroize();
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn references_table() {
        let cases: &[(&str, Result<SecretRef, ()>)] = &[
            ("file:/a/b", Ok(SecretRef::File("/a/b".into()))),
            ("file:rel/x", Ok(SecretRef::File("rel/x".into()))),
            (
                "keystore:main",
                Ok(SecretRef::Keystore("main".into(), None)),
            ),
            (
                "systemd:client-secret",
                Ok(SecretRef::Systemd("client-secret".into())),
            ),
            ("file:", Err(())),
            ("keystore:", Err(())),
            ("systemd:", Err(())),
            ("systemd:../etc/passwd", Err(())),
            ("systemd:..", Err(())),
            ("env:CLIENT_SECRET", Err(())),
            ("p8e-plaintext-secret", Err(())),
        ];
        for (input, want) in cases {
            let got = SecretRef::parse(input).map_err(|_| ());
            assert_eq!(&got, want, "{input}");
        }
        let msg = SecretRef::parse("p8e-plaintext-secret")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("p8e-plaintext"), "{msg}");
        for scheme in ["file:", "keystore:", "systemd:"] {
            assert!(msg.contains(scheme), "{msg}");
        }
    }

    #[test]
    fn file_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok", "  value\n", 0o600);
        assert_eq!(SecretRef::File(ok).load().unwrap().expose(), "value");
        let open = write(dir.path(), "open", "value", 0o644);
        let err = SecretRef::File(open.clone()).load().unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", open.display())),
            "{err}"
        );
        let group = write(dir.path(), "group", "value", 0o640);
        assert!(matches!(
            SecretRef::File(group).load(),
            Err(SecretError::TooOpen { .. })
        ));
        let empty = write(dir.path(), "empty", " \n", 0o600);
        assert!(matches!(
            SecretRef::File(empty).load(),
            Err(SecretError::Empty { .. })
        ));
        let missing = SecretRef::File(dir.path().join("nope")).load().unwrap_err();
        assert!(matches!(missing, SecretError::Unreadable { .. }));
        assert!(matches!(
            SecretRef::Keystore("k".into(), None).load(),
            Err(SecretError::KeystoreUnavailable(_))
        ));
    }
}
