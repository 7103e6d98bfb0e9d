//! A tiny JSON value type and serialiser, so the checker needs no serde.

use std::fmt::Write as _;

/// A JSON value, rendered compactly by [`Json::render`].
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys keep insertion order so the output is stable and readable.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Builds a string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// Builds an object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Renders the value as compact JSON text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::UInt(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Str(s) => escape_into(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Json::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape_into(k, out);
                    out.push(':');
                    v.write_to(out);
                }
                out.push('}');
            }
        }
    }
}

impl From<Option<Json>> for Json {
    fn from(v: Option<Json>) -> Json {
        v.unwrap_or(Json::Null)
    }
}

/// Appends `s` to `out` as a quoted JSON string (RFC 8259 escaping).
pub fn escape_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Returns `s` as a quoted JSON string.
#[cfg(test)]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    escape_into(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_and_backslashes() {
        assert_eq!(escape(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("\n\r\t\u{08}\u{0c}"), r#""\n\r\t\b\f""#);
        assert_eq!(escape("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
    }

    #[test]
    fn keeps_unicode_and_slash() {
        assert_eq!(escape("/é☃"), "\"/é☃\"");
    }

    #[test]
    fn renders_nested_values() {
        let v = Json::obj([
            (
                "a",
                Json::Arr(vec![Json::Int(-1), Json::UInt(u64::MAX), Json::Null]),
            ),
            (
                "b",
                Json::obj([("c", Json::Bool(true)), ("d", Json::str("x"))]),
            ),
        ]);
        assert_eq!(
            v.render(),
            r#"{"a":[-1,18446744073709551615,null],"b":{"c":true,"d":"x"}}"#
        );
    }

    #[test]
    fn renders_empty_containers() {
        assert_eq!(Json::Arr(vec![]).render(), "[]");
        assert_eq!(Json::Obj(vec![]).render(), "{}");
    }
}
