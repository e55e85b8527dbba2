//! Emulator configuration: which clients exist, their secrets, scopes and token lifetimes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// The `iss` of tokens and the issuer in discovery. Defaults to the emulator's own base URL.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub clients: Vec<EmulatorClient>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorClient {
    pub client_id: String,
    /// Accepted secrets (IMS allows two at once during rotation).
    pub client_secrets: Vec<String>,
    /// Scopes this client may request.
    pub scopes: Vec<String>,
    /// Lifetime of issued access tokens, in seconds (IMS: 86399 usually, 300 for client entitlement).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_secs: u64,
    /// The technical account behind the client.
    #[serde(default = "default_technical_account")]
    pub technical_account: String,
    /// The client's own org.
    #[serde(default = "default_org")]
    pub org_id: String,
    /// Customer orgs this client may request org-scoped tokens for (`org_id` in the token request).
    #[serde(default)]
    pub allowed_org_ids: Vec<String>,
}

impl std::fmt::Debug for EmulatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorClient")
            .field("client_id", &self.client_id)
            .field(
                "client_secrets",
                &format_args!("<{} redacted>", self.client_secrets.len()),
            )
            .field("scopes", &self.scopes)
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("allowed_org_ids", &self.allowed_org_ids)
            .finish()
    }
}

fn default_lifetime() -> u64 {
    86_399
}

fn default_technical_account() -> String {
    "EMULATED0000000000000000@techacct.adobe.com".to_owned()
}

fn default_org() -> String {
    "EMULATEDORG000000000000@AdobeOrg".to_owned()
}

impl EmulatorClient {
    pub fn new(client_id: &str, secret: &str, scopes: &[&str], lifetime_secs: u64) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secrets: vec![secret.to_owned()],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            token_lifetime_secs: lifetime_secs,
            technical_account: default_technical_account(),
            org_id: default_org(),
            allowed_org_ids: Vec::new(),
        }
    }
}
