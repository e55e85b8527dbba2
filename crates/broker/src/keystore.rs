//! The encrypted keystore: named secrets encrypted at rest with AES-256-GCM under a master key.
//!
//! Each record carries the id of the master key that encrypted it, so the master key can rotate:
//! new records use the newest key, any configured key decrypts. The associated data binds each
//! ciphertext to its name and key id, so records cannot be swapped. The master key comes from a
//! file (mode 600) or the systemd credentials directory, never from the environment or the config.
//!
//! Invariant: the keystore file is replaced atomically (write, fsync, rename); a failed operation
//! leaves the previous file intact.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use imsgate_ims::SecretString;
use serde::{Deserialize, Serialize};

use crate::secrets::SecretRef;

/// Where the keystore lives and which master keys open it (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreLocation {
    pub path: PathBuf,
    pub master_keys: Vec<MasterKeyRef>,
}

/// A master key reference: `file:PATH` or `systemd:NAME` (a file in `$CREDENTIALS_DIRECTORY`,
/// which systemd's `LoadCredential=` provides; only the directory's path comes from the
/// environment, never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyRef {
    File(PathBuf),
    Systemd(String),
}

impl MasterKeyRef {
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(p) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Some(Self::File(PathBuf::from(p)));
        }
        let name = s.strip_prefix("systemd:")?;
        let simple = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        simple.then(|| Self::Systemd(name.to_owned()))
    }

    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            Self::File(p) if p.is_relative() => Self::File(base.join(p)),
            other => other,
        }
    }

    fn path(&self) -> Result<PathBuf, KeystoreError> {
        match self {
            Self::File(p) => Ok(p.clone()),
            Self::Systemd(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or(KeystoreError::NoCredentialsDirectory)?;
                Ok(PathBuf::from(dir).join(name))
            }
        }
    }
}

impl std::fmt::Display for MasterKeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Systemd(n) => write!(f, "systemd:{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("master key {reference}: {reason}")]
    MasterKey { reference: String, reason: String },
    #[error(
        "systemd:NAME master keys need $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=)"
    )]
    NoCredentialsDirectory,
    #[error("keystore {path}: {reason}")]
    File { path: String, reason: String },
    #[error("no secret named {0:?} in the keystore (add it with `imsgate secrets set {0}`)")]
    NoSuchSecret(String),
    #[error(
        "secret {name:?} was encrypted with master key {kid}, which is not among master_keys; add that key back"
    )]
    UnknownMasterKey { name: String, kid: String },
    #[error(
        "secret {name:?} cannot be decrypted with master key {kid}: the key file does not match the one it was encrypted with, or the keystore was altered; nothing was changed"
    )]
    Decrypt { name: String, kid: String },
    #[error("secret names are 1 to 128 characters of A-Z a-z 0-9 - _ .")]
    BadName,
}

/// A master key, loaded.
pub struct MasterKey {
    pub kid: String,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.kid)
    }
}

impl MasterKey {
    /// From the key file's text: 32 random bytes, base64.
    pub fn from_text(text: &SecretString, reference: &str) -> Result<Self, KeystoreError> {
        let bad = |reason: &str| KeystoreError::MasterKey {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let mut bytes = B64
            .decode(text.expose().trim())
            .map_err(|_| bad("not base64 (create one with `imsgate secrets init`)"))?;
        if bytes.len() != 32 {
            zeroize::Zeroize::zeroize(&mut bytes);
            return Err(bad("must be 32 bytes, base64-encoded"));
        }
        let kid = hex8(digest(&SHA256, &bytes).as_ref());
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("unusable key"))?;
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(Self { kid, key })
    }

    pub fn load(r: &MasterKeyRef) -> Result<Self, KeystoreError> {
        let path = r.path()?;
        let text = SecretRef::File(path)
            .load()
            .map_err(|e| KeystoreError::MasterKey {
                reference: r.to_string(),
                reason: e.to_string(),
            })?;
        Self::from_text(&text, &r.to_string())
    }

    /// Encrypts `plain` with a fresh random nonce; returns the nonce and ciphertext with its tag.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Option<([u8; NONCE_LEN], Vec<u8>)> {
        let mut buf = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad), &mut buf)
            .ok()?;
        Some((*nonce.as_ref(), buf))
    }

    /// Decrypts what [`MasterKey::seal`] produced; `None` if the key, the data or the associated
    /// data differ.
    pub fn open(&self, aad: &[u8], nonce: [u8; NONCE_LEN], mut sealed: Vec<u8>) -> Option<Vec<u8>> {
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .ok()?
            .to_vec();
        zeroize::Zeroize::zeroize(&mut sealed);
        Some(plain)
    }

    /// A new random master key's file text.
    pub fn generate_text() -> SecretString {
        let mut bytes = [0u8; 32];
        // aws-lc aborts if the system RNG fails; there is nothing safe to do instead.
        aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator");
        let text = SecretString::new(format!("{}\n", B64.encode(bytes)));
        zeroize::Zeroize::zeroize(&mut bytes);
        text
    }
}

fn hex8(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    kid: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    records: BTreeMap<String, Record>,
}

/// An open keystore.
#[derive(Debug)]
pub struct Keystore {
    path: PathBuf,
    masters: Vec<MasterKey>,
    file: FileFormat,
}

fn aad(name: &str, kid: &str) -> Vec<u8> {
    format!("imsgate-keystore-v1\0{name}\0{kid}").into_bytes()
}

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Keystore {
    /// Opens the keystore with its master keys (newest first).
    pub fn open(location: &KeystoreLocation) -> Result<Self, KeystoreError> {
        let masters = location
            .master_keys
            .iter()
            .map(MasterKey::load)
            .collect::<Result<Vec<_>, _>>()?;
        let file_err = |reason: String| KeystoreError::File {
            path: location.path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&location.path).map_err(|e| {
            file_err(format!(
                "cannot read it ({}); create it with `imsgate secrets init`",
                e.kind()
            ))
        })?;
        let file: FileFormat =
            serde_json::from_str(&text).map_err(|_| file_err("not a keystore file".into()))?;
        if file.version != 1 {
            return Err(file_err(format!("unsupported version {}", file.version)));
        }
        Ok(Self {
            path: location.path.clone(),
            masters,
            file,
        })
    }

    /// Creates an empty keystore file; refuses to replace an existing one.
    pub fn create(path: &Path) -> Result<(), KeystoreError> {
        let body = serde_json::to_vec_pretty(&FileFormat {
            version: 1,
            records: BTreeMap::new(),
        })
        .unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| KeystoreError::File {
                path: path.display().to_string(),
                reason: format!("cannot create it ({})", e.kind()),
            })?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| KeystoreError::File {
                path: path.display().to_string(),
                reason: format!("cannot write it ({})", e.kind()),
            })
    }

    pub fn names(&self) -> Vec<(String, String)> {
        self.file
            .records
            .iter()
            .map(|(n, r)| (n.clone(), r.kid.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<SecretString, KeystoreError> {
        let r = self
            .file
            .records
            .get(name)
            .ok_or_else(|| KeystoreError::NoSuchSecret(name.to_owned()))?;
        let master = self
            .masters
            .iter()
            .find(|m| m.kid == r.kid)
            .ok_or_else(|| KeystoreError::UnknownMasterKey {
                name: name.to_owned(),
                kid: r.kid.clone(),
            })?;
        let decrypt_err = || KeystoreError::Decrypt {
            name: name.to_owned(),
            kid: r.kid.clone(),
        };
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&r.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(decrypt_err)?;
        let buf = B64.decode(&r.ciphertext).map_err(|_| decrypt_err())?;
        let mut plain = master
            .open(&aad(name, &r.kid), nonce, buf)
            .ok_or_else(decrypt_err)?;
        let value = String::from_utf8(plain.clone()).map_err(|_| decrypt_err());
        zeroize::Zeroize::zeroize(&mut plain);
        value.map(SecretString::new)
    }

    fn encrypt(&self, name: &str, value: &SecretString) -> Result<Record, KeystoreError> {
        let master = self
            .masters
            .first()
            .ok_or_else(|| KeystoreError::MasterKey {
                reference: "master_keys".into(),
                reason: "no master key configured".into(),
            })?;
        let (nonce, buf) = master
            .seal(&aad(name, &master.kid), value.expose().as_bytes())
            .ok_or_else(|| KeystoreError::MasterKey {
                reference: master.kid.clone(),
                reason: "encryption failed".into(),
            })?;
        let record = Record {
            kid: master.kid.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(&buf),
        };
        Ok(record)
    }

    /// Stores `value` under `name`, encrypted with the newest master key.
    pub fn set(&mut self, name: &str, value: &SecretString) -> Result<(), KeystoreError> {
        if !valid_name(name) {
            return Err(KeystoreError::BadName);
        }
        let record = self.encrypt(name, value)?;
        let mut next = self.file.records.clone();
        next.insert(name.to_owned(), record);
        self.save(next)
    }

    pub fn remove(&mut self, name: &str) -> Result<(), KeystoreError> {
        let mut next = self.file.records.clone();
        if next.remove(name).is_none() {
            return Err(KeystoreError::NoSuchSecret(name.to_owned()));
        }
        self.save(next)
    }

    /// Re-encrypts every record with the newest master key, so older keys can be retired. Every
    /// record is decrypted first; if any cannot be, nothing is written.
    pub fn reencrypt_all(&mut self) -> Result<usize, KeystoreError> {
        let mut next = BTreeMap::new();
        for name in self.file.records.keys() {
            let value = self.get(name)?;
            next.insert(name.clone(), self.encrypt(name, &value)?);
        }
        let n = next.len();
        self.save(next)?;
        Ok(n)
    }

    fn save(&mut self, records: BTreeMap<String, Record>) -> Result<(), KeystoreError> {
        let file = FileFormat {
            version: 1,
            records,
        };
        let body = serde_json::to_vec_pretty(&file).unwrap_or_default();
        let err = |what: &str, e: std::io::Error| KeystoreError::File {
            path: self.path.display().to_string(),
            reason: format!("{what} ({})", e.kind()),
        };
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err("cannot write the new keystore", e))?;
            f.write_all(&body)
                .and_then(|_| f.sync_all())
                .map_err(|e| err("cannot write the new keystore", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| err("cannot replace the keystore", e))?;
        self.file = file;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
