//! A throwaway test CA (rcgen, aws-lc-rs) and the server certificates it issues, for tests that
//! speak real TLS to the broker. Also usable from crates/cli tests through `#[path]`.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// A certificate authority that exists only for one test.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (PEM), for clients to trust.
    pub pem: String,
}

/// A server certificate and its key.
pub struct Leaf {
    /// The server certificate alone (DER), to compare with what a handshake presents.
    pub der: Vec<u8>,
    /// The server certificate then the CA: what `tls_cert` points at.
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 (plus `extra_sans`), valid from a day ago for
    /// `valid_for`.
    pub fn leaf(&self, common_name: &str, extra_sans: &[&str]) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_valid(
            common_name,
            extra_sans,
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
    }

    pub fn leaf_valid(
        &self,
        common_name: &str,
        extra_sans: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        sans.extend(extra_sans.iter().map(|s| s.to_string()));
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.not_before = not_before;
        params.not_after = not_after;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// Writes `tls.crt` and `tls.key` (mode 600) into `dir`, replacing them the way a renewal
    /// tool does: written aside, then renamed over the old files.
    pub fn install(&self, dir: &Path) {
        install_files(dir, &self.chain_pem, &self.key_pem);
    }
}

/// Puts `cert` and `key` in place as `tls.crt` and `tls.key` (mode 600), each by rename.
pub fn install_files(dir: &Path, cert: &str, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    for (name, content, mode) in [("tls.key", key, 0o600), ("tls.crt", cert, 0o644)] {
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A rustls client config trusting only `ca_pem`, limited to `versions`, offering `alpn`.
pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

/// A TLS connection to `addr` as `localhost`.
pub async fn connect(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The certificate a fresh handshake with `addr` presents (DER).
pub async fn presented(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    let s = connect(
        addr,
        client_config(ca_pem, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
