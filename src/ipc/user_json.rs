//! A user message's JSON text, passed through: validated, never rebuilt (issue 12).
//!
//! The text a program sends is the text its peer receives, whatever the two languages: key
//! order, number text (`123456789012345678901234567890`, `-0`, `1e400`, `1.0`) and string
//! escapes (`"\u00e9"`, `"\/"`) are kept byte for byte. Only whitespace outside strings is
//! removed, which makes the message one line: JSON allows no raw control character inside a
//! string, so no newline is left, and a valid value is never blank. What a receiving
//! language then makes of the text is its own parser's business (Node's `JSON.parse` turns
//! a large integer into a Number, as it does between two Node processes).
//!
//! Node's rule for what is internal (`isInternal` in `lib/internal/child_process.js`) is
//! applied the way `JSON.parse` would see the value: an object (never an array) whose `cmd`
//! is a string longer than `NODE_` that starts with it, the last `cmd` winning when a key is
//! repeated, escapes decoded, and a lone surrogate (which `JSON.stringify` writes as
//! `"\ud800"`) no obstacle.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Checks a user message and returns it as one JSON line (with `\n`): the same bytes with
/// whitespace outside strings removed. Any JSON value is allowed except an object whose
/// `cmd` is internal (`NODE_...`), which a peer would take for a protocol message.
/// Errors: `-EINVAL` for empty or invalid JSON and for a reserved `cmd`.
pub fn user_line(json: &str) -> Result<Vec<u8>> {
    let bytes = json.as_bytes();
    serde_json::from_slice::<IgnoredAny>(bytes).map_err(|e| Error::errno(libc::EINVAL, format!("message is not valid JSON: {e}")))?;
    let internal = has_internal_cmd(bytes).map_err(|e| Error::errno(libc::EINVAL, format!("message is not valid JSON: {e}")))?;
    if internal {
        return Err(Error::errno(libc::EINVAL, "messages whose cmd starts with NODE_ are reserved for the protocol"));
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    strip_whitespace(bytes, &mut out);
    out.push(b'\n');
    Ok(out)
}

/// Appends `json` (valid JSON) to `out` without the whitespace outside its strings. Inside
/// a string every byte is kept; `\"` and `\\` do not end it.
pub fn strip_whitespace(json: &[u8], out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
            in_string = b == b'"';
        }
    }
}

/// Whether `json` (valid JSON) is a message Node would take for an internal one: an object
/// whose last `cmd` is a string that `message::is_internal_cmd` accepts. Only `cmd` is decoded; other
/// members are skipped unread. `Err` only for text that is not valid JSON.
pub fn has_internal_cmd(json: &[u8]) -> serde_json::Result<bool> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(false); // Node: an array has no `cmd`, nor has a string or a number.
    }
    let LastCmd(cmd) = serde_json::from_slice(json)?;
    // `is_internal_cmd` on the decoded bytes, which need not be UTF-8 (a lone surrogate):
    // more than 5 bytes after the prefix test means a character after `NODE_`, as Node's
    // length test on UTF-16 units.
    Ok(cmd.is_some_and(|c| c.len() > 5 && c.starts_with(b"NODE_")))
}

/// An object's last `cmd` member, as the decoded bytes of a string; `None` if it has none or
/// it is not a string.
struct LastCmd(Option<Vec<u8>>);

/// A JSON string decoded to bytes without the UTF-8 check (serde_json's `deserialize_bytes`),
/// so a lone surrogate escape is not an error.
struct StrBytes(Vec<u8>);

impl<'de> Deserialize<'de> for StrBytes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<StrBytes, E> {
                Ok(StrBytes(v.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl<'de> Deserialize<'de> for LastCmd {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LastCmd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<LastCmd, A::Error> {
                let mut cmd = None;
                while let Some(StrBytes(key)) = map.next_key()? {
                    if key != b"cmd" {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    // The raw text first: a `cmd` that is not a string is skipped, not an error.
                    let raw: &RawValue = map.next_value()?;
                    cmd = if raw.get().starts_with('"') {
                        let StrBytes(s) =
                            StrBytes::deserialize(&mut serde_json::Deserializer::from_str(raw.get())).map_err(de::Error::custom)?;
                        Some(s)
                    } else {
                        None
                    };
                }
                Ok(LastCmd(cmd))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> String {
        String::from_utf8(user_line(json).unwrap()).unwrap()
    }

    fn refused(json: &str) {
        let e = user_line(json).unwrap_err();
        assert_eq!(e.code, -libc::EINVAL, "{json:?}: {}", e.message);
    }

    #[test]
    fn key_order_is_kept() {
        assert_eq!(line(r#"{"z":1,"a":2,"m":{"b":1,"a":2}}"#), "{\"z\":1,\"a\":2,\"m\":{\"b\":1,\"a\":2}}\n");
        // A repeated key stays too (JSON.parse keeps the last; the text is not ours to fix).
        assert_eq!(line(r#"{"a":1,"a":2}"#), "{\"a\":1,\"a\":2}\n");
    }

    #[test]
    fn number_text_is_kept() {
        for n in [
            "123456789012345678901234567890",
            "9223372036854775809",
            "-9223372036854775809",
            "18446744073709551617",
            "-0",
            "1e400",
            "-1E-400",
            "1.0",
            "0.1",
            "1.5e+3",
            "3.141592653589793238462643383279",
        ] {
            assert_eq!(line(n), format!("{n}\n"));
            let obj = format!("{{\"n\":{n},\"l\":[{n}, {n}]}}");
            assert_eq!(line(&obj), format!("{{\"n\":{n},\"l\":[{n},{n}]}}\n"));
        }
    }

    #[test]
    fn string_escapes_are_kept() {
        let s = r#""\u00e9\ud83d\ude00\"\\/\/\b\f\n\r\t\u0000\u001F é😀""#;
        assert_eq!(line(s), format!("{s}\n"));
        let obj = r#"{"\u0063md":"x","s\"k":"v\\","e":"\\"}"#;
        assert_eq!(line(obj), format!("{obj}\n"));
        // A lone surrogate, as JSON.stringify writes one.
        assert_eq!(line(r#"["\ud800","\udc00x"]"#), "[\"\\ud800\",\"\\udc00x\"]\n");
    }

    #[test]
    fn whitespace_inside_strings_is_kept_and_outside_removed() {
        assert_eq!(line("{ \"a\" :\n [1, 2] }"), "{\"a\":[1,2]}\n");
        assert_eq!(line(" \t\r\n{ \"a b\" : \" x  y \" ,\"c\":\"\\\" }\" }\r\n "), "{\"a b\":\" x  y \",\"c\":\"\\\" }\"}\n");
        assert_eq!(line("[ \"\\\\\" , \" \" ]"), "[\"\\\\\",\" \"]\n");
        assert_eq!(line("  \"done\"  "), "\"done\"\n");
        assert_eq!(line(" true"), "true\n");
    }

    #[test]
    fn nested_values() {
        let deep = r#"{"a":[{"b":{"c":[1,{"d":"}{]["}]}},[],{}],"e":null,"f":false}"#;
        assert_eq!(line(deep), format!("{deep}\n"));
        let spaced = "{ \"a\" : [ { \"b\" : { \"c\" : [ 1 , { \"d\" : \"}{ ][\" } ] } } , [ ] , { } ] }";
        assert_eq!(line(spaced), "{\"a\":[{\"b\":{\"c\":[1,{\"d\":\"}{ ][\"}]}},[],{}]}\n");
    }

    #[test]
    fn invalid_json_is_refused() {
        for bad in [
            "",
            " ",
            "\n",
            "{",
            "{\"a\":1",
            "{\"a\":1}}",
            "[1,]",
            "{\"a\":1,}",
            "nope",
            "01",
            "1.",
            "+1",
            "NaN",
            "'a'",
            "\"raw\nnewline\"",
            "\"tab\tinside\"",
            "\"\\x\"",
            "\"\\u12\"",
            "{\"a\":1}\n{\"b\":2}",
            "1 2",
        ] {
            refused(bad);
        }
    }

    #[test]
    fn internal_cmds_are_refused_in_objects_only() {
        refused(r#"{"cmd":"NODE_CLUSTER"}"#);
        refused(r#"{"a":{"cmd":"x"},"cmd":"NODE_HANDLE","b":[1]}"#);
        refused(r#" {"cmd" : "NODE_X"}"#);
        refused(r#"{"\u0063md":"\u004eODE_CLUSTER"}"#); // what JSON.parse sees
        refused(r#"{"cmd":"x","cmd":"NODE_CLUSTER"}"#); // the last one wins
        refused(r#"{"cmd":"NODE_\ud800"}"#);
        refused(r#"{"k\udc00":1,"cmd":"NODE_X"}"#);
        // Not internal, as in Node.
        for ok in [
            r#"{"cmd":"NODE_"}"#,
            r#"{"cmd":"NODE_CLUSTER","cmd":"x"}"#,
            r#"{"cmd":["NODE_CLUSTER"]}"#,
            r#"{"cmd":5}"#,
            r#"{"cmd":null}"#,
            r#"{"CMD":"NODE_CLUSTER"}"#,
            r#"{"a":{"cmd":"NODE_CLUSTER"}}"#,
            r#"["NODE_CLUSTER"]"#,
            r#"[{"cmd":"NODE_CLUSTER"}]"#,
            r#""NODE_CLUSTER""#,
            r#"{"cmd":"node_cluster"}"#,
            r#"{"cmd":"\ud800NODE_X"}"#,
        ] {
            assert_eq!(line(ok), format!("{ok}\n"));
        }
    }

    #[test]
    fn has_internal_cmd_reads_like_json_parse() {
        assert!(has_internal_cmd(br#"{"seq":1e400,"cmd":"NODE_CLUSTER"}"#).unwrap());
        assert!(!has_internal_cmd(br#"{"seq":1e400,"cmd":"hello"}"#).unwrap());
        assert!(!has_internal_cmd(br#"[1e400]"#).unwrap());
        assert!(has_internal_cmd(b"{nope").is_err());
    }
}
