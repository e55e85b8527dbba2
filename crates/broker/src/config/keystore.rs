//! `[keystore]`: where the encrypted keystore is and which master keys open it, and attaching it
//! to every `keystore:NAME` secret reference in the config.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::Problems;
use crate::keystore::{KeystoreLocation, MasterKeyRef};
use crate::secrets::SecretRef;

#[derive(Deserialize)]
pub(super) struct RawKeystore {
    path: Option<String>,
    master_keys: Option<Vec<String>>,
}

pub(super) fn validate(
    p: &mut Problems,
    raw: Option<RawKeystore>,
    base: &Path,
) -> Option<Arc<KeystoreLocation>> {
    let raw = raw?;
    let at = "keystore";
    let path = raw.path.map(|s| {
        let p = PathBuf::from(s);
        if p.is_absolute() { p } else { base.join(p) }
    });
    if path.is_none() {
        p.push(
            at,
            "path is required (the keystore file, created by `imsgate secrets init`)",
        );
    }
    let master_keys = master_key_refs(
        p,
        &format!("{at}.master_keys"),
        raw.master_keys.unwrap_or_default(),
        base,
    );
    Some(Arc::new(KeystoreLocation {
        path: path?,
        master_keys,
    }))
}

/// A list of master key references (newest first); at least one is required.
pub(super) fn master_key_refs(
    p: &mut Problems,
    at: &str,
    list: Vec<String>,
    base: &Path,
) -> Vec<MasterKeyRef> {
    let mut keys = Vec::new();
    for (i, m) in list.iter().enumerate() {
        match MasterKeyRef::parse(m) {
            Some(r) => keys.push(r.relative_to(base)),
            None => p.push(
                &format!("{at}[{i}]"),
                "must be file:PATH or systemd:NAME (keys are never inline or in environment variables)",
            ),
        }
    }
    if keys.is_empty() {
        p.push(
            at,
            "must list at least one key, newest first, e.g. [\"file:/etc/imsgate/master.key\"] (`imsgate keys encryption-key --out FILE` creates one)",
        );
    }
    keys
}

/// Points every `keystore:NAME` reference at the keystore, or reports that there is none.
pub(super) fn attach<'a>(
    p: &mut Problems,
    location: Option<&Arc<KeystoreLocation>>,
    refs: impl Iterator<Item = (String, &'a mut SecretRef)>,
) {
    for (at, r) in refs {
        if let SecretRef::Keystore(name, slot) = r {
            match location {
                Some(loc) => *slot = Some(loc.clone()),
                None => p.push(
                    &at,
                    format!("keystore:{name} needs a [keystore] section with path and master_keys"),
                ),
            }
        }
    }
}
