//! IMS endpoint URLs. Every URL is configurable so tests and the emulator can stand in for IMS.

use url::Url;

/// Production IMS host.
pub const PRODUCTION_BASE: &str = "https://ims-na1.adobelogin.com";
/// Stage IMS host.
pub const STAGE_BASE: &str = "https://ims-na1-stg1.adobelogin.com";

/// The IMS URLs imsgate talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsEndpoints {
    pub token: Url,
    pub jwt_exchange: Url,
    pub jwks: Url,
    pub validate: Url,
    pub authorize: Url,
    pub revoke: Url,
    pub discovery: Url,
}

impl ImsEndpoints {
    /// The standard paths under one base URL, as IMS's discovery document lists them.
    pub fn from_base(base: &Url) -> Result<Self, url::ParseError> {
        let join = |path: &str| base.join(path);
        Ok(Self {
            token: join("/ims/token/v3")?,
            jwt_exchange: join("/ims/exchange/jwt")?,
            jwks: join("/ims/keys")?,
            validate: join("/ims/validate_token/v1")?,
            authorize: join("/ims/authorize/v2")?,
            revoke: join("/ims/revoke")?,
            discovery: join("/ims/.well-known/openid-configuration")?,
        })
    }

    pub fn production() -> Self {
        // The constant is a valid URL; a failure here is a programming error caught by tests.
        Self::from_base(&Url::parse(PRODUCTION_BASE).expect("valid constant"))
            .expect("valid constant")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_paths_under_a_base() {
        let e = ImsEndpoints::from_base(&Url::parse("http://127.0.0.1:9/prefix").unwrap()).unwrap();
        assert_eq!(e.token.as_str(), "http://127.0.0.1:9/ims/token/v3");
        assert_eq!(e.jwks.as_str(), "http://127.0.0.1:9/ims/keys");
        let p = ImsEndpoints::production();
        assert_eq!(
            p.token.as_str(),
            "https://ims-na1.adobelogin.com/ims/token/v3"
        );
        assert_eq!(
            p.discovery.as_str(),
            "https://ims-na1.adobelogin.com/ims/.well-known/openid-configuration"
        );
    }
}
