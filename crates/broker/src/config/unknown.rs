//! Unknown keys, reported as an operator wrote them: the full path (`client_token.caller_auth.
//! audiance`, `credentials.sa.keys[1].certficate`), the line, and a "did you mean" for a near
//! miss among the keys valid at that place.
//!
//! The valid keys come from the raw serde structs themselves (the field list serde's derive hands
//! to `deserialize_struct`), so a key added to a struct is known here without another list; only
//! which struct sits at which table is written down, in [`fields_at`].

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// The path serde_ignored reports, without its `?` markers for `Option`s and newtypes.
pub(super) fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Seg::Index(*index));
                cur = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Seg::Key(key.clone()));
                cur = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}

/// `a.b[0].c`, with keys that are not bare TOML keys quoted.
pub(super) fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    s.push_str(k);
                } else {
                    s.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The 1-based line where the key at `path` is written, found by walking a spanned parse.
pub(super) fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut value: Option<&DeValue<'_>> = None;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut start = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if let Some(v) = value {
                    table = match v {
                        DeValue::Table(t) => t,
                        _ => return None,
                    };
                }
                let (key, v) = table.iter().find(|(key, _)| key.get_ref().as_ref() == k)?;
                start = Some(key.span().start);
                value = Some(v.get_ref());
            }
            Seg::Index(i) => match value? {
                DeValue::Array(items) => {
                    let item = items.get(*i)?;
                    start = Some(item.span().start);
                    value = Some(item.get_ref());
                }
                _ => return None,
            },
        }
    }
    Some(text[..start?].matches('\n').count() + 1)
}

/// The keys valid in the table at `parent`, from the raw struct deserialized there.
fn fields_at(parent: &[Seg]) -> Option<&'static [&'static str]> {
    use Seg::{Index, Key};
    let names: Vec<Option<&str>> = parent
        .iter()
        .map(|s| match s {
            Key(k) => Some(k.as_str()),
            Index(_) => None,
        })
        .collect();
    Some(match names.as_slice() {
        [] => fields::<super::RawConfig>(),
        [Some("server")] => fields::<super::RawServer>(),
        [Some("ims")] => fields::<super::RawIms>(),
        [Some("refresh")] => fields::<super::RawRefresh>(),
        [Some("credentials"), Some(_)] => fields::<super::RawCredential>(),
        [Some("credentials"), Some(_), Some("keys"), None] => {
            fields::<super::service_account::RawKey>()
        }
        [Some("client_token")] => fields::<super::RawClientToken>(),
        [Some("client_token"), Some("caller_auth")] => fields::<super::RawCallerAuth>(),
        [Some("client_token"), Some("rate_limit")] => fields::<super::RawRateLimit>(),
        [Some("consent")] => fields::<super::consent::RawConsent>(),
        [Some("internal_api")] => fields::<super::consent::RawInternalApi>(),
        [Some("storage")] => fields::<super::consent::RawStorage>(),
        [Some("keystore")] => fields::<super::keystore::RawKeystore>(),
        [Some("user_login")] => fields::<super::user_login::RawUserLogin>(),
        _ => return None,
    })
}

/// The closest valid key to `unknown` at `parent`, if it is close enough to be a typo.
pub(super) fn suggestion(parent: &[Seg], unknown: &str) -> Option<&'static str> {
    let valid = fields_at(parent)?;
    valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(unknown, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 4) && *d < v.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// One message for an unknown key.
pub(super) fn message(text: &str, path: &serde_ignored::Path<'_>) -> String {
    let segs = segments(path);
    let at = line_of(text, &segs)
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    let hint = match segs.split_last() {
        Some((Seg::Key(k), parent)) => suggestion(parent, k),
        _ => None,
    };
    let hint = match hint {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; see docs/configuration.md for the keys".to_owned(),
    };
    format!("unknown key `{}`{at}{hint}", display(&segs))
}

/// The field names serde's derive passes to `deserialize_struct` for `T`.
fn fields<T: Deserialize<'static>>() -> &'static [&'static str] {
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldsProbe(&mut out));
    out
}

/// A deserializer that only records the field list of the struct asked of it, then stops.
struct FieldsProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldsProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
