//! `Retry-After` parsing: delta-seconds or an HTTP date, resolved against a passed-in `now`.

use std::time::{Duration, SystemTime};

/// The longest wait we will honour from a server; anything larger is treated as this much so a
/// hostile or buggy header cannot park a credential for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses a `Retry-After` value. Returns `None` for values that are neither form.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // Very long digit strings overflow u64; they mean "a long time", so cap rather than drop.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date_in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let date_past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("7", Some(7)),
            (" 30 ", Some(30)),
            ("99999999999999999999999", Some(3600)),
            ("86400", Some(3600)),
            (&date_in_90s, Some(90)),
            (&date_past, Some(0)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input, now).map(|d| d.as_secs()),
                *want,
                "input {input:?}"
            );
        }
    }
}
