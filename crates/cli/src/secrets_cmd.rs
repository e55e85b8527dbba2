//! `imsgate secrets init|set|list|rm|get|rotate-master`: the encrypted keystore named by the
//! config's `[keystore]` section. Values are read from standard input and never printed unless
//! `--reveal` asks for it.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use imsgate_broker::config::Config;
use imsgate_broker::keystore::{Keystore, KeystoreLocation, MasterKey, MasterKeyRef};
use imsgate_ims::SecretString;

use crate::run::CliResult;

fn location(config: &Path) -> Result<Arc<KeystoreLocation>, Vec<String>> {
    Config::load(config)
        .map_err(|e| e.problems)?
        .keystore
        .ok_or_else(|| {
            vec![format!(
                "{}: no [keystore] section; add path and master_keys (see docs/configuration.md)",
                config.display()
            )]
        })
}

fn err(e: impl std::fmt::Display) -> Vec<String> {
    vec![e.to_string()]
}

pub(crate) fn write_new_private(path: &Path, text: &str) -> CliResult {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            vec![format!(
                "cannot create {} ({}); an existing key is never overwritten",
                path.display(),
                e.kind()
            )]
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| vec![format!("cannot write {} ({})", path.display(), e.kind())])
}

/// Creates the newest master key file if it does not exist, and an empty keystore.
pub fn init(config: &Path) -> CliResult {
    let loc = location(config)?;
    let first = &loc.master_keys[0];
    if let MasterKeyRef::File(path) = first
        && !path.exists()
    {
        write_new_private(path, MasterKey::generate_text().expose())?;
        println!(
            "master key:  {} (mode 600; back it up: without it the keystore cannot be read)",
            path.display()
        );
    }
    // Fail now, not later, if the master key cannot be used.
    MasterKey::load(first).map_err(err)?;
    Keystore::create(&loc.path).map_err(err)?;
    println!("keystore:    {} (empty)", loc.path.display());
    Ok(())
}

/// Reads the value from standard input (a trailing newline is dropped).
pub fn set(config: &Path, name: &str) -> CliResult {
    let loc = location(config)?;
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).map_err(|e| {
        vec![format!(
            "cannot read the value from standard input ({})",
            e.kind()
        )]
    })?;
    let trimmed = value.strip_suffix('\n').unwrap_or(&value);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(vec!["the value on standard input is empty; pipe it in, e.g. `imsgate secrets set NAME < secret.txt`".into()]);
    }
    let secret = SecretString::new(trimmed);
    zeroize::Zeroize::zeroize(&mut value);
    let mut ks = Keystore::open(&loc).map_err(err)?;
    ks.set(name, &secret).map_err(err)?;
    println!("stored {name:?}; reference it as \"keystore:{name}\"");
    Ok(())
}

pub fn list(config: &Path) -> CliResult {
    let loc = location(config)?;
    let ks = Keystore::open(&loc).map_err(err)?;
    for (name, kid) in ks.names() {
        println!("{name}  (master key {kid})");
    }
    Ok(())
}

pub fn remove(config: &Path, name: &str) -> CliResult {
    let loc = location(config)?;
    let mut ks = Keystore::open(&loc).map_err(err)?;
    ks.remove(name).map_err(err)?;
    println!("removed {name:?}");
    Ok(())
}

pub fn get(config: &Path, name: &str, reveal: bool) -> CliResult {
    if !reveal {
        return Err(vec![format!(
            "refusing to print the value of {name:?}; pass --reveal if you mean it"
        )]);
    }
    let loc = location(config)?;
    let ks = Keystore::open(&loc).map_err(err)?;
    let value = ks.get(name).map_err(err)?;
    println!("{}", value.expose());
    Ok(())
}

/// Writes a new master key at `new_key`, re-encrypts every record with it, and says how to
/// update the config.
pub fn rotate_master(config: &Path, new_key: &Path) -> CliResult {
    let loc = location(config)?;
    write_new_private(new_key, MasterKey::generate_text().expose())?;
    let mut masters = vec![MasterKeyRef::File(new_key.to_path_buf())];
    masters.extend(loc.master_keys.iter().cloned());
    let rotated = KeystoreLocation {
        path: loc.path.clone(),
        master_keys: masters,
    };
    let mut ks = Keystore::open(&rotated).map_err(err)?;
    let n = ks.reencrypt_all().map_err(|e| {
        vec![format!(
            "{e}; the keystore is unchanged (the new key {} was written and can be deleted)",
            new_key.display()
        )]
    })?;
    println!(
        "re-encrypted {n} secrets with the new master key {}",
        new_key.display()
    );
    println!(
        "now set master_keys = [\"file:{}\"] in [keystore]; the old keys are no longer needed",
        new_key.display()
    );
    Ok(())
}
