//! Emulator configuration: which clients exist, their secrets, scopes, token lifetimes, redirect
//! URIs, and the customer orgs an emulated admin can consent for.

use serde::{Deserialize, Serialize};

/// `Default` lets callers write `EmulatorConfig { clients, ..Default::default() }`, which keeps
/// compiling when fields are added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// The `iss` of tokens and the issuer in discovery. Defaults to the emulator's own base URL.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub clients: Vec<EmulatorClient>,
    /// Users offered on the sign-in page; empty means [`EmulatedUser::defaults`].
    #[serde(default)]
    pub users: Vec<EmulatedUser>,
}

/// An Adobe user who can sign in on the emulator's `/ims/authorize/v2` page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatedUser {
    /// The IMS user id, the `sub` of id_tokens (`...@AdobeID`).
    pub user_id: String,
    pub email: String,
    pub name: String,
}

impl EmulatedUser {
    pub fn new(user_id: &str, email: &str, name: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            email: email.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn defaults() -> Vec<EmulatedUser> {
        vec![
            Self::new("USERA00000000000000000@AdobeID", "ada@example.com", "Ada"),
            Self::new(
                "USERB00000000000000000@AdobeID",
                "grace@example.com",
                "Grace",
            ),
        ]
    }
}

/// A customer org (an Adobe org other than the partner's) offered on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatedOrg {
    pub org_id: String,
    pub name: String,
}

impl EmulatedOrg {
    pub fn new(org_id: &str, name: &str) -> Self {
        Self {
            org_id: org_id.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The customer orgs offered when a client configures none.
    pub fn defaults() -> Vec<EmulatedOrg> {
        vec![
            Self::new("CUSTOMERA0000000000000@AdobeOrg", "Customer A"),
            Self::new("CUSTOMERB0000000000000@AdobeOrg", "Customer B"),
        ]
    }
}

impl EmulatorConfig {
    /// The configured users, or the defaults when none are configured.
    pub fn sign_in_users(&self) -> Vec<EmulatedUser> {
        if self.users.is_empty() {
            EmulatedUser::defaults()
        } else {
            self.users.clone()
        }
    }

    /// Problems that would make the emulator misbehave (today: redirect URI patterns that are not
    /// valid regexes), each naming the client. [`crate::Emulator::start`] refuses such a config.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (n, c) in self.clients.iter().enumerate() {
            for (i, p) in c.redirect_uri_patterns.iter().enumerate() {
                if let Err(e) = full_match_regex(p) {
                    problems.push(format!(
                        "clients[{n}] ({}): redirect_uri_patterns[{i}] is not a valid regex: {}",
                        c.client_id,
                        e.to_string().replace('\n', " ")
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A redirect URI pattern must match the whole URI, as IMS treats it; a bare `https://a\.com/cb`
/// must not accept `https://a.com/cb.evil.example`.
pub(crate) fn full_match_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
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
    /// The technical account behind the client; also the test technical account created when an
    /// admin consents into the client's own org.
    #[serde(default = "default_technical_account")]
    pub technical_account: String,
    /// The client's own (the partner's) org.
    #[serde(default = "default_org")]
    pub org_id: String,
    /// Orgs that have consented to this client when the emulator starts (`org_id` in the token
    /// request is granted only for consented orgs).
    #[serde(default)]
    pub allowed_org_ids: Vec<String>,
    /// Where the consent page redirects when no `redirect_uri` is given, and on errors.
    #[serde(default)]
    pub default_redirect_uri: Option<String>,
    /// Regexes a `redirect_uri` on the consent URL must match in full.
    #[serde(default)]
    pub redirect_uri_patterns: Vec<String>,
    /// Customer orgs the emulated admin administers and can pick on this client's consent page;
    /// empty means [`EmulatedOrg::defaults`]. The client's own org is always offered as well.
    #[serde(default)]
    pub consent_orgs: Vec<EmulatedOrg>,
    /// PEM certificates uploaded for Service Account (JWT) exchange.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Metascopes bound to the client, for Service Account (JWT) exchange.
    #[serde(default)]
    pub metascopes: Vec<String>,
    /// Lifetime of refresh tokens issued with `offline_access` (IMS: 14 days).
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_lifetime_secs: u64,
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
            .field("technical_account", &self.technical_account)
            .field("org_id", &self.org_id)
            .field("allowed_org_ids", &self.allowed_org_ids)
            .field("default_redirect_uri", &self.default_redirect_uri)
            .field("redirect_uri_patterns", &self.redirect_uri_patterns)
            .field("consent_orgs", &self.consent_orgs)
            .field("certificates", &self.certificates.len())
            .field("metascopes", &self.metascopes)
            .field(
                "refresh_token_lifetime_secs",
                &self.refresh_token_lifetime_secs,
            )
            .finish()
    }
}

fn default_lifetime() -> u64 {
    86_399
}

fn default_refresh_lifetime() -> u64 {
    14 * 24 * 3600
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
            default_redirect_uri: None,
            redirect_uri_patterns: Vec::new(),
            consent_orgs: Vec::new(),
            certificates: Vec::new(),
            metascopes: Vec::new(),
            refresh_token_lifetime_secs: default_refresh_lifetime(),
        }
    }

    /// The configured consent orgs, or the defaults when none are configured.
    pub fn customer_orgs(&self) -> Vec<EmulatedOrg> {
        if self.consent_orgs.is_empty() {
            EmulatedOrg::defaults()
        } else {
            self.consent_orgs.clone()
        }
    }
}
