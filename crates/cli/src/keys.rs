//! `imsgate keys generate` and `imsgate keys list`: the key pairs and certificates a Service
//! Account (JWT) credential signs with.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use imsgate_broker::clock::{Clock, SystemClock, unix_ms};
use imsgate_broker::config::Config;
use imsgate_broker::service_account::SigningKeys;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256, RsaKeySize};

use crate::run::CliResult;

#[derive(Debug, Clone)]
pub struct GenerateOptions<'a> {
    pub out_dir: &'a Path,
    pub name: &'a str,
    pub common_name: &'a str,
    pub organization: Option<&'a str>,
    pub country: Option<&'a str>,
    pub days: u32,
    pub bits: u32,
}

/// Writes `NAME.key.pem` (mode 0600, never overwritten) and `NAME.cert.pem`.
pub fn generate(o: &GenerateOptions<'_>) -> CliResult {
    let size = match o.bits {
        2048 => RsaKeySize::_2048,
        3072 => RsaKeySize::_3072,
        4096 => RsaKeySize::_4096,
        other => {
            return Err(vec![format!(
                "--bits {other} is not supported; use 2048, 3072 or 4096"
            )]);
        }
    };
    if o.days == 0 || o.days > 3650 {
        return Err(vec!["--days must be between 1 and 3650".into()]);
    }
    if o.name.is_empty()
        || !o
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(vec![format!(
            "--name {:?} must be a simple file name (letters, digits, - _ .)",
            o.name
        )]);
    }
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, size)
        .map_err(|e| vec![format!("cannot generate an RSA key: {e}")])?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, o.common_name);
    if let Some(org) = o.organization {
        dn.push(DnType::OrganizationName, org);
    }
    if let Some(c) = o.country {
        dn.push(DnType::CountryName, c);
    }
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(o.days));
    let cert = params
        .self_signed(&key)
        .map_err(|e| vec![format!("cannot create the certificate: {e}")])?;

    let key_path = o.out_dir.join(format!("{}.key.pem", o.name));
    let cert_path = o.out_dir.join(format!("{}.cert.pem", o.name));
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    println!(
        "private key:  {} (mode 600; keep it secret)",
        key_path.display()
    );
    println!(
        "certificate:  {} (upload it to the Developer Console)",
        cert_path.display()
    );
    println!(
        "config:       keys = [{{ private_key = \"file:{}\", certificate = \"{}\" }}]",
        key_path.display(),
        cert_path.display()
    );
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> CliResult {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            vec![if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} already exists; choose another --name or --out-dir (existing keys are never overwritten)",
                    path.display()
                )
            } else {
                format!("cannot write {} ({})", path.display(), e.kind())
            }]
        })?;
    f.write_all(bytes)
        .map_err(|e| vec![format!("cannot write {} ({})", path.display(), e.kind())])
}

/// Lists every service account's certificates, their validity, and which key signs now.
pub fn list(config_path: &Path) -> CliResult {
    let config = Config::load(config_path).map_err(|e| e.problems)?;
    let now = unix_ms(SystemClock.now()) / 1000;
    let mut any = false;
    let mut out = String::new();
    for (name, c) in &config.credentials {
        let Some(sa) = &c.service_account else {
            continue;
        };
        any = true;
        let keys = SigningKeys::load(&format!("credentials.{name}"), sa)?;
        let signing = keys.signing_index(now);
        out.push_str(&format!("credential {name:?} (service_account)\n"));
        for (i, k) in keys.keys.iter().enumerate() {
            let c = &k.certificate;
            let state = if signing == Some(i) {
                "signs now"
            } else if c.not_after <= now {
                "expired"
            } else if c.not_before > now {
                "not valid yet"
            } else {
                "valid"
            };
            out.push_str(&format!(
                "  [{i}] {}  {} .. {}  {state}  ({})\n",
                k.certificate_path.display(),
                date(c.not_before),
                date(c.not_after),
                c.subject
            ));
        }
        if let Some(w) = keys.expiry_warning(now) {
            out.push_str(&format!("  warning: {w}\n"));
        }
    }
    if !any {
        return Err(vec![format!(
            "{}: no service_account credential is configured",
            config_path.display()
        )]);
    }
    print!("{out}");
    Ok(())
}

fn date(unix: u64) -> String {
    imsgate_broker::http::rfc3339(unix * 1000)
}

/// `keys encryption-key --out FILE`: 32 random bytes, base64, mode 600, never over an existing file.
pub fn encryption_key(out: &Path) -> CliResult {
    let text = imsgate_broker::keystore::MasterKey::generate_text();
    crate::secrets_cmd::write_new_private(out, text.expose())?;
    let kid = imsgate_broker::keystore::MasterKey::from_text(&text, &out.display().to_string())
        .map(|k| k.kid)
        .unwrap_or_default();
    println!("encryption key: {} (mode 600, key id {kid})", out.display());
    Ok(())
}
