//! Enterprise Web App redirect rules: the default redirect URI and the redirect URL patterns.
//!
//! Adobe's rules (developer console, "Default redirect URI and redirect URI pattern"): the default
//! redirect URI is an absolute https URL without wildcards, at most 256 characters; the patterns
//! are https regexes with escaped periods, wildcards only in the path, stored comma-separated in
//! at most 512 characters.
//!
//! We are stricter, because a pattern that is looser than it looks lets IMS send an admin's
//! consent (and its `id_token`) to someone else:
//! - every pattern is anchored: it is compiled as `^(?:pattern)$`; a `^` and `$` written by the
//!   user are accepted and stripped;
//! - inline flags (`(?i)`, `(?s:…)`, …) and top-level `|` are refused;
//! - the host and port (between `https://` and the first `/`) must be literal: lower-case
//!   letters, digits, `-`, `\.` and an optional `:` with digits (or an escaped IPv6 literal
//!   `\[::1\]`); the pattern must have a path, since canonical URLs always do;
//! - a pattern may not contain `,` (Adobe would split it there) or whitespace;
//! - a glob-style `/*` in the path is refused with a hint to write `/.*`: as a regex it only
//!   repeats the `/` (Adobe's own example, `https://data\.myapp\.com/redirect/*`, has this
//!   mistake).
//!
//! Candidate URIs are checked before matching (see [`RedirectRules::allows`]) and matched
//! case-sensitively against their canonical serialisation, so a pattern never has to defend
//! against userinfo, backslashes, percent-encoded dots or `..` segments. Any path that a common
//! server would normalise into another path is refused rather than matched: `;` path parameters
//! (`/cb/..;/x`), `//`, and percent escapes that decode to `.`, `/`, `\`, `;`, `%` or a control
//! character, malformed escapes, and escaped bytes that are not UTF-8 (overlong `%c0%ae`).
//!
//! Positions are 0-based byte offsets into the string the violation is about (the pattern as the
//! user wrote it, including any leading `^`; the default URI; or, for the list length, the
//! patterns joined with commas). Pattern numbers are 0-based indexes into the list, matching the
//! `key[i]` paths the configuration loader reports.

use std::fmt;

use regex::{Regex, RegexBuilder};
use regex_syntax::ast::{self, Ast, GroupKind};
use url::Url;

/// Adobe's limit on the default redirect URI, in characters.
pub const MAX_DEFAULT_REDIRECT_URI_CHARS: usize = 256;
/// Adobe's limit on the comma-joined pattern list, in characters.
pub const MAX_PATTERN_LIST_CHARS: usize = 512;

/// Which configured value a [`RuleViolation`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    DefaultRedirectUri,
    /// 0-based index into the pattern list.
    Pattern(usize),
    /// The patterns as a whole, joined with commas the way Adobe stores them.
    PatternList,
}

impl fmt::Display for RuleField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultRedirectUri => f.write_str("default redirect URI"),
            Self::Pattern(i) => write!(f, "redirect pattern [{i}]"),
            Self::PatternList => f.write_str("redirect pattern list"),
        }
    }
}

/// One problem with the configured rules: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    pub field: RuleField,
    /// 0-based byte offset into the string named by `field`.
    pub position: usize,
    /// What is wrong and how to fix it, as one sentence.
    pub message: String,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, position {}: {}",
            self.field, self.position, self.message
        )
    }
}

impl std::error::Error for RuleViolation {}

/// Validated redirect rules for one Enterprise Web App credential.
#[derive(Debug, Clone)]
pub struct RedirectRules {
    default_redirect_uri: String,
    patterns: Vec<CompiledPattern>,
    dev_mode: bool,
}

#[derive(Debug, Clone)]
struct CompiledPattern {
    source: String,
    regex: Regex,
}

impl RedirectRules {
    /// Validates the default redirect URI and the patterns, reporting every violation found.
    ///
    /// `dev_mode` additionally allows `http://` to `localhost`, `127.0.0.1` and `[::1]` (any
    /// port) in the default URI, the patterns and candidate URIs. `https://localhost` needs no
    /// flag.
    pub fn new(
        default_redirect_uri: &str,
        patterns: &[String],
        dev_mode: bool,
    ) -> Result<Self, Vec<RuleViolation>> {
        let mut violations = Vec::new();

        for (position, message) in default_uri_problems(default_redirect_uri, dev_mode) {
            violations.push(RuleViolation {
                field: RuleField::DefaultRedirectUri,
                position,
                message,
            });
        }

        let joined = patterns.join(",");
        if let Some((position, _)) = joined.char_indices().nth(MAX_PATTERN_LIST_CHARS) {
            violations.push(RuleViolation {
                field: RuleField::PatternList,
                position,
                message: format!(
                    "the patterns joined with commas are {} characters, Adobe allows at most \
                     {MAX_PATTERN_LIST_CHARS}; merge patterns (e.g. one path wildcard) or shorten them",
                    joined.chars().count()
                ),
            });
        }

        let mut compiled = Vec::with_capacity(patterns.len());
        for (i, source) in patterns.iter().enumerate() {
            match compile_pattern(source, dev_mode) {
                Ok(regex) => compiled.push(CompiledPattern {
                    source: source.clone(),
                    regex,
                }),
                Err(problems) => {
                    violations.extend(problems.into_iter().map(|(position, message)| {
                        RuleViolation {
                            field: RuleField::Pattern(i),
                            position,
                            message,
                        }
                    }))
                }
            }
        }

        if violations.is_empty() {
            Ok(Self {
                default_redirect_uri: default_redirect_uri.to_owned(),
                patterns: compiled,
                dev_mode,
            })
        } else {
            Err(violations)
        }
    }

    /// Would IMS (and we) accept `uri` as the `redirect_uri` of a consent request?
    ///
    /// True if `uri` passes the candidate checks (absolute; https, or http to a loopback host in
    /// development mode; no userinfo, fragment, backslash, `.`/`..` segment, `;` or `//` in the
    /// path, whitespace or control character; no percent escape of `.`, `/`, `\`, `;`, `%` or a
    /// control character, no malformed escape, no escaped bytes that are not UTF-8; already
    /// canonical) and then either equals the default
    /// redirect URI or fully matches a pattern. A query string is allowed only when a pattern
    /// matches it, as patterns are matched against the whole canonical string.
    ///
    /// Adobe only matches an explicit `redirect_uri` against the patterns, so a consent URL for
    /// the default URI should leave `redirect_uri` out rather than repeat it.
    pub fn allows(&self, uri: &str) -> bool {
        if !candidate_problems(uri, self.dev_mode).is_empty() {
            return false;
        }
        uri == self.default_redirect_uri || self.patterns.iter().any(|p| p.regex.is_match(uri))
    }

    /// The first reason `uri` fails the candidate checks of [`Self::allows`], as (byte offset,
    /// message), before any comparison with the default URI or the patterns.
    pub fn candidate_violation(&self, uri: &str) -> Option<(usize, String)> {
        candidate_problems(uri, self.dev_mode).into_iter().next()
    }

    /// Whether `uri` may be sent as an explicit `redirect_uri`: it passes the candidate checks and
    /// fully matches a pattern (Adobe matches explicit values against the patterns only).
    pub fn matches_pattern(&self, uri: &str) -> bool {
        candidate_problems(uri, self.dev_mode).is_empty()
            && self.patterns.iter().any(|p| p.regex.is_match(uri))
    }

    pub fn default_redirect_uri(&self) -> &str {
        &self.default_redirect_uri
    }

    /// The patterns as configured (before `^`/`$` stripping), in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.source.as_str())
    }

    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }
}

type Problems = Vec<(usize, String)>;

fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(a) => a == std::net::Ipv4Addr::LOCALHOST,
        url::Host::Ipv6(a) => a == std::net::Ipv6Addr::LOCALHOST,
    }
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Checks a URI that is to be used as-is as a redirect target; empty means acceptable.
///
/// Problems after the first structural one are still collected so configuration errors can be
/// reported together; `allows` only needs to know whether there are any.
fn candidate_problems(uri: &str, dev_mode: bool) -> Problems {
    let mut problems = Vec::new();
    if uri.is_empty() {
        problems.push((
            0,
            "empty; write an absolute URL such as \"https://app.example.com/callback\"".to_owned(),
        ));
        return problems;
    }
    if let Some((i, c)) = uri
        .char_indices()
        .find(|(_, c)| c.is_control() || c.is_whitespace())
    {
        // The url crate silently drops tabs and newlines, so the URL checked would not be the
        // string the browser is sent to.
        problems.push((
            i,
            format!("whitespace or control character {c:?}; percent-encode it or remove it"),
        ));
    }
    if let Some(i) = uri.find('\\') {
        // Browsers read "\" as "/" in http(s) URLs: "https://evil.com\@good.com" goes to evil.com.
        problems.push((
            i,
            "backslash; browsers treat \"\\\" as \"/\", so write \"/\"".to_owned(),
        ));
    }
    // Only the part a server routes on: escapes in the query cannot steer the path.
    let routed = &uri[..uri.find(['?', '#']).unwrap_or(uri.len())];
    if let Some((i, why)) = find_bad_escape(routed) {
        problems.push((i, why));
    }
    // These make the parser rewrite the string, so a canonical spelling suggested despite them
    // would only repeat the rewrite.
    let mut rewritten = !problems.is_empty();
    let url = match Url::parse(uri) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            problems.push((
                0,
                "not an absolute URL; write it with scheme and host, e.g. \"https://app.example.com/callback\""
                    .to_owned(),
            ));
            return problems;
        }
        Err(e) => {
            problems.push((0, format!("not a valid URL ({e})")));
            return problems;
        }
    };

    let loopback = url.host().is_some_and(is_loopback);
    match (url.scheme(), dev_mode) {
        ("https", _) => {}
        ("http", true) if loopback => {}
        ("http", true) => problems.push((
            0,
            format!(
                "http:// is allowed only for {} in development mode; use https://",
                LOOPBACK_HOSTS.join(", ")
            ),
        )),
        ("http", false) => problems.push((
            0,
            "http:// is not allowed; use https:// (http to localhost needs development mode)"
                .to_owned(),
        )),
        (other, _) => problems.push((0, format!("scheme {other:?} is not allowed; use https://"))),
    }

    let authority_start = uri.find("://").map_or(0, |i| i + 3);
    let rest = uri.get(authority_start..).unwrap_or("");
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !url.username().is_empty() || url.password().is_some() {
        let at = rest[..authority_len].rfind('@').unwrap_or(0);
        problems.push((
            authority_start + at,
            "userinfo (\"user@\") is not allowed; \"https://good.com@evil.com\" goes to evil.com"
                .to_owned(),
        ));
    }
    if url.fragment().is_some() {
        problems.push((
            uri.find('#').unwrap_or(0),
            "fragment (\"#…\") is not allowed; remove it".to_owned(),
        ));
    }

    let path_start = authority_start + authority_len;
    let after = uri.get(path_start..).unwrap_or("");
    let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
    let mut offset = path_start;
    for segment in path.split('/') {
        if segment == "." || segment == ".." {
            rewritten = true;
            problems.push((
                offset,
                format!("path segment {segment:?} (path traversal); write the resolved path"),
            ));
        }
        offset += segment.len() + 1;
    }
    if let Some(i) = path.find(';') {
        // Tomcat, Jetty and Spring strip ";…" path parameters before routing, so
        // "/cb/..;/admin" is matched here as below "/cb/" but served as "/admin".
        problems.push((
            path_start + i,
            "\";\" in the path; servers that honour path parameters strip \";…\" from a \
             segment (\"/cb/..;/x\" is served as \"/x\"), so remove it"
                .to_owned(),
        ));
    }
    if let Some(i) = path.find("//") {
        // Many servers and proxies merge "//" into "/", so the path served is not the one matched.
        problems.push((
            path_start + i,
            "empty path segment (\"//\"); servers merge it into \"/\", so write a single \"/\""
                .to_owned(),
        ));
    }

    if !rewritten && url.as_str() != uri {
        let canonical = url.as_str();
        let position = uri
            .char_indices()
            .zip(canonical.chars())
            .find(|((_, a), b)| a != b)
            .map_or(uri.len().min(canonical.len()), |((i, _), _)| i);
        problems.push((
            position,
            format!("not in canonical form, so it would never match; write {canonical:?}"),
        ));
    }
    problems
}

/// The first percent escape that some server would decode into something other than what the
/// pattern saw: an encoded `.`, `/`, `\`, `;` or `%` (double encoding), an encoded control
/// character or NUL, an escape that is not `%` and two hex digits, or escaped bytes that are not
/// valid UTF-8 (overlong forms such as `%c0%ae` are decoded to `.` by lenient decoders).
fn find_bad_escape(s: &str) -> Option<(usize, String)> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let escape_at = |i: usize| -> Option<u8> {
        (b.get(i) == Some(&b'%'))
            .then(|| Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?))
            .flatten()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        let seq = s.get(i..(i + 3).min(s.len())).unwrap_or("%");
        let Some(byte) = escape_at(i) else {
            return Some((
                i,
                format!(
                    "invalid percent escape {seq:?}; \"%\" must be followed by two hex digits, \
                     and servers disagree about what anything else means"
                ),
            ));
        };
        let why = match byte {
            b'.' | b'/' | b'\\' => Some(format!(
                "percent-encoded \".\", \"/\" or \"\\\" ({seq:?}); these smuggle path traversal past \
                 pattern checks, write the path without them"
            )),
            b';' => Some(format!(
                "percent-encoded \";\" ({seq:?}); servers that decode it strip path parameters \
                 after it, remove it"
            )),
            b'%' => Some(format!(
                "percent-encoded \"%\" ({seq:?}, double encoding); a server that decodes twice \
                 sees another character, write the character itself"
            )),
            0x00..=0x1f | 0x7f => Some(format!(
                "percent-encoded control character ({seq:?}); servers truncate or drop it, remove it"
            )),
            _ => None,
        };
        if let Some(why) = why {
            return Some((i, why));
        }
        if byte < 0x80 {
            i += 3;
            continue;
        }
        // A run of escaped non-ASCII bytes must be valid UTF-8 on its own.
        let start = i;
        let mut bytes = Vec::new();
        while let Some(byte) = escape_at(i).filter(|&x| x >= 0x80) {
            bytes.push(byte);
            i += 3;
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Some((
                start,
                format!(
                    "percent-encoded bytes at {:?} are not valid UTF-8 (overlong forms such as \
                     \"%c0%ae\" decode to \".\" in lenient servers); encode the character as UTF-8",
                    s.get(start..i).unwrap_or("%")
                ),
            ));
        }
    }
    None
}

fn default_uri_problems(uri: &str, dev_mode: bool) -> Problems {
    let mut problems = Vec::new();
    if let Some((i, _)) = uri.char_indices().nth(MAX_DEFAULT_REDIRECT_URI_CHARS) {
        problems.push((
            i,
            format!(
                "{} characters, Adobe allows at most {MAX_DEFAULT_REDIRECT_URI_CHARS}; use a shorter URL",
                uri.chars().count()
            ),
        ));
    }
    if let Some(i) = uri.find('*') {
        problems.push((
            i,
            "wildcard \"*\"; the default redirect URI is a plain URL, put wildcards in a redirect \
             pattern instead"
                .to_owned(),
        ));
    }
    problems.extend(candidate_problems(uri, dev_mode));
    problems.sort_by_key(|(i, _)| *i);
    problems
}

/// Validates one pattern and compiles it anchored, or returns every problem found.
fn compile_pattern(pattern: &str, dev_mode: bool) -> Result<Regex, Problems> {
    let mut problems = Vec::new();

    let start = usize::from(pattern.starts_with('^'));
    let mut end = pattern.len();
    if pattern.len() > start && pattern.ends_with('$') {
        // An odd number of backslashes before the "$" escapes it into a literal dollar sign.
        let backslashes = pattern[start..end - 1]
            .bytes()
            .rev()
            .take_while(|&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            end -= 1;
        }
    }
    let body = &pattern[start..end];

    for (i, c) in pattern.char_indices() {
        if c == ',' {
            problems.push((
                i,
                "\",\" separates patterns in Adobe's list, so this pattern would be split here; \
                 rewrite it without a comma (e.g. \"x{1,3}\" as \"(x|xx|xxx)\")"
                    .to_owned(),
            ));
        } else if c.is_whitespace() || c.is_control() {
            problems.push((
                i,
                format!(
                    "whitespace or control character {c:?}; canonical URLs never contain one, remove it"
                ),
            ));
        }
    }

    check_scheme_and_host(body, start, dev_mode, &mut problems);

    match ast::parse::Parser::new().parse(body) {
        Err(e) => problems.push((
            start + e.span().start.offset,
            format!("invalid regex: {}", e.kind()),
        )),
        Ok(tree) => {
            if let Ast::Alternation(alt) = &tree {
                for branch in alt.asts.iter().take(alt.asts.len().saturating_sub(1)) {
                    problems.push((
                        start + branch.span().end.offset,
                        "top-level \"|\" is not allowed: the part after it would match any \
                         URL on its own; put alternatives in a group in the path, e.g. \"/(a|b)\""
                            .to_owned(),
                    ));
                }
            }
            // The "//" of the scheme is not a path: "https://*" is reported as a host wildcard.
            let path_start = body
                .find("://")
                .and_then(|h| body[h + 3..].find('/').map(|p| h + 3 + p))
                .unwrap_or(body.len());
            let found = ast::visit(&tree, PathPitfalls(path_start, Vec::new())).unwrap_or_default();
            problems.extend(found.into_iter().map(|(at, message)| (start + at, message)));
            if let Err(e) = regex_syntax::hir::translate::Translator::new().translate(body, &tree) {
                problems.push((
                    start + e.span().start.offset,
                    format!("invalid regex: {}", e.kind()),
                ));
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|(i, _)| *i);
        return Err(problems);
    }
    // The body parsed as a complete regex on its own, so wrapping it cannot change its grouping.
    RegexBuilder::new(&format!("^(?:{body})$"))
        .build()
        .map_err(|e| vec![(start, format!("cannot be compiled ({e}); simplify it"))])
}

/// Finds constructs that parse but do not mean what they seem: inline flags, which change how
/// the whole pattern matches, and the glob-style `/*`, which as a regex only repeats the `/`.
/// Fields: where the path starts in the body, and the problems found.
struct PathPitfalls(usize, Problems);

impl ast::Visitor for PathPitfalls {
    type Output = Problems;
    type Err = std::convert::Infallible;

    fn finish(self) -> Result<Problems, Self::Err> {
        Ok(self.1)
    }

    fn visit_pre(&mut self, node: &Ast) -> Result<(), Self::Err> {
        let flags_at = match node {
            Ast::Flags(f) => Some(f.span.start.offset),
            Ast::Group(g) => match &g.kind {
                GroupKind::NonCapturing(flags) if !flags.items.is_empty() => {
                    Some(g.span.start.offset)
                }
                _ => None,
            },
            Ast::Repetition(r) => {
                if r.op.kind == ast::RepetitionKind::ZeroOrMore
                    && r.span.start.offset >= self.0
                    && matches!(&*r.ast, Ast::Literal(l) if l.c == '/')
                {
                    self.1.push((
                        r.span.start.offset,
                        "\"/*\" is a regex here and only repeats the \"/\"; for any path below \
                         this point write \"/.*\""
                            .to_owned(),
                    ));
                }
                None
            }
            _ => None,
        };
        if let Some(at) = flags_at {
            self.1.push((
                at,
                "inline flags (such as \"(?i)\") are not allowed: they change how the whole \
                 pattern matches; remove them and write the pattern for the exact, lower-case URL"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Checks the literal `scheme://host[:port]/` prefix of a pattern body. `offset` is where the body
/// starts in the pattern as written, so positions point into what the user typed.
fn check_scheme_and_host(body: &str, offset: usize, dev_mode: bool, problems: &mut Problems) {
    let (scheme, host_start) = if body.starts_with("https://") {
        ("https", 8)
    } else if body.starts_with("http://") {
        if !dev_mode {
            problems.push((
                offset,
                "http:// is not allowed; use https:// (http to localhost needs development mode)"
                    .to_owned(),
            ));
        }
        ("http", 7)
    } else {
        problems.push((
            offset,
            "must start with the literal \"https://\" (lower case, slashes not escaped)".to_owned(),
        ));
        return;
    };

    let section_end = body[host_start..]
        .find('/')
        .map_or(body.len(), |i| host_start + i);
    let section = &body[host_start..section_end];
    let Some(host) = scan_host(section, offset + host_start, problems) else {
        return;
    };

    if scheme == "http" && dev_mode && !LOOPBACK_HOSTS.contains(&host.name.as_str()) {
        problems.push((
            offset + host_start,
            format!(
                "http:// is allowed only for {} in development mode; use https://",
                LOOPBACK_HOSTS.join(", ")
            ),
        ));
    }
    if let Some(port) = host.port {
        let default = if scheme == "https" { 443 } else { 80 };
        if port == default {
            problems.push((
                host.port_at,
                format!(
                    "port {port} is the default for {scheme} and canonical URLs leave it out, so \
                     this would never match; remove \":{port}\""
                ),
            ));
        }
    }
    if section_end == body.len() {
        problems.push((
            offset + section_end,
            "no path; canonical URLs always have one, so add \"/\" (or \"/.*\" for any path)"
                .to_owned(),
        ));
    }
}

struct LiteralHost {
    /// The host with escapes removed, e.g. `app.example.com` or `[::1]`.
    name: String,
    port: Option<u16>,
    /// Position of the `:` before the port in the pattern as written.
    port_at: usize,
}

/// Scans `host[:port]` of a pattern, which must be literal. `offset` is where `section` starts in
/// the pattern as written. Returns `None` when the host is not literal (the problems are
/// recorded), since it cannot be checked further.
fn scan_host(section: &str, offset: usize, problems: &mut Problems) -> Option<LiteralHost> {
    let before = problems.len();
    let mut name = String::new();
    let mut port_at = None;
    let mut port = String::new();
    let mut tail_start = 0;

    if let Some(inner) = section.strip_prefix("\\[") {
        // An escaped IPv6 literal; only hex digits and colons may appear inside.
        let Some(close) = inner.find("\\]") else {
            problems.push((
                offset,
                "unclosed IPv6 literal; write it as \"\\[::1\\]\"".to_owned(),
            ));
            return None;
        };
        let addr = &inner[..close];
        if let Some((i, c)) = addr
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_hexdigit() || *c == ':'))
        {
            problems.push((
                offset + 2 + i,
                format!(
                    "\"{c}\" in an IPv6 host; wildcards are allowed only in the path, write the \
                     address literally"
                ),
            ));
            return None;
        }
        name = format!("[{addr}]");
        tail_start = 2 + close + 2;
        if let Some(c) = section[tail_start..].chars().next()
            && c != ':'
        {
            problems.push((
                offset + tail_start,
                format!("\"{c}\" after the IPv6 host; only \":port\" may follow it"),
            ));
            return None;
        }
    }

    let tail = &section[tail_start..];
    let mut chars = tail.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = offset + tail_start + i;
        let in_port = port_at.is_some();
        let part = if in_port { "port" } else { "host" };
        let next = chars.peek().map(|(_, n)| *n);
        let wildcard = |token: &str| {
            (
                at,
                if in_port {
                    format!(
                        "\"{token}\" in the port; wildcards are not allowed in the port, write the \
                         port number literally"
                    )
                } else {
                    format!(
                        "\"{token}\" in the host; wildcards are allowed only in the path (after the \
                         first \"/\"), write the host literally, e.g. \"app\\.example\\.com\""
                    )
                },
            )
        };
        match c {
            '0'..='9' if in_port => port.push(c),
            ':' if !in_port => port_at = Some(at),
            'a'..='z' | '0'..='9' | '-' if !in_port => name.push(c),
            'A'..='Z' if !in_port => {
                problems.push((
                    at,
                    format!(
                        "upper-case \"{c}\" in the host; canonical URLs have lower-case hosts, so \
                         write \"{}\"",
                        c.to_ascii_lowercase()
                    ),
                ));
                name.push(c.to_ascii_lowercase());
            }
            '\\' if next == Some('.') && !in_port => {
                chars.next();
                name.push('.');
            }
            '\\' => {
                let token: String = tail[i..].chars().take(2).collect();
                problems.push(wildcard(&token));
                return None;
            }
            '.' if matches!(next, Some('*' | '+' | '?' | '{')) => {
                let token: String = tail[i..].chars().take(2).collect();
                problems.push(wildcard(&token));
                return None;
            }
            '.' if !in_port => {
                problems.push((
                    at,
                    "unescaped \".\" in the host (it matches any character); write \"\\.\" to \
                     match a literal dot"
                        .to_owned(),
                ));
                name.push('.');
            }
            '*' | '+' | '?' | '[' | ']' | '(' | ')' | '{' | '}' | '|' | '^' | '$' | '.' => {
                problems.push(wildcard(&c.to_string()));
                return None;
            }
            '@' if !in_port => problems.push((
                at,
                "\"@\" in the host; userinfo is not allowed, write only the host name".to_owned(),
            )),
            // Reported once for the whole pattern by the caller.
            ',' => {}
            c if c.is_whitespace() || c.is_control() => {}
            _ => problems.push((
                at,
                format!(
                    "\"{c}\" is not allowed in the {part}; the host may contain lower-case letters, \
                     digits, \"-\" and \"\\.\" (internationalised names in punycode, \"xn--…\"), \
                     the port only digits"
                ),
            )),
        }
    }

    if name.is_empty() {
        problems.push((
            offset,
            "missing host; write it literally, e.g. \"app\\.example\\.com\"".to_owned(),
        ));
    }
    let port = match port_at {
        None => None,
        Some(at) => match port.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                problems.push((
                    at,
                    "the port must be a number from 0 to 65535 after \":\"".to_owned(),
                ));
                None
            }
        },
    };
    if problems.len() > before {
        return None;
    }

    // A host the URL parser rewrites (e.g. "0x7f.1", "a..b") never appears as written in a
    // canonical URL, so the pattern could never match it.
    let canonical = Url::parse(&format!("https://{name}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    if canonical.as_deref() != Some(name.as_str()) {
        problems.push((
            offset,
            match canonical {
                Some(c) => format!(
                    "host {name:?} is written {c:?} in canonical URLs, so this would never match; \
                     write that instead"
                ),
                None => format!("{name:?} is not a valid host name"),
            },
        ));
        return None;
    }
    Some(LiteralHost {
        name,
        port,
        port_at: port_at.unwrap_or(offset),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "https://data.myapp.com/consent/done";

    fn new(
        default: &str,
        patterns: &[&str],
        dev: bool,
    ) -> Result<RedirectRules, Vec<RuleViolation>> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        RedirectRules::new(default, &patterns, dev)
    }

    /// Expected outcome: no violations, or (field, position, fragment of the message) per violation.
    type Want = &'static [(RuleField, usize, &'static str)];

    fn check(default: &str, patterns: &[&str], dev: bool, want: Want) {
        let got: Vec<RuleViolation> = new(default, patterns, dev).err().unwrap_or_default();
        let summary: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "default {default:?}, patterns {patterns:?}, dev {dev}: got {summary:#?}"
        );
        for (v, (field, position, fragment)) in got.iter().zip(want) {
            assert!(
                v.field == *field && v.position == *position && v.message.contains(fragment),
                "default {default:?}, patterns {patterns:?}: want {field} at {position} \
                 containing {fragment:?}, got {summary:#?}"
            );
        }
    }

    #[test]
    fn pattern_validation_table() {
        const P0: RuleField = RuleField::Pattern(0);
        #[rustfmt::skip]
        let cases: &[(&str, bool, Want)] = &[
            // Adobe's own example, with the wildcard written as a regex.
            (r"https://data\.myapp\.com/redirect/.*", false, &[]),
            // Adobe's example as printed: a glob, which as a regex only repeats the "/".
            (r"https://data\.myapp\.com/redirect/*", false, &[(P0, 33, "\"/*\" is a regex here")]),
            // Other repetitions of "/" are not the glob mistake.
            (r"https://data\.myapp\.com/redirect/x/+", false, &[]),
            // A literal port is fine.
            (r"https://app\.example\.com:8443/cb", false, &[]),
            // User-written anchors are accepted and stripped.
            (r"^https://app\.example\.com/cb$", false, &[]),
            // An escaped "$" at the end is a literal dollar, not an anchor.
            (r"https://app\.example\.com/cb\$", false, &[]),
            // Groups and alternation inside the path are fine.
            (r"https://app\.example\.com/(a|b)/[0-9]+", false, &[]),
            // https://localhost needs no development mode.
            (r"https://localhost:8443/cb", false, &[]),
            // Loopback http in development mode, all three spellings.
            (r"http://localhost:5173/.*", true, &[]),
            (r"http://127\.0\.0\.1:8080/cb", true, &[]),
            (r"http://\[::1\]:8080/cb", true, &[]),
            // Wildcard for the subdomain.
            (r"https://.*\.example\.com/cb", false, &[(P0, 8, "\".*\" in the host")]),
            // Character class for the subdomain.
            (r"https://[a-z]+\.example\.com/", false, &[(P0, 8, "\"[\" in the host")]),
            // Perl class in the port.
            (r"https://app\.example\.com:\d+/cb", false, &[(P0, 26, "\"\\d\" in the port")]),
            // Wildcard in the port.
            (r"https://app\.example\.com:.*/cb", false, &[(P0, 26, "in the port")]),
            // Unescaped dot in the host: each one is reported.
            (r"https://app.example.com/cb", false, &[(P0, 11, "unescaped \".\""), (P0, 19, "unescaped \".\"")]),
            // Position counts the user's "^".
            (r"^https://app.example\.com/cb", false, &[(P0, 12, "unescaped \".\"")]),
            // Upper case in the host can never match a canonical URL.
            (r"https://App\.example\.com/cb", false, &[(P0, 8, "upper-case")]),
            // Inline flags, alone or as a group, anywhere.
            (r"https://app\.example\.com/(?i)cb", false, &[(P0, 26, "inline flags")]),
            (r"https://app\.example\.com/(?i:cb)", false, &[(P0, 26, "inline flags")]),
            // A leading flag is also not the literal https:// prefix.
            (r"(?i)https://app\.example\.com/cb", false, &[(P0, 0, "must start with"), (P0, 0, "inline flags")]),
            // Top-level alternation would let the second branch stand alone.
            (r"https://a\.com/x|https://evil\.com/", false, &[(P0, 16, "top-level \"|\"")]),
            // A stray ")" must not be able to break out of our "^(?:…)$" wrapper.
            (r"https://a\.com/x)|(.*", false, &[(P0, 16, "invalid regex")]),
            // http needs development mode...
            (r"http://localhost:5173/cb", false, &[(P0, 0, "http:// is not allowed")]),
            // ...and even then only to loopback.
            (r"http://app\.example\.com/cb", true, &[(P0, 7, "allowed only for localhost")]),
            // Not https at all.
            (r"ftp://files\.example\.com/", false, &[(P0, 0, "must start with")]),
            (r"https:\/\/app\.example\.com/", false, &[(P0, 0, "must start with")]),
            (r"HTTPS://app\.example\.com/", false, &[(P0, 0, "must start with")]),
            // Invalid regex: position of the unclosed group.
            (r"https://app\.example\.com/(cb", false, &[(P0, 26, "invalid regex")]),
            // Translation errors (unknown Unicode class) are positioned too.
            (r"https://app\.example\.com/\p{Nope}", false, &[(P0, 26, "invalid regex")]),
            // Without a path it could never match: canonical URLs end the host with "/".
            (r"https://app\.example\.com", false, &[(P0, 25, "no path")]),
            // The default port never appears in a canonical URL.
            (r"https://app\.example\.com:443/cb", false, &[(P0, 25, "default for https")]),
            (r"https://app\.example\.com:99999/cb", false, &[(P0, 25, "0 to 65535")]),
            (r"https://app\.example\.com:/cb", false, &[(P0, 25, "0 to 65535")]),
            // Adobe splits its list on commas.
            (r"https://app\.example\.com/x{1,3}", false, &[(P0, 29, "\",\" separates")]),
            // Whitespace can never match a canonical URL.
            ("https://app\\.example\\.com/a b", false, &[(P0, 27, "whitespace")]),
            // Userinfo in the host part.
            (r"https://user@app\.example\.com/", false, &[(P0, 12, "userinfo")]),
            // A host the parser would rewrite can never match as written.
            (r"https://0x7f\.0\.0\.1/", false, &[(P0, 8, "canonical URLs")]),
            (r"https://\[0:0:0:0:0:0:0:1\]/", false, &[(P0, 8, "canonical URLs")]),
            (r"https://\[::1/", false, &[(P0, 8, "unclosed IPv6")]),
            (r"https://\[::1\]x/", false, &[(P0, 15, "after the IPv6 host")]),
            // Non-ASCII hosts must be written in punycode.
            (r"https://bücher\.example/", false, &[(P0, 9, "punycode")]),
            (r"https:///cb", false, &[(P0, 8, "missing host")]),
            (r"", false, &[(P0, 0, "must start with")]),
            (r"^$", false, &[(P0, 1, "must start with")]),
        ];
        for (pattern, dev, want) in cases {
            check(DEFAULT, &[pattern], *dev, want);
        }
    }

    #[test]
    fn default_uri_and_list_table() {
        use RuleField::DefaultRedirectUri as D;
        let long_path = "a".repeat(240);
        let too_long = format!("https://app.example.com/{long_path}");
        let pattern_200 = format!(r"https://app\.example\.com/{}", "b".repeat(174));
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<&str>, bool, Want)> = vec![
            (DEFAULT, vec![], false, &[]),
            ("https://localhost:8000/", vec![], false, &[]),
            ("http://localhost:8000/", vec![], true, &[]),
            ("http://[::1]:8000/cb", vec![], true, &[]),
            // Adobe's example without the root "/": we ask for the canonical spelling.
            ("https://localhost:8000", vec![], false, &[(D, 22, "write \"https://localhost:8000/\"")]),
            (&too_long, vec![], false, &[(D, 256, "at most 256")]),
            ("https://app.example.com/cb/*", vec![], false, &[(D, 27, "wildcard")]),
            (r"https://app\.example\.com/cb", vec![], false, &[(D, 11, "backslash")]),
            ("http://app.example.com/cb", vec![], false, &[(D, 0, "http:// is not allowed")]),
            ("http://app.example.com/cb", vec![], true, &[(D, 0, "allowed only for localhost")]),
            ("/consent/done", vec![], false, &[(D, 0, "not an absolute URL")]),
            ("//app.example.com/cb", vec![], false, &[(D, 0, "not an absolute URL")]),
            ("", vec![], false, &[(D, 0, "empty")]),
            ("https://user@app.example.com/cb", vec![], false, &[(D, 12, "userinfo")]),
            ("https://app.example.com/cb#x", vec![], false, &[(D, 26, "fragment")]),
            // Independent problems are all reported.
            ("https://App.example.com/cb#x", vec![], false, &[(D, 8, "canonical form"), (D, 26, "fragment")]),
            ("https://app.example.com/a/../cb", vec![], false, &[(D, 26, "\"..\"")]),
            ("https://app.example.com/%2e%2e/cb", vec![], false, &[(D, 24, "percent-encoded")]),
            ("https://App.example.com/cb", vec![], false, &[(D, 8, "canonical form")]),
            ("https://app.example.com:443/cb", vec![], false, &[(D, 23, "canonical form")]),
            ("https://app.example.com/c b", vec![], false, &[(D, 25, "whitespace")]),
            // Paths a common server would normalise into another path, each with its position.
            ("https://app.example.com/cb/..;/x", vec![], false, &[(D, 29, "\";\" in the path")]),
            ("https://app.example.com/cb;x=y", vec![], false, &[(D, 26, "\";\" in the path")]),
            ("https://app.example.com//cb", vec![], false, &[(D, 23, "empty path segment")]),
            ("https://app.example.com/cb//", vec![], false, &[(D, 26, "empty path segment")]),
            ("https://app.example.com/%2E%2e/cb", vec![], false, &[(D, 24, "percent-encoded \".\"")]),
            ("https://app.example.com/cb%2F", vec![], false, &[(D, 26, "percent-encoded \".\"")]),
            ("https://app.example.com/cb%5c", vec![], false, &[(D, 26, "percent-encoded \".\"")]),
            ("https://app.example.com/cb%3Bx", vec![], false, &[(D, 26, "percent-encoded \";\"")]),
            ("https://app.example.com/%252e", vec![], false, &[(D, 24, "double encoding")]),
            ("https://app.example.com/cb%00", vec![], false, &[(D, 26, "control character")]),
            ("https://app.example.com/cb%0A", vec![], false, &[(D, 26, "control character")]),
            ("https://app.example.com/cb%7f", vec![], false, &[(D, 26, "control character")]),
            ("https://app.example.com/%c0%ae", vec![], false, &[(D, 24, "not valid UTF-8")]),
            ("https://app.example.com/x%e0%80%ae", vec![], false, &[(D, 25, "not valid UTF-8")]),
            ("https://app.example.com/%zz", vec![], false, &[(D, 24, "invalid percent escape")]),
            ("https://app.example.com/cb%2", vec![], false, &[(D, 26, "invalid percent escape")]),
            ("https://app.example.com/%u002e", vec![], false, &[(D, 24, "invalid percent escape")]),
            // Escaped UTF-8 that is valid is the canonical form of a non-ASCII path.
            ("https://app.example.com/%C3%BC", vec![], false, &[]),
            // 2 × 200 + 1 comma is fine; a third pushes the joined list over 512.
            (DEFAULT, vec![&pattern_200, &pattern_200], false, &[]),
            (DEFAULT, vec![&pattern_200, &pattern_200, &pattern_200], false, &[(RuleField::PatternList, 512, "at most 512")]),
            // Everything is reported at once, default first, then patterns in order.
            ("http://x/", vec![r"https://a\.com/", r"https://a.com/", r"https://*/"], false, &[
                (D, 0, "http://"),
                (RuleField::Pattern(1), 9, "unescaped"),
                (RuleField::Pattern(2), 8, "\"*\" in the host"),
            ]),
        ];
        for (default, patterns, dev, want) in &cases {
            check(default, patterns, *dev, want);
        }
    }

    #[test]
    fn violation_display_names_field_and_position() {
        let errs = new(DEFAULT, &["x", r"https://a.b\.com/"], false)
            .err()
            .unwrap_or_default();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("redirect pattern [0], position 0: must start with"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with(
                "redirect pattern [1], position 9: unescaped \".\" in the host (it matches any \
                 character); write \"\\.\" to match a literal dot"
            ),
            "{shown:#?}"
        );
    }

    #[test]
    fn allows_table() {
        let rules = new(
            DEFAULT,
            &[
                r"https://data\.myapp\.com/redirect/.*",
                r"https://app\.example\.com:8443/cb",
                r"^https://exact\.example\.com/cb$",
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("valid rules refused: {e:?}"));
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            // The default, exactly.
            ("https://data.myapp.com/consent/done", true),
            // The default plus anything is only allowed if a pattern says so.
            ("https://data.myapp.com/consent/done?x=1", false),
            ("https://data.myapp.com/consent/done/", false),
            // Path wildcard.
            ("https://data.myapp.com/redirect/x", true),
            ("https://data.myapp.com/redirect/", true),
            ("https://data.myapp.com/redirect/a/b/c", true),
            // A query is part of the matched string: ".*" allows it, a literal path does not.
            ("https://data.myapp.com/redirect/x?state=1", true),
            ("https://app.example.com:8443/cb?x=1", false),
            // Host suffix trick.
            ("https://data.myapp.com.evil.com/redirect/x", false),
            // Userinfo tricks.
            ("https://data.myapp.com@evil.com/redirect/x", false),
            ("https://evil.com\\@data.myapp.com/redirect/x", false),
            ("https://evil.com/\\@data.myapp.com/redirect/x", false),
            // Encoded dots and slashes, traversal.
            ("https://data.myapp.com/redirect/%2e%2e/admin", false),
            ("https://data.myapp.com/redirect/%2E%2E/admin", false),
            ("https://data.myapp.com/redirect/x%2fy", false),
            ("https://data.myapp.com/redirect/x%5Cy", false),
            ("https://data.myapp.com/redirect/../admin", false),
            ("https://data.myapp.com/redirect/./x", false),
            // Path forms that servers normalise into another path: ";" path parameters...
            ("https://data.myapp.com/redirect/..;/admin", false),
            ("https://data.myapp.com/redirect/x;jsessionid=1", false),
            ("https://data.myapp.com/redirect;x=y/z", false),
            // ...encoded dots, slashes and backslashes in any case, mixed with plain ones...
            ("https://data.myapp.com/redirect/%2e./admin", false),
            ("https://data.myapp.com/redirect/.%2E/admin", false),
            ("https://data.myapp.com/redirect/x%2Fy", false),
            ("https://data.myapp.com/redirect/x%5cy", false),
            // ...encoded ";", double encoding, encoded NUL and control characters...
            ("https://data.myapp.com/redirect/x%3bjsessionid=1", false),
            ("https://data.myapp.com/redirect/%252e%252e/admin", false),
            ("https://data.myapp.com/redirect/%25%32%65", false),
            ("https://data.myapp.com/redirect/x%00.html", false),
            ("https://data.myapp.com/redirect/x%0d%0a", false),
            ("https://data.myapp.com/redirect/x%1F", false),
            ("https://data.myapp.com/redirect/x%7f", false),
            // ...overlong UTF-8 and malformed escapes (IIS's "%u002e" among them)...
            ("https://data.myapp.com/redirect/%c0%ae%c0%ae/admin", false),
            ("https://data.myapp.com/redirect/%c0%af", false),
            ("https://data.myapp.com/redirect/%e0%80%ae", false),
            ("https://data.myapp.com/redirect/%C3", false),
            ("https://data.myapp.com/redirect/%zz", false),
            ("https://data.myapp.com/redirect/x%2", false),
            ("https://data.myapp.com/redirect/%u002e%u002e/admin", false),
            // ...and doubled slashes.
            ("https://data.myapp.com/redirect//evil", false),
            ("https://data.myapp.com/redirect/x//", false),
            // Harmless escapes and a ";" in the query are still fine.
            ("https://data.myapp.com/redirect/%C3%BC", true),
            ("https://data.myapp.com/redirect/a%20b", true),
            ("https://data.myapp.com/redirect/x?a=1;b=2", true),
            // Escapes in the query do not steer the path, so they are not refused.
            ("https://data.myapp.com/redirect/x?next=%2Fhome%3Bx%25", true),
            ("https://data.myapp.com/redirect/x%2Fy?next=ok", false),
            // Not canonical: upper-case host or scheme, default port, IDN not in punycode.
            ("https://DATA.myapp.com/redirect/x", false),
            ("HTTPS://data.myapp.com/redirect/x", false),
            ("https://data.myapp.com:443/redirect/x", false),
            ("https://dätä.myapp.com/redirect/x", false),
            // Fragment.
            ("https://data.myapp.com/redirect/x#frag", false),
            // Anchoring: nothing before or after.
            ("https://exact.example.com/cb", true),
            ("https://exact.example.com/cb/extra", false),
            ("https://exact.example.com/cbx", false),
            ("https://app.example.com:8443/cb/../cb", false),
            // Escaped dots are literal dots.
            ("https://dataXmyapp.com/redirect/x", false),
            ("https://data.myappXcom/redirect/x", false),
            // Ports must match exactly.
            ("https://app.example.com:8443/cb", true),
            ("https://app.example.com/cb", false),
            ("https://app.example.com:9443/cb", false),
            // Scheme: https only without development mode.
            ("http://data.myapp.com/redirect/x", false),
            ("http://localhost/redirect/x", false),
            // Case-sensitive path.
            ("https://data.myapp.com/REDIRECT/x", false),
            // Whitespace and control characters (the url crate would drop tabs and newlines).
            ("https://data.myapp.com/redirect/a b", false),
            ("https://data.myapp.com/redi\trect/x", false),
            ("https://data.myapp.com/redirect/x\n", false),
            (" https://data.myapp.com/redirect/x", false),
            // Not absolute or not a URL.
            ("//data.myapp.com/redirect/x", false),
            ("/redirect/x", false),
            ("https:data.myapp.com/redirect/x", false),
            ("javascript:alert(1)//https://data.myapp.com/redirect/x", false),
            ("", false),
        ];
        for (uri, want) in cases {
            assert_eq!(rules.allows(uri), *want, "allows({uri:?})");
        }
    }

    #[test]
    fn dev_mode_allows_loopback_http_only() {
        let patterns = [r"http://localhost:5173/.*", r"https://app\.example\.com/cb"];
        assert!(new("http://localhost:5173/", &patterns, false).is_err());
        let rules = new("http://localhost:5173/", &patterns, true)
            .unwrap_or_else(|e| panic!("dev rules refused: {e:?}"));
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            ("http://localhost:5173/", true),
            ("http://localhost:5173/cb", true),
            ("http://localhost:5174/cb", false),
            // Loopback by another name is still a different string.
            ("http://127.0.0.1:5173/cb", false),
            ("http://app.example.com/cb", false),
            ("https://app.example.com/cb", true),
        ];
        for (uri, want) in cases {
            assert_eq!(rules.allows(uri), *want, "allows({uri:?})");
        }
    }

    #[test]
    fn nothing_panics_on_odd_input() {
        let odd = [
            "\\",
            "^",
            "$",
            "^\\$",
            "\\\\$",
            "https://\\",
            "https://\\[",
            "https://\\[\\]",
            "https://a\\",
            "https://a:",
            "https://ü",
            "https://%",
            "https://a\u{0}/",
            "%",
            "%2",
            "https://x/%",
            "https://x/%e2%82",
            "(((((",
            "https://a\\.com/\\",
            "https://a\\.com/(?",
        ];
        for s in odd {
            let _ = new(s, &[s], true);
            let _ = new(s, &[s], false);
        }
        let rules = new(DEFAULT, &[r"https://data\.myapp\.com/.*"], false)
            .unwrap_or_else(|e| panic!("{e:?}"));
        for s in odd {
            let _ = rules.allows(s);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_regex_and_url_soup(
            s in r"(\^?https?://)?[a-zA-Z0-9.\\/:*+?()\[\]{}|^$%@#, ü\t-]{0,40}"
        ) {
            let _ = new(&s, &[s.as_str()], true);
            let _ = new(&s, &[s.as_str()], false);
            if let Ok(rules) = new(DEFAULT, &[r"https://data\.myapp\.com/.*"], true) {
                let _ = rules.allows(&s);
            }
        }
    }
}

#[cfg(test)]
mod explicit_redirect_tests {
    use super::RedirectRules;

    #[test]
    fn only_pattern_matches_may_be_sent_explicitly() {
        let rules = RedirectRules::new(
            "https://app.example.com/default",
            &[r"https://app\.example\.com/cb/.*".to_owned()],
            false,
        )
        .unwrap();
        for (uri, allows, explicit) in [
            ("https://app.example.com/default", true, false),
            ("https://app.example.com/cb/x", true, true),
            ("https://app.example.com/cb/../default", false, false),
            ("https://app.example.com/other", false, false),
        ] {
            assert_eq!(rules.allows(uri), allows, "{uri}");
            assert_eq!(rules.matches_pattern(uri), explicit, "{uri}");
        }
    }
}
