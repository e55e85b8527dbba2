//! The admin-consent exchange: building the consent URL and reading the redirect back.
//!
//! IMS redirects with `admin_consent=true|false`, `state` and, on consent, `id_token`; on failure
//! it sends `error=<code>` instead of `admin_consent`. Every parameter the flow relies on must
//! appear at most once: a repeated `state` or `id_token` is how parameter-pollution attacks get
//! one value checked and another used.

use url::Url;

use crate::scopes::ScopeSet;

/// Builds `consent_url?client_id&scope&state&nonce[&redirect_uri]`.
pub fn consent_url(
    consent_endpoint: &Url,
    client_id: &str,
    scopes: &ScopeSet,
    state: &str,
    nonce: &str,
    redirect_uri: Option<&str>,
) -> Url {
    let mut url = consent_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client_id)
            .append_pair("scope", &scopes.joined())
            .append_pair("state", state)
            .append_pair("nonce", nonce);
        if let Some(r) = redirect_uri {
            q.append_pair("redirect_uri", r);
        }
    }
    url
}

/// The error codes IMS documents for the consent redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentErrorCode {
    InvalidScopes,
    InvalidRedirectUri,
    InsufficientPrivilege,
    IncompatibleAccountType,
    MissingStateParam,
    /// IMS's generic `error`, and any code it may add later: the provider's text is never echoed.
    Other,
}

impl ConsentErrorCode {
    pub fn from_param(code: &str) -> Self {
        match code {
            "invalid_scopes" => Self::InvalidScopes,
            "invalid_redirect_uri" => Self::InvalidRedirectUri,
            "insufficient_privilege" => Self::InsufficientPrivilege,
            "incompatible_account_type" => Self::IncompatibleAccountType,
            "missing_state_param" => Self::MissingStateParam,
            _ => Self::Other,
        }
    }

    /// The code as imsgate reports it (IMS's own spelling; `error` for anything unknown).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidScopes => "invalid_scopes",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InsufficientPrivilege => "insufficient_privilege",
            Self::IncompatibleAccountType => "incompatible_account_type",
            Self::MissingStateParam => "missing_state_param",
            Self::Other => "error",
        }
    }

    /// A sentence for the person who went through the flow.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidScopes => {
                "The integration asked for scopes its Adobe credential does not have. The partner must fix the credential's scopes."
            }
            Self::InvalidRedirectUri => {
                "The return address is not registered on the integration's Adobe credential. The partner must fix its redirect URL patterns."
            }
            Self::InsufficientPrivilege => {
                "The signed-in Adobe user is not a system administrator of the organization. Ask an administrator to connect."
            }
            Self::IncompatibleAccountType => {
                "The signed-in Adobe account cannot grant consent (it is not an enterprise account). Sign in with an administrator account of the organization."
            }
            Self::MissingStateParam => {
                "Adobe received no state parameter. Start the connection again from the application."
            }
            Self::Other => "Adobe reported an error during consent. Start the connection again.",
        }
    }
}

/// What the admin did, according to the redirect.
#[derive(Clone, PartialEq, Eq)]
pub enum ConsentOutcome {
    /// `admin_consent=true` with the id_token to verify.
    Consented { id_token: String },
    /// `admin_consent=false`: the admin cancelled.
    Cancelled,
    /// `error=<code>`.
    Failed(ConsentErrorCode),
}

impl std::fmt::Debug for ConsentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The id_token is never printed, not even in debug output.
            Self::Consented { .. } => f.write_str("Consented { id_token: <redacted> }"),
            Self::Cancelled => f.write_str("Cancelled"),
            Self::Failed(c) => write!(f, "Failed({c:?})"),
        }
    }
}

/// A parsed redirect. `state` is `None` only when IMS reports `missing_state_param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentCallback {
    pub state: Option<String>,
    pub outcome: ConsentOutcome,
}

/// Why a redirect could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the {0} parameter appears more than once")]
    Duplicate(&'static str),
    #[error("the state parameter is missing")]
    MissingState,
    #[error("admin_consent=true came without an id_token")]
    MissingIdToken,
    #[error("an id_token came without admin_consent=true")]
    UnexpectedIdToken,
    #[error("admin_consent must be true or false")]
    BadConsentValue,
    #[error("the redirect carries neither admin_consent nor error")]
    NoOutcome,
    #[error("the redirect carries both admin_consent and error")]
    ConflictingOutcome,
}

impl CallbackError {
    /// A short, stable identifier for metrics and the `code` of an error redirect.
    pub fn code(self) -> &'static str {
        match self {
            Self::Duplicate(_) => "duplicate_parameter",
            Self::MissingState => "state_missing",
            Self::MissingIdToken => "id_token_missing",
            Self::UnexpectedIdToken => "id_token_unexpected",
            Self::BadConsentValue | Self::NoOutcome | Self::ConflictingOutcome => {
                "malformed_redirect"
            }
        }
    }
}

/// Reads the redirect's raw query string (`a=b&c=d`, without `?`).
pub fn parse_callback(query: &str) -> Result<ConsentCallback, CallbackError> {
    let mut state = None;
    let mut consent = None;
    let mut id_token = None;
    let mut error = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (slot, name) = match &*key {
            "state" => (&mut state, "state"),
            "admin_consent" => (&mut consent, "admin_consent"),
            "id_token" => (&mut id_token, "id_token"),
            "error" => (&mut error, "error"),
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(CallbackError::Duplicate(name));
        }
    }
    let outcome = match (consent.as_deref(), error) {
        (Some(_), Some(_)) => return Err(CallbackError::ConflictingOutcome),
        (None, None) => return Err(CallbackError::NoOutcome),
        (None, Some(code)) => {
            if id_token.is_some() {
                return Err(CallbackError::UnexpectedIdToken);
            }
            let code = ConsentErrorCode::from_param(&code);
            // IMS cannot echo a state it never received; every other redirect must carry one.
            if state.is_none() && code != ConsentErrorCode::MissingStateParam {
                return Err(CallbackError::MissingState);
            }
            return Ok(ConsentCallback {
                state,
                outcome: ConsentOutcome::Failed(code),
            });
        }
        (Some("true"), None) => match id_token {
            Some(t) if !t.is_empty() => ConsentOutcome::Consented { id_token: t },
            _ => return Err(CallbackError::MissingIdToken),
        },
        (Some("false"), None) => {
            if id_token.is_some() {
                return Err(CallbackError::UnexpectedIdToken);
            }
            ConsentOutcome::Cancelled
        }
        (Some(_), None) => return Err(CallbackError::BadConsentValue),
    };
    match state {
        Some(s) if !s.is_empty() => Ok(ConsentCallback {
            state: Some(s),
            outcome,
        }),
        _ => Err(CallbackError::MissingState),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_url_carries_the_parameters() {
        let base = Url::parse("https://id.adobe.com/consent").unwrap();
        let scopes = ScopeSet::parse("openid,AdobeID,read_organizations");
        let url = consent_url(
            &base,
            "cid",
            &scopes,
            "st&=1",
            "n",
            Some("https://a.example/cb?x=1"),
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("client_id".into(), "cid".into()),
                ("scope".into(), "AdobeID,openid,read_organizations".into()),
                ("state".into(), "st&=1".into()),
                ("nonce".into(), "n".into()),
                ("redirect_uri".into(), "https://a.example/cb?x=1".into()),
            ]
        );
        assert!(
            url.as_str()
                .starts_with("https://id.adobe.com/consent?client_id=cid&")
        );
        let without = consent_url(&base, "cid", &scopes, "s", "n", None);
        assert!(!without.as_str().contains("redirect_uri"));
    }

    #[test]
    fn callback_table() {
        use CallbackError::*;
        use ConsentErrorCode as C;
        let consented = |t: &str| ConsentOutcome::Consented { id_token: t.into() };
        type Row<'a> = (
            &'a str,
            Result<(Option<&'a str>, ConsentOutcome), CallbackError>,
        );
        let rows: Vec<Row> = vec![
            (
                "admin_consent=true&state=s1&id_token=a.b.c",
                Ok((Some("s1"), consented("a.b.c"))),
            ),
            (
                "state=s1&id_token=a.b.c&admin_consent=true&extra=1",
                Ok((Some("s1"), consented("a.b.c"))),
            ),
            (
                "admin_consent=false&state=s1",
                Ok((Some("s1"), ConsentOutcome::Cancelled)),
            ),
            (
                "error=invalid_scopes&state=s1",
                Ok((Some("s1"), ConsentOutcome::Failed(C::InvalidScopes))),
            ),
            (
                "error=invalid_redirect_uri&state=s1",
                Ok((Some("s1"), ConsentOutcome::Failed(C::InvalidRedirectUri))),
            ),
            (
                "error=insufficient_privilege&state=s1",
                Ok((Some("s1"), ConsentOutcome::Failed(C::InsufficientPrivilege))),
            ),
            (
                "error=incompatible_account_type&state=s1",
                Ok((
                    Some("s1"),
                    ConsentOutcome::Failed(C::IncompatibleAccountType),
                )),
            ),
            (
                "error=error&state=s1",
                Ok((Some("s1"), ConsentOutcome::Failed(C::Other))),
            ),
            (
                "error=%3Cscript%3E&state=s1",
                Ok((Some("s1"), ConsentOutcome::Failed(C::Other))),
            ),
            (
                "error=missing_state_param",
                Ok((None, ConsentOutcome::Failed(C::MissingStateParam))),
            ),
            ("admin_consent=true&state=s1", Err(MissingIdToken)),
            ("admin_consent=true&state=s1&id_token=", Err(MissingIdToken)),
            (
                "admin_consent=false&state=s1&id_token=a.b.c",
                Err(UnexpectedIdToken),
            ),
            (
                "error=error&state=s1&id_token=a.b.c",
                Err(UnexpectedIdToken),
            ),
            (
                "admin_consent=TRUE&state=s1&id_token=a.b.c",
                Err(BadConsentValue),
            ),
            (
                "admin_consent=1&state=s1&id_token=a.b.c",
                Err(BadConsentValue),
            ),
            ("admin_consent=true&id_token=a.b.c", Err(MissingState)),
            (
                "admin_consent=true&state=&id_token=a.b.c",
                Err(MissingState),
            ),
            ("admin_consent=false", Err(MissingState)),
            ("error=invalid_scopes", Err(MissingState)),
            (
                "admin_consent=true&state=s1&state=s2&id_token=a.b.c",
                Err(Duplicate("state")),
            ),
            (
                "admin_consent=true&state=s1&id_token=a.b.c&id_token=x.y.z",
                Err(Duplicate("id_token")),
            ),
            (
                "admin_consent=true&admin_consent=false&state=s1&id_token=a.b.c",
                Err(Duplicate("admin_consent")),
            ),
            ("error=a&error=b&state=s1", Err(Duplicate("error"))),
            // An encoded key is the same key.
            (
                "admin_consent=true&state=s1&%73tate=s2&id_token=a.b.c",
                Err(Duplicate("state")),
            ),
            (
                "admin_consent=true&error=error&state=s1&id_token=a.b.c",
                Err(ConflictingOutcome),
            ),
            ("state=s1", Err(NoOutcome)),
            ("", Err(NoOutcome)),
        ];
        let mut failures = Vec::new();
        for (query, want) in rows {
            let got = parse_callback(query).map(|c| (c.state, c.outcome));
            let want = want.map(|(s, o)| (s.map(str::to_owned), o));
            if got != want {
                failures.push(format!("{query}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn error_codes_round_trip_and_have_messages() {
        for code in [
            "invalid_scopes",
            "invalid_redirect_uri",
            "insufficient_privilege",
            "incompatible_account_type",
            "missing_state_param",
            "error",
        ] {
            let c = ConsentErrorCode::from_param(code);
            assert_eq!(c.as_str(), code);
            assert!(c.message().ends_with('.'));
        }
    }

    #[test]
    fn debug_never_prints_the_id_token() {
        let o = ConsentOutcome::Consented {
            id_token: "eyJsecret.part.sig".into(),
        };
        assert!(!format!("{o:?}").contains("eyJ"));
    }
}
