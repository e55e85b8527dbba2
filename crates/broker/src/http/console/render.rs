//! The console's markup: the sign-in form and the sections of the console page. Every value
//! shown goes through `escape`; no token or secret is ever read here.

use std::collections::HashMap;
use std::fmt::Write;

use super::ConsoleState;
use crate::admin_auth::Session;
use crate::cache::health::KeyHealth;
use crate::config::CredentialKind;
use crate::http::consent::flow_error;
use crate::http::error::ApiError;
use crate::http::html::escape;

/// Rows per page of the linked orgs and the sign-ins, unless `limit` says otherwise.
pub const PAGE_SIZE: u32 = 20;

const LINK_LABELS: [&str; 7] = [
    "Account",
    "Org",
    "Technical account",
    "Status",
    "Linked",
    "Updated",
    "",
];
const GRANT_LABELS: [&str; 8] = [
    "User",
    "Adobe user id",
    "Signed in",
    "Last refresh",
    "Access expires",
    "Refresh expires",
    "Sealing key",
    "",
];
const CREDENTIAL_LABELS: [&str; 5] = [
    "Name",
    "Kind",
    "Client id",
    "Client secrets",
    "Certificates",
];
const TOKEN_LABELS: [&str; 7] = [
    "Credential",
    "Org",
    "State",
    "Expires",
    "Last success",
    "Last IMS error",
    "",
];

/// Gives the i-th `<td>` of a row `data-label="labels[i]"`, which the phone layout shows beside
/// each value once the table's header is hidden. Cell contents are escaped, so a literal `<td>`
/// only ever opens a cell.
fn labelled(labels: &[&str], row: &str) -> String {
    let mut out = String::with_capacity(row.len() + 64);
    let mut rest = row;
    let mut i = 0;
    while let Some(p) = rest.find("<td>") {
        out.push_str(&rest[..p]);
        match labels.get(i) {
            Some(l) if !l.is_empty() => {
                let _ = write!(out, "<td data-label=\"{l}\">");
            }
            _ => out.push_str("<td>"),
        }
        rest = &rest[p + 4..];
        i += 1;
    }
    out.push_str(rest);
    out
}

/// Milliseconds since the epoch as `2026-12-04 16:20:00 UTC`.
fn when(ms: u64) -> String {
    let s = crate::clock::rfc3339(ms);
    match s.get(..19) {
        Some(d) => format!("{} UTC", d.replace('T', " ")),
        None => s,
    }
}

/// A time, marked when it is in the past.
fn expiry(ms: u64, now_ms: u64) -> String {
    if ms <= now_ms {
        format!("<span class=\"bad\">{} (expired)</span>", when(ms))
    } else {
        when(ms)
    }
}

pub fn login(error: Option<&str>) -> String {
    let notice = error
        .map(|e| {
            format!(
                "<div class=\"notice error\" id=\"login-error\" role=\"alert\">{}</div>",
                escape(e)
            )
        })
        .unwrap_or_default();
    format!(
        "<main class=\"error-page\"><div class=\"card\"><h1>imsgate console</h1>{notice}\
<form method=\"post\" action=\"/admin/login\" id=\"login\">\
<p><label for=\"password\">Password (the internal API key)</label></p>\
<p><input class=\"wide\" type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus></p>\
<p><button type=\"submit\">Sign in</button></p></form></div></main>"
    )
}

fn notice(q: &HashMap<String, String>) -> String {
    let subject = q.get("subject").map(|s| escape(s)).unwrap_or_default();
    let (class, text) = match q.get("notice").map(String::as_str) {
        Some("unlinked") => ("", format!("Account <code>{subject}</code> was unlinked.")),
        Some("revoked") => (
            "",
            format!("The sign-in of <code>{subject}</code> was revoked at Adobe and forgotten."),
        ),
        Some("revoked_locally") => (
            " error",
            format!(
                "The sign-in of <code>{subject}</code> was forgotten here, but Adobe did not \
                 confirm the revocation; its tokens lapse on their own."
            ),
        ),
        Some("refreshed") => (
            "",
            format!("A new token was fetched for <code>{subject}</code>."),
        ),
        Some("recently_refreshed") => (
            "",
            format!(
                "A token was fetched for <code>{subject}</code> moments ago; IMS was not asked \
                 again. Try again in a few seconds if you need another."
            ),
        ),
        Some("org_refused") => (
            " error",
            format!(
                "IMS refused the token of <code>{subject}</code>: the org's consent was revoked. \
                 Its links now read needs_reauthorization and IMS is not asked again until an \
                 admin of the org consents anew."
            ),
        ),
        Some("refresh_failed") => (
            " error",
            format!(
                "IMS refused or did not answer the refresh of <code>{subject}</code>; see its last \
                 error below."
            ),
        ),
        _ => return String::new(),
    };
    format!("<div class=\"notice{class}\" id=\"notice\" role=\"status\">{text}</div>")
}

/// A hidden CSRF field for the session's forms.
fn csrf(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&session.csrf)
    )
}

fn offset_of(q: &HashMap<String, String>, name: &str) -> u64 {
    q.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Rows per page: `limit` (1 to [`crate::storage::MAX_PAGE`]) or [`PAGE_SIZE`].
fn limit_of(q: &HashMap<String, String>) -> u32 {
    q.get("limit")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(PAGE_SIZE)
        .clamp(1, crate::storage::MAX_PAGE)
}

/// The `limit` parameter to keep in links, empty when it is the default.
fn limit_param(limit: u32) -> String {
    if limit == PAGE_SIZE {
        String::new()
    } else {
        limit.to_string()
    }
}

/// A link to the console with the given parameters (empty ones left out).
fn href(params: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if !v.is_empty() && v != "0" {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() {
        "/admin".to_owned()
    } else {
        format!("/admin?{}", escape(&q))
    }
}

/// "Showing 21–40 of 57" and the previous/next links; `other` keeps the rest of the page's state.
fn pager(
    id: &str,
    total: u64,
    offset: u64,
    shown: usize,
    limit: u32,
    search: (&str, &str),
    offset_name: &str,
) -> String {
    let mut out = format!("<div class=\"pager\" id=\"{id}-pager\">");
    if total == 0 {
        out.push_str("</div>");
        return out;
    }
    if shown == 0 {
        let _ = write!(
            out,
            "<span class=\"muted\">This page is past the end of the {total} rows.</span>\
<a class=\"button secondary\" id=\"{id}-first\" href=\"{}\">First page</a></div>",
            href(&[
                (search.0, search.1.to_owned()),
                ("limit", limit_param(limit))
            ])
        );
        return out;
    }
    let first = offset + 1;
    let last = offset + shown as u64;
    let _ = write!(
        out,
        "<span class=\"muted\" id=\"{id}-range\">{first}–{last} of {total}</span>"
    );
    let link = |o: u64| {
        href(&[
            (search.0, search.1.to_owned()),
            (offset_name, o.to_string()),
            ("limit", limit_param(limit)),
        ])
    };
    if offset > 0 {
        let prev = offset.saturating_sub(limit as u64);
        let _ = write!(
            out,
            "<a class=\"button secondary\" id=\"{id}-prev\" href=\"{}\">Previous</a>",
            link(prev)
        );
    }
    if last < total {
        let _ = write!(
            out,
            "<a class=\"button secondary\" id=\"{id}-next\" href=\"{}\">Next</a>",
            link(last)
        );
    }
    out.push_str("</div>");
    out
}

fn search_form(id: &str, name: &str, value: &str, placeholder: &str, limit: u32) -> String {
    let keep = if limit == PAGE_SIZE {
        String::new()
    } else {
        format!("<input type=\"hidden\" name=\"limit\" value=\"{limit}\">")
    };
    format!(
        "<form class=\"search\" method=\"get\" action=\"/admin\" id=\"{id}-search\">{keep}\
<input type=\"search\" name=\"{name}\" value=\"{}\" placeholder=\"{}\" aria-label=\"{}\">\
<button type=\"submit\" class=\"secondary\">Search</button></form>",
        escape(value),
        escape(placeholder),
        escape(placeholder),
    )
}

async fn links(
    st: &ConsoleState,
    session: &Session,
    q: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let Some(consent) = &st.consent else {
        return Ok(String::new());
    };
    let search = q.get("q").map(String::as_str).unwrap_or("");
    let offset = offset_of(q, "offset");
    let limit = limit_of(q);
    let page = consent
        .service
        .store
        .links_page(search.to_owned(), limit, offset)
        .await
        .map_err(|e| flow_error(e.into()))?;
    let mut rows = String::new();
    for l in &page.items {
        let action = if l.status == crate::storage::LinkStatus::Unlinked {
            String::new()
        } else {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/admin/unlink\">{}\
<input type=\"hidden\" name=\"account_id\" value=\"{}\">\
<button class=\"danger\" type=\"submit\">Unlink</button></form>",
                csrf(session),
                escape(&l.account_id)
            )
        };
        rows.push_str(&labelled(
            &LINK_LABELS,
            &format!(
            "<tr class=\"{status}\" data-account=\"{account}\"><td>{account}</td><td><code>{org}</code></td><td><code>{ta}</code></td><td>{status}</td><td>{linked}</td><td>{updated}</td><td>{action}</td></tr>",
            account = escape(&l.account_id),
            org = escape(&l.org_id),
            ta = escape(&l.technical_account),
            status = l.status.as_str(),
            linked = when(l.linked_at_ms),
            updated = when(l.updated_at_ms),
            ),
        ));
    }
    if page.items.is_empty() {
        rows.push_str(if search.is_empty() {
            "<tr><td colspan=\"7\">No account has been linked yet.</td></tr>"
        } else {
            "<tr><td colspan=\"7\">No link matches this search.</td></tr>"
        });
    }
    Ok(format!(
        "<section id=\"links-section\"><h2>Linked Adobe orgs</h2>\
<p class=\"muted\">Credential <code>{cred}</code>, client <code>{client}</code>.</p>{form}\
<div class=\"scroll\"><table class=\"stack\" id=\"links\"><thead><tr><th>Account</th><th>Org</th><th>Technical account</th><th>Status</th><th>Linked</th><th>Updated</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table></div>{pager}</section>",
        cred = escape(&consent.credential),
        client = escape(&consent.service.client_id),
        form = search_form("links", "q", search, "Account or org id", limit),
        pager = pager(
            "links",
            page.total,
            offset,
            page.items.len(),
            limit,
            ("q", search),
            "offset"
        ),
    ))
}

async fn sign_ins(
    st: &ConsoleState,
    session: &Session,
    q: &HashMap<String, String>,
    now_ms: u64,
) -> Result<String, ApiError> {
    let Some(ul) = &st.user_login else {
        return Ok(String::new());
    };
    let search = q.get("users_q").map(String::as_str).unwrap_or("");
    let offset = offset_of(q, "users_offset");
    let limit = limit_of(q);
    let page = ul
        .service
        .vault
        .grants_page(search, limit, offset)
        .await
        .map_err(crate::http::user_login::vault_error)?;
    let mut rows = String::new();
    for g in &page.items {
        rows.push_str(&labelled(
            &GRANT_LABELS,
            &format!(
            "<tr data-user=\"{user}\"><td>{user}</td><td><code>{adobe}</code></td><td>{signed}</td><td>{refreshed}</td><td>{access}</td><td>{refresh}</td><td><code>{kid}</code>{old}</td>\
<td><form class=\"inline\" method=\"post\" action=\"/admin/revoke-sign-in\">{csrf}<input type=\"hidden\" name=\"user\" value=\"{user}\"><button class=\"danger\" type=\"submit\">Revoke</button></form></td></tr>",
            user = escape(&g.user_ref),
            adobe = escape(&g.ims_user_id),
            signed = when(g.signed_in_at_ms),
            refreshed = when(g.last_refresh_ms),
            access = expiry(g.access_expires_ms, now_ms),
            refresh = g
                .refresh_expires_ms
                .map(|ms| expiry(ms, now_ms))
                .unwrap_or_else(|| "<span class=\"muted\">none</span>".to_owned()),
            kid = escape(&g.kid),
            old = if g.current_key {
                ""
            } else {
                " <span class=\"warn\">(older key)</span>"
            },
            csrf = csrf(session),
            ),
        ));
    }
    if page.items.is_empty() {
        rows.push_str(if search.is_empty() {
            "<tr><td colspan=\"8\">No user has signed in yet.</td></tr>"
        } else {
            "<tr><td colspan=\"8\">No sign-in matches this search.</td></tr>"
        });
    }
    Ok(format!(
        "<section id=\"sign-ins-section\"><h2>Users' Adobe sign-ins</h2>{form}\
<div class=\"scroll\"><table class=\"stack\" id=\"sign-ins\"><thead><tr><th>User</th><th>Adobe user id</th><th>Signed in</th><th>Last refresh</th><th>Access token expires</th><th>Refresh token expires</th><th>Sealing key</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table></div>{pager}</section>",
        form = search_form(
            "sign-ins",
            "users_q",
            search,
            "User or Adobe user id",
            limit
        ),
        pager = pager(
            "sign-ins",
            page.total,
            offset,
            page.items.len(),
            limit,
            ("users_q", search),
            "users_offset"
        ),
    ))
}

fn refresh_button(session: &Session, credential: &str, org: Option<&str>) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/admin/refresh\">{}\
<input type=\"hidden\" name=\"credential\" value=\"{}\"><input type=\"hidden\" name=\"org\" value=\"{}\">\
<button class=\"secondary\" type=\"submit\">Refresh now</button></form>",
        csrf(session),
        escape(credential),
        escape(org.unwrap_or("")),
    )
}

fn token_row(session: &Session, h: &KeyHealth, now_ms: u64) -> String {
    let state = if h.in_flight {
        "<span class=\"warn\">refreshing</span>"
    } else if h.servable {
        "served"
    } else if h.token_expires_at_ms.is_some() {
        "<span class=\"bad\">not served</span>"
    } else {
        "<span class=\"muted\">no token</span>"
    };
    let failure = match &h.record.last_failure {
        Some(f) => format!(
            "<span class=\"bad\">{code}</span>{status} at {at}<br>x-debug-id <code>{debug}</code>",
            code = escape(&f.code),
            status = f.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
            at = when(f.at_ms),
            debug = escape(f.debug_id.as_deref().unwrap_or("none")),
        ),
        None => "<span class=\"muted\">none</span>".to_owned(),
    };
    labelled(
        &TOKEN_LABELS,
        &format!(
            "<tr data-credential=\"{cred}\" data-org=\"{org}\"><td>{cred}</td><td>{org_cell}</td><td>{state}</td><td>{expires}</td><td>{success}</td><td>{failure}</td><td>{button}</td></tr>",
            cred = escape(&h.key.credential),
            org = escape(h.key.org_id.as_deref().unwrap_or("")),
            org_cell = match h.key.org_id.as_deref() {
                Some(o) => format!("<code>{}</code>", escape(o)),
                None => "<span class=\"muted\">its own</span>".to_owned(),
            },
            expires = h
                .token_expires_at_ms
                .map(|ms| expiry(ms, now_ms))
                .unwrap_or_else(|| "<span class=\"muted\">none</span>".to_owned()),
            success = h
                .record
                .last_success_ms
                .map(when)
                .unwrap_or_else(|| "<span class=\"muted\">never</span>".to_owned()),
            button = refresh_button(session, &h.key.credential, h.key.org_id.as_deref()),
        ),
    )
}

fn health(st: &ConsoleState, session: &Session, now_ms: u64) -> String {
    let mut names: Vec<&String> = st.credentials.keys().collect();
    names.sort();
    let now_s = now_ms / 1000;
    let mut creds = String::new();
    for name in &names {
        let c = &st.credentials[*name];
        let secrets = if c.config.client_secrets.is_empty() {
            "<span class=\"muted\">none</span>".to_owned()
        } else {
            let last = c.last_success();
            let mut s = format!("in use: <code>client_secrets[{}]</code>", c.active_secret());
            for (i, at) in last.iter().enumerate() {
                let at = at
                    .map(|t| when(crate::clock::unix_ms(t)))
                    .unwrap_or_else(|| "not since start".to_owned());
                let _ = write!(s, "<br><code>[{i}]</code> last worked: {at}");
            }
            s
        };
        let certs = match &c.signing {
            Some(keys) => {
                let signing = keys.signing_index(now_s);
                let mut s = String::new();
                for (i, k) in keys.keys.iter().enumerate() {
                    let exp = k.certificate.not_after;
                    let soon = exp.saturating_sub(now_s) < keys.warning.as_secs();
                    let _ = write!(
                        s,
                        "{br}<code>{subject}</code> expires <span class=\"{class}\">{at}</span>{signing}",
                        br = if i > 0 { "<br>" } else { "" },
                        subject = escape(&k.certificate.subject),
                        class = if exp <= now_s {
                            "bad"
                        } else if soon {
                            "warn"
                        } else {
                            ""
                        },
                        at = when(exp.saturating_mul(1000)),
                        signing = if signing == Some(i) { " (signing)" } else { "" },
                    );
                }
                s
            }
            None => "<span class=\"muted\">n/a</span>".to_owned(),
        };
        creds.push_str(&labelled(
            &CREDENTIAL_LABELS,
            &format!(
            "<tr data-credential=\"{n}\"><td>{n}</td><td>{kind}</td><td><code>{client}</code></td><td>{secrets}</td><td>{certs}</td></tr>",
            n = escape(name),
            kind = c.config.kind.as_str(),
            client = escape(&c.config.client_id),
            ),
        ));
    }
    let keys = st.cache.health();
    let mut tokens = String::new();
    for h in &keys {
        tokens.push_str(&token_row(session, h, now_ms));
    }
    // Credentials whose own token nobody asked for yet can still be fetched from here.
    for name in &names {
        let c = &st.credentials[*name];
        let own = matches!(
            c.config.kind,
            CredentialKind::OAuthServerToServer | CredentialKind::ServiceAccount
        );
        if own
            && !keys
                .iter()
                .any(|h| &*h.key.credential == name.as_str() && h.key.org_id.is_none())
        {
            tokens.push_str(&labelled(
                &TOKEN_LABELS,
                &format!(
                "<tr data-credential=\"{n}\" data-org=\"\"><td>{n}</td><td><span class=\"muted\">its own</span></td><td><span class=\"muted\">no token</span></td><td><span class=\"muted\">none</span></td><td><span class=\"muted\">never</span></td><td><span class=\"muted\">none</span></td><td>{b}</td></tr>",
                n = escape(name),
                b = refresh_button(session, name, None),
                ),
            ));
        }
    }
    if tokens.is_empty() {
        tokens.push_str("<tr><td colspan=\"7\">No token has been fetched yet.</td></tr>");
    }
    format!(
        "<section id=\"health-section\"><h2>Credentials</h2><div class=\"scroll\"><table class=\"stack\" id=\"credentials\"><thead><tr><th>Name</th><th>Kind</th><th>Client id</th><th>Client secrets</th><th>Certificates</th></tr></thead><tbody>{creds}</tbody></table></div>\
<h2 class=\"next\">Tokens</h2><div class=\"scroll\"><table class=\"stack\" id=\"tokens\"><thead><tr><th>Credential</th><th>Org</th><th>State</th><th>Expires</th><th>Last success</th><th>Last IMS error</th><th></th></tr></thead><tbody>{tokens}</tbody></table></div></section>"
    )
}

fn rate_limits(st: &ConsoleState) -> String {
    if st.client_token.is_none() {
        return String::new();
    }
    let mut rows = String::new();
    for limit in [
        crate::ratelimit::Limit::UserMinute,
        crate::ratelimit::Limit::UserDay,
        crate::ratelimit::Limit::GlobalMinute,
        crate::ratelimit::Limit::GlobalDay,
    ] {
        let n = st
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::LimitLabels {
                limit: limit.as_str(),
            })
            .get();
        let _ = write!(
            rows,
            "<tr data-limit=\"{l}\"><td><code>{l}</code></td><td>{n}</td></tr>",
            l = limit.as_str()
        );
    }
    format!(
        "<section id=\"rate-limits-section\"><h2>Rate-limit rejections since start</h2><div class=\"scroll\"><table id=\"rate-limits\"><thead><tr><th>Limit</th><th>Requests refused</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
    )
}

/// The whole console for a signed-in operator.
pub async fn console(
    st: &ConsoleState,
    session: &Session,
    q: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let now_ms = crate::clock::unix_ms(st.clock.now());
    let links = links(st, session, q).await?;
    let sign_ins = sign_ins(st, session, q, now_ms).await?;
    Ok(format!(
        "<header><h1>imsgate console</h1><form class=\"inline\" method=\"post\" action=\"/admin/logout\">{csrf}<button class=\"secondary\" type=\"submit\" id=\"sign-out\">Sign out</button></form></header>\
<main>{notice}{links}{sign_ins}{health}{limits}</main>",
        csrf = csrf(session),
        notice = notice(q),
        health = health(st, session, now_ms),
        limits = rate_limits(st),
    ))
}
