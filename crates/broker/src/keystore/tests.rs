//! Round trips, rotation, wrong keys and tampering, on real files.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn master_file(dir: &Path, name: &str) -> MasterKeyRef {
    let p = dir.join(name);
    std::fs::write(&p, MasterKey::generate_text().expose()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    MasterKeyRef::File(p)
}

fn location(dir: &Path, masters: Vec<MasterKeyRef>) -> KeystoreLocation {
    KeystoreLocation {
        path: dir.join("secrets.keystore"),
        master_keys: masters,
    }
}

#[test]
fn round_trip_and_nothing_in_clear_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let loc = location(dir.path(), vec![master_file(dir.path(), "m1.key")]);
    Keystore::create(&loc.path).unwrap();
    let mode = std::fs::metadata(&loc.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut ks = Keystore::open(&loc).unwrap();
    ks.set("client-secret", &SecretString::new("p@ss-value-1"))
        .unwrap();
    ks.set("other", &SecretString::new("second")).unwrap();
    let ks = Keystore::open(&loc).unwrap();
    assert_eq!(ks.get("client-secret").unwrap().expose(), "p@ss-value-1");
    assert_eq!(ks.names().len(), 2);
    let raw = std::fs::read_to_string(&loc.path).unwrap();
    assert!(!raw.contains("p@ss-value-1") && !raw.contains("second"));
    assert!(matches!(
        ks.get("nope"),
        Err(KeystoreError::NoSuchSecret(_))
    ));
    assert!(
        Keystore::create(&loc.path).is_err(),
        "never replaces an existing keystore"
    );
}

#[test]
fn master_key_rotation_keeps_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let old = master_file(dir.path(), "old.key");
    let loc = location(dir.path(), vec![old.clone()]);
    Keystore::create(&loc.path).unwrap();
    let mut ks = Keystore::open(&loc).unwrap();
    ks.set("a", &SecretString::new("alpha")).unwrap();
    ks.set("b", &SecretString::new("beta")).unwrap();
    let old_kid = ks.names()[0].1.clone();

    // New key first: new records use it, old ones still open with the old key.
    let new = master_file(dir.path(), "new.key");
    let both = location(dir.path(), vec![new.clone(), old]);
    let mut ks = Keystore::open(&both).unwrap();
    ks.set("c", &SecretString::new("gamma")).unwrap();
    let kids: Vec<String> = ks.names().into_iter().map(|(_, k)| k).collect();
    assert_eq!(kids.iter().filter(|k| **k == old_kid).count(), 2);
    assert_eq!(ks.get("a").unwrap().expose(), "alpha");
    assert_eq!(ks.reencrypt_all().unwrap(), 3);

    // After re-encryption the old key can go.
    let only_new = location(dir.path(), vec![new]);
    let ks = Keystore::open(&only_new).unwrap();
    for (name, value) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
        assert_eq!(ks.get(name).unwrap().expose(), value);
    }
    assert!(ks.names().iter().all(|(_, k)| *k != old_kid));
}

#[test]
fn a_wrong_master_key_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let right = master_file(dir.path(), "right.key");
    let loc = location(dir.path(), vec![right.clone()]);
    Keystore::create(&loc.path).unwrap();
    let mut ks = Keystore::open(&loc).unwrap();
    ks.set("s", &SecretString::new("value")).unwrap();
    let before = std::fs::read(&loc.path).unwrap();

    let wrong = location(dir.path(), vec![master_file(dir.path(), "wrong.key")]);
    let mut ks = Keystore::open(&wrong).unwrap();
    let err = ks.get("s").unwrap_err().to_string();
    assert!(err.contains("not among master_keys"), "{err}");
    assert!(ks.reencrypt_all().is_err());
    assert_eq!(
        std::fs::read(&loc.path).unwrap(),
        before,
        "nothing was written"
    );
    assert_eq!(
        Keystore::open(&loc).unwrap().get("s").unwrap().expose(),
        "value"
    );

    // A key file whose content was replaced but keeps the same place: decryption fails cleanly.
    let MasterKeyRef::File(path) = &right else {
        unreachable!()
    };
    let impostor = MasterKey::from_text(&MasterKey::generate_text(), "x").unwrap();
    assert_ne!(impostor.kid, Keystore::open(&loc).unwrap().names()[0].1);
    std::fs::write(path, "bm90IDMyIGJ5dGVz").unwrap();
    let err = Keystore::open(&loc).unwrap_err().to_string();
    assert!(err.contains("must be 32 bytes"), "{err}");
}

#[test]
fn tampering_and_swapping_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let loc = location(dir.path(), vec![master_file(dir.path(), "m.key")]);
    Keystore::create(&loc.path).unwrap();
    let mut ks = Keystore::open(&loc).unwrap();
    ks.set("a", &SecretString::new("alpha")).unwrap();
    ks.set("b", &SecretString::new("beta")).unwrap();
    // Swap the two records' ciphertexts: the name is bound into the associated data.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&loc.path).unwrap()).unwrap();
    let a = file["records"]["a"].clone();
    file["records"]["a"] = file["records"]["b"].clone();
    file["records"]["b"] = a;
    std::fs::write(&loc.path, file.to_string()).unwrap();
    let ks = Keystore::open(&loc).unwrap();
    assert!(matches!(ks.get("a"), Err(KeystoreError::Decrypt { .. })));
}

#[test]
fn master_key_references() {
    assert_eq!(
        MasterKeyRef::parse("file:/k"),
        Some(MasterKeyRef::File("/k".into()))
    );
    assert_eq!(
        MasterKeyRef::parse("systemd:imsgate-master"),
        Some(MasterKeyRef::Systemd("imsgate-master".into()))
    );
    for bad in ["env:KEY", "systemd:../x", "file:", "hunter2"] {
        assert_eq!(MasterKeyRef::parse(bad), None, "{bad}");
    }
}
