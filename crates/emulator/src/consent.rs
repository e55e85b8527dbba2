//! Admin consent (Enterprise Web App) state: which orgs consented to which client, the technical
//! account each consent created, and the shape of the id_token the consent page issues.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::EmulatorConfig;

/// Under which claim name the id_token carries the org id. Adobe's claims table says `org_id`,
/// all three of Adobe's samples read `orgId`; a relying party should accept either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrgClaim {
    /// `org_id`, as in Adobe's claims table.
    #[default]
    #[serde(rename = "org_id")]
    OrgId,
    /// `orgId`, as in Adobe's samples.
    #[serde(rename = "orgId")]
    CamelOrgId,
    /// Both claims, with the same value.
    #[serde(rename = "both")]
    Both,
}

impl OrgClaim {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgId => "org_id",
            Self::CamelOrgId => "orgId",
            Self::Both => "both",
        }
    }

    /// The claim names to set.
    pub fn claim_names(self) -> &'static [&'static str] {
        match self {
            Self::OrgId => &["org_id"],
            Self::CamelOrgId => &["orgId"],
            Self::Both => &["org_id", "orgId"],
        }
    }
}

/// Which `iss` the id_token carries. Discovery says the bare IMS host; Adobe's consent docs say
/// the host plus `/ims`; a relying party should accept its configured set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerForm {
    /// The issuer from discovery (the emulator's issuer, e.g. `http://127.0.0.1:PORT`).
    #[default]
    Discovery,
    /// The issuer plus `/ims`, as in the consent docs.
    Docs,
}

impl IssuerForm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Docs => "docs",
        }
    }

    /// The `iss` value for an emulator whose discovery issuer is `issuer`.
    pub fn issuer(self, issuer: &str) -> String {
        match self {
            Self::Discovery => issuer.to_owned(),
            Self::Docs => format!("{}/ims", issuer.trim_end_matches('/')),
        }
    }
}

/// How the consent page shapes id_tokens; changed at run time through the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenOptions {
    pub org_claim: OrgClaim,
    pub issuer_form: IssuerForm,
}

/// One org's consent to one client, and the technical account it created in that org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub client_id: String,
    pub org_id: String,
    pub technical_account: String,
}

/// The technical account consent creates for `client_id` in `org_id`. Consenting into the
/// client's own org creates the test technical account, which is the client's own; elsewhere it
/// is a stable id per (client, org), so re-consenting after a revoke yields the same `sub`.
pub(crate) fn technical_account_for(
    config: &EmulatorConfig,
    client_id: &str,
    org_id: &str,
) -> String {
    if let Some(c) = config
        .clients
        .iter()
        .find(|c| c.client_id == client_id && c.org_id == org_id)
    {
        return c.technical_account.clone();
    }
    // Length-prefixed so that no two (client, org) pairs share a name.
    let name = format!("{}:{client_id}:{org_id}", client_id.len());
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
    let hex = id.simple().to_string().to_ascii_uppercase();
    format!("{}@techacct.adobe.com", &hex[..24])
}

/// Consents by (client, org), and the id_token options.
#[derive(Debug, Default)]
pub(crate) struct ConsentBook {
    consents: RwLock<BTreeMap<(String, String), String>>,
    options: RwLock<IdTokenOptions>,
}

impl ConsentBook {
    /// Every client's `allowed_org_ids` start out consented.
    pub(crate) fn new(config: &EmulatorConfig) -> Self {
        let mut consents = BTreeMap::new();
        for c in &config.clients {
            for org in &c.allowed_org_ids {
                consents.insert(
                    (c.client_id.clone(), org.clone()),
                    technical_account_for(config, &c.client_id, org),
                );
            }
        }
        Self {
            consents: RwLock::new(consents),
            options: RwLock::default(),
        }
    }

    /// Records consent (idempotently) and returns the technical account; `None` for an unknown
    /// client or an empty org id.
    pub(crate) fn grant(
        &self,
        config: &EmulatorConfig,
        client_id: &str,
        org_id: &str,
    ) -> Option<String> {
        if org_id.is_empty() || !config.clients.iter().any(|c| c.client_id == client_id) {
            return None;
        }
        let account = self
            .consents
            .write()
            .entry((client_id.to_owned(), org_id.to_owned()))
            .or_insert_with(|| technical_account_for(config, client_id, org_id))
            .clone();
        Some(account)
    }

    pub(crate) fn revoke(&self, client_id: &str, org_id: &str) -> bool {
        self.consents
            .write()
            .remove(&(client_id.to_owned(), org_id.to_owned()))
            .is_some()
    }

    /// The technical account if `org_id` has consented to `client_id`.
    pub(crate) fn get(&self, client_id: &str, org_id: &str) -> Option<String> {
        self.consents
            .read()
            .get(&(client_id.to_owned(), org_id.to_owned()))
            .cloned()
    }

    pub(crate) fn list(&self) -> Vec<Consent> {
        self.consents
            .read()
            .iter()
            .map(|((client_id, org_id), account)| Consent {
                client_id: client_id.clone(),
                org_id: org_id.clone(),
                technical_account: account.clone(),
            })
            .collect()
    }

    pub(crate) fn options(&self) -> IdTokenOptions {
        *self.options.read()
    }

    pub(crate) fn set_options(&self, options: IdTokenOptions) {
        *self.options.write() = options;
    }

    /// Changes some options under one lock, so concurrent partial updates do not undo each other.
    pub(crate) fn update_options(&self, f: impl FnOnce(&mut IdTokenOptions)) {
        f(&mut self.options.write());
    }
}

/// The claims of an id_token as IMS issues it on consent.
pub(crate) fn id_token_claims(
    options: IdTokenOptions,
    issuer: &str,
    client_id: &str,
    org_id: &str,
    technical_account: &str,
    nonce: Option<&str>,
    now_secs: u64,
) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "iss": options.issuer_form.issuer(issuer),
        "sub": technical_account,
        "aud": client_id,
        "iat": now_secs,
        "exp": now_secs + 3600,
        "as": "ims-na1",
        "type": "id_token",
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    for name in options.org_claim.claim_names() {
        claims[*name] = org_id.into();
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorClient;

    fn config() -> EmulatorConfig {
        EmulatorConfig {
            clients: vec![EmulatorClient {
                org_id: "OWN@AdobeOrg".into(),
                technical_account: "OWNTA@techacct.adobe.com".into(),
                allowed_org_ids: vec!["OWN@AdobeOrg".into(), "C1@AdobeOrg".into()],
                ..EmulatorClient::new("c", "s", &["openid"], 60)
            }],
            ..EmulatorConfig::default()
        }
    }

    #[test]
    fn technical_accounts_are_stable_distinct_and_shaped_like_ims() {
        let cfg = config();
        assert_eq!(
            technical_account_for(&cfg, "c", "OWN@AdobeOrg"),
            "OWNTA@techacct.adobe.com"
        );
        let a = technical_account_for(&cfg, "c", "C1@AdobeOrg");
        assert_eq!(a, technical_account_for(&cfg, "c", "C1@AdobeOrg"));
        assert_ne!(a, technical_account_for(&cfg, "c", "C2@AdobeOrg"));
        assert_ne!(a, technical_account_for(&cfg, "d", "C1@AdobeOrg"));
        let (id, host) = a.split_once('@').unwrap();
        assert_eq!(host, "techacct.adobe.com");
        assert_eq!(id.len(), 24);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }

    #[test]
    fn allowed_orgs_start_consented_and_grants_are_idempotent() {
        let cfg = config();
        let book = ConsentBook::new(&cfg);
        assert_eq!(book.list().len(), 2);
        assert_eq!(
            book.get("c", "OWN@AdobeOrg").as_deref(),
            Some("OWNTA@techacct.adobe.com")
        );
        assert_eq!(book.grant(&cfg, "nope", "C9@AdobeOrg"), None);
        assert_eq!(book.grant(&cfg, "c", ""), None);
        let g = book.grant(&cfg, "c", "C9@AdobeOrg").unwrap();
        assert_eq!(book.grant(&cfg, "c", "C9@AdobeOrg").unwrap(), g);
        assert!(book.revoke("c", "C9@AdobeOrg"));
        assert!(!book.revoke("c", "C9@AdobeOrg"));
        assert_eq!(book.get("c", "C9@AdobeOrg"), None);
    }

    #[test]
    fn id_token_claims_follow_the_options() {
        let opts = |org_claim, issuer_form| IdTokenOptions {
            org_claim,
            issuer_form,
        };
        let c = id_token_claims(
            opts(OrgClaim::Both, IssuerForm::Docs),
            "https://ims.example/",
            "cid",
            "O@AdobeOrg",
            "T@techacct.adobe.com",
            Some("n1"),
            1000,
        );
        assert_eq!(c["iss"], "https://ims.example/ims");
        assert_eq!(c["org_id"], "O@AdobeOrg");
        assert_eq!(c["orgId"], "O@AdobeOrg");
        assert_eq!(c["nonce"], "n1");
        assert_eq!(c["exp"], 4600);
        let c = id_token_claims(
            opts(OrgClaim::CamelOrgId, IssuerForm::Discovery),
            "https://ims.example",
            "cid",
            "O@AdobeOrg",
            "T@techacct.adobe.com",
            None,
            1000,
        );
        assert_eq!(c["iss"], "https://ims.example");
        assert!(c.get("org_id").is_none());
        assert!(c.get("nonce").is_none());
        assert_eq!(c["orgId"], "O@AdobeOrg");
    }
}
