//! The X.509 certificates uploaded for a Service Account credential: their validity windows, and
//! which key signs now.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What imsgate needs from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// The subject public key (for RSA, the PKCS#1 `RSAPublicKey`), to match the private key.
    pub public_key: Vec<u8>,
}

impl CertificateInfo {
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("the certificate cannot be parsed as X.509")]
    Malformed,
}

/// Parses the first certificate of a PEM file.
pub fn parse_pem(pem: &[u8]) -> Result<CertificateInfo, CertificateError> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(CertificateError::NoCertificate)?
        .map_err(|_| CertificateError::NoCertificate)?;
    parse_der(&der)
}

pub fn parse_der(der: &[u8]) -> Result<CertificateInfo, CertificateError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertificateError::Malformed)?;
    let validity = cert.validity();
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        not_before: secs(validity.not_before.timestamp()),
        not_after: secs(validity.not_after.timestamp()),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// Which certificate's key signs at `now`: among those valid now, the one that expires last, so
/// a newly uploaded certificate takes over as soon as it is valid and the old one can lapse.
pub fn select_signing(certs: &[CertificateInfo], now: u64) -> Option<usize> {
    certs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_valid_at(now))
        .max_by_key(|(i, c)| (c.not_after, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: u64, not_after: u64) -> CertificateInfo {
        CertificateInfo {
            subject: String::new(),
            not_before,
            not_after,
            public_key: Vec::new(),
        }
    }

    #[test]
    fn selection_table() {
        let now = 1_000;
        type Row<'a> = (&'a [(u64, u64)], Option<usize>);
        let rows: &[Row] = &[
            (&[(0, 2_000)], Some(0)),
            // Overlap: the one that expires last signs.
            (&[(0, 2_000), (500, 9_000)], Some(1)),
            (&[(500, 9_000), (0, 2_000)], Some(0)),
            // A newer certificate that is not valid yet does not sign.
            (&[(0, 2_000), (1_500, 9_000)], Some(0)),
            // Expired ones never sign; at the boundary a certificate is already expired.
            (&[(0, 999), (0, 1_000)], None),
            (&[(0, 1_001)], Some(0)),
            (&[], None),
            // A tie keeps the first listed.
            (&[(0, 5_000), (0, 5_000)], Some(0)),
        ];
        for (certs, want) in rows {
            let certs: Vec<_> = certs.iter().map(|(a, b)| cert(*a, *b)).collect();
            assert_eq!(select_signing(&certs, now), *want, "{certs:?}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            parse_pem(b"nothing here"),
            Err(CertificateError::NoCertificate)
        );
        let bogus = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_pem(bogus), Err(CertificateError::Malformed));
    }
}
