//! `imsgate demo --tls`: a throwaway CA and a certificate for the demo's loopback address, made
//! fresh in the demo's data directory, so the whole demo runs over https.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::PublicKeyData;

/// What the demo prints and its partner app needs to trust the broker.
#[derive(Debug)]
pub struct DemoTls {
    /// The CA certificate (PEM), for `curl --cacert` and the partner app's client.
    pub ca_path: PathBuf,
    /// Base64 SHA-256 of the server certificate's public key: Chromium's
    /// `--ignore-certificate-errors-spki-list`, which trusts exactly this key.
    pub spki_sha256: String,
    ca_pem: String,
}

impl DemoTls {
    /// Writes `ca.pem`, `tls.crt` (server certificate, then the CA) and `tls.key` (mode 600).
    pub fn write(dir: &Path, addr: SocketAddr) -> Result<Self, Vec<String>> {
        let fail = |e: rcgen::Error| vec![format!("cannot make the demo's TLS certificate: {e}")];
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "imsgate demo CA (throwaway)");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let now = time::OffsetDateTime::now_utc();
        ca_params.not_before = now - time::Duration::hours(1);
        ca_params.not_after = now + time::Duration::days(7);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let ip = addr.ip().to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
        let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "imsgate demo");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        // Short-lived like the demo itself (rcgen's default runs to the year 4096).
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);

        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        let spki =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.subject_public_key_info());

        let ca_pem = ca_cert.pem();
        let ca_path = dir.join("ca.pem");
        write(&ca_path, &ca_pem, 0o644)?;
        write(
            &dir.join("tls.crt"),
            &format!("{}{}", cert.pem(), ca_pem),
            0o644,
        )?;
        write(&dir.join("tls.key"), &key.serialize_pem(), 0o600)?;
        Ok(Self {
            ca_path,
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki.as_ref()),
            ca_pem,
        })
    }

    /// An HTTP client trusting the demo CA (the partner app calls the broker's internal API).
    pub fn client(&self) -> Result<reqwest::Client, Vec<String>> {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())
            .map_err(|e| vec![format!("cannot read the demo CA: {e}")])?;
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .map_err(|e| vec![format!("cannot build the demo's HTTP client: {e}")])
    }
}

fn write(path: &Path, content: &str, mode: u32) -> Result<(), Vec<String>> {
    let err = |e: std::io::Error| {
        vec![format!(
            "cannot write {} ({}): check the temp directory",
            path.display(),
            e.kind()
        )]
    };
    std::fs::write(path, content).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}
