//! OAuth Server-to-Server (`client_credentials`) requests to `/ims/token/v3`.

use url::Url;

use crate::http::HttpRequest;
use crate::scopes::ScopeSet;
use crate::secret::SecretString;

/// A `client_credentials` request: OAuth Server-to-Server, or Enterprise Web App with an org id.
#[derive(Debug, Clone)]
pub struct ClientCredentialsRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub scopes: &'a ScopeSet,
    /// The customer org for Enterprise Web App tokens. Must come from a verified id_token.
    pub org_id: Option<&'a str>,
}

impl ClientCredentialsRequest<'_> {
    /// The form POST to the token endpoint. Credentials go in the body (`client_secret_post`),
    /// the form IMS documents for Server-to-Server.
    pub fn to_http(&self, token_url: &Url) -> HttpRequest {
        let scope = self.scopes.joined();
        let mut fields: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id),
            ("client_secret", self.client_secret.expose()),
            ("scope", &scope),
        ];
        if let Some(org) = self.org_id {
            fields.push(("org_id", org));
        }
        // Encoding plain string pairs cannot fail.
        let body = serde_urlencoded::to_string(&fields).unwrap_or_default();
        HttpRequest {
            method: "POST",
            url: token_url.clone(),
            headers: vec![
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                ("accept", "application/json".to_owned()),
            ],
            body: body.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_form() {
        let secret = SecretString::new("s3cr3t&=");
        let scopes = ScopeSet::new(["openid", "AdobeID", "firefly_api"]);
        let url = Url::parse("https://ims.example/ims/token/v3").unwrap();
        let req = ClientCredentialsRequest {
            client_id: "cid",
            client_secret: &secret,
            scopes: &scopes,
            org_id: None,
        }
        .to_http(&url);
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&client_id=cid&client_secret=s3cr3t%26%3D&scope=AdobeID%2Cfirefly_api%2Copenid"
        );
        assert!(!format!("{req:?}").contains("s3cr3t"));
        let with_org = ClientCredentialsRequest {
            org_id: Some("ABC@AdobeOrg"),
            ..ClientCredentialsRequest {
                client_id: "cid",
                client_secret: &secret,
                scopes: &scopes,
                org_id: None,
            }
        }
        .to_http(&url);
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&with_org.body).unwrap();
        assert!(pairs.contains(&("org_id".into(), "ABC@AdobeOrg".into())));
        assert_eq!(with_org.method, "POST");
    }
}
