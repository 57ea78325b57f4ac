//! Parsing one line into an internal message (borrowed, no allocation for the common ones)
//! or a user message (§3.3).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Every field a `NODE_*` message may carry. Unknown fields are ignored, as Node ignores them.
#[derive(Debug, Default, Deserialize)]
pub struct Msg<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub cmd: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub act: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(default)]
    pub ack: Option<i64>,
    #[serde(default)]
    pub accepted: Option<bool>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub key: Option<Cow<'a, str>>,
    #[serde(default)]
    pub errno: Option<i64>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub address: Option<Cow<'a, str>>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(rename = "addressType", borrow, default)]
    pub address_type: Option<&'a RawValue>,
    #[serde(default)]
    pub index: Option<i64>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(default)]
    pub fd: Option<i64>,
    #[serde(default)]
    pub flags: Option<i64>,
    #[serde(borrow, default)]
    pub backlog: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub sockname: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default, deserialize_with = "opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub msg: Option<&'a RawValue>,
    /// libcluster's extension in `queryServer`: connections the worker takes in flight.
    #[serde(rename = "libclusterInflight", default)]
    pub inflight: Option<i64>,
    /// libcluster's extension: in `queryServer`, the fast lane is wanted (`wire::LANE_*`
    /// bits); in the reply, the fd that came with it is the lane.
    #[serde(rename = "libclusterLane", default)]
    pub lane: Option<i64>,
    /// `queryServer` for a pipe: Node's `readableAll` / `writableAll` listen options
    /// (anything but `true` is false, as Node reads them).
    #[serde(rename = "readableAll", borrow, default)]
    pub readable_all: Option<&'a RawValue>,
    #[serde(rename = "writableAll", borrow, default)]
    pub writable_all: Option<&'a RawValue>,
}

/// Whether an optional raw JSON field is exactly `true`.
pub fn is_true(v: Option<&RawValue>) -> bool {
    v.is_some_and(|v| v.get() == "true")
}

/// `Option<Cow<str>>` that borrows from the line when the string has no escapes. (serde's
/// own `Option<Cow<str>>` always allocates — serde#1497 — and this runs for every ack on
/// the primary's hot path.)
fn opt_cow<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_str(V)
        }
    }
    d.deserialize_option(V)
}

impl Msg<'_> {
    pub fn cmd(&self) -> &str {
        self.cmd.as_deref().unwrap_or("")
    }
    pub fn act(&self) -> &str {
        self.act.as_deref().unwrap_or("")
    }
}

/// What a line turned out to be.
#[allow(clippy::large_enum_variant, reason = "short-lived return value; a Box would allocate per message")]
#[derive(Debug)]
pub enum Parsed<'a> {
    /// `cmd` starts with `NODE_` and is longer than 5 characters.
    Internal(Msg<'a>),
    /// Any other valid JSON value: delivered to the user as text.
    User,
}

/// Node's internal-message test (§3.3).
pub fn is_internal_cmd(cmd: &str) -> bool {
    cmd.len() > 5 && cmd.starts_with("NODE_")
}

/// Parses one line. Invalid JSON, or an internal message whose fields have the wrong types,
/// is a protocol error.
pub fn parse(line: &[u8]) -> Result<Parsed<'_>> {
    if let Some(m) = super::hot_lines::parse(line) {
        return Ok(Parsed::Internal(m));
    }
    // Only an object can be an internal message (serde would also read `Msg` from an array,
    // field by field: `["NODE_CLUSTER","queryServer",1]` is a user's array, as in Node).
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .map(|_| Parsed::User)
            .map_err(|e| Error::protocol(format!("invalid JSON from peer: {e}")));
    }
    match serde_json::from_slice::<Msg<'_>>(line) {
        Ok(m) if m.cmd.as_deref().is_some_and(is_internal_cmd) => Ok(Parsed::Internal(m)),
        Ok(_) => Ok(Parsed::User),
        Err(typed) => {
            // Not read as a generic value (which fails on numbers beyond f64 and on lone
            // surrogates, both valid JSON a peer may send, and rebuilds the text): checked,
            // then only `cmd` is looked at, as JSON.parse would see it (issue 12).
            serde_json::from_slice::<serde::de::IgnoredAny>(line).map_err(|e| Error::protocol(format!("invalid JSON from peer: {e}")))?;
            let internal = super::user_json::has_internal_cmd(line).map_err(|e| Error::protocol(format!("invalid JSON from peer: {e}")))?;
            if internal { Err(Error::protocol(format!("malformed internal message: {typed}"))) } else { Ok(Parsed::User) }
        }
    }
}

/// Whether a line is a `NODE_HANDLE` envelope (only `cmd` is looked at), to bind a pending
/// fd to it.
pub fn is_handle_line(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct CmdOnly<'a> {
        #[serde(borrow, default)]
        cmd: Option<Cow<'a, str>>,
    }
    // An object only (serde would read `CmdOnly` from `["NODE_HANDLE"]` too).
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<CmdOnly<'_>>(line).is_ok_and(|m| m.cmd.as_deref() == Some("NODE_HANDLE"))
}

/// Reads a JSON integer or `false`/`null`/absent (Node's `backlog`), giving `None` for the latter.
pub fn int_or_none(v: Option<&RawValue>) -> Result<Option<i64>> {
    let Some(v) = v else { return Ok(None) };
    match serde_json::from_str::<serde_json::Value>(v.get()) {
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => Err(Error::protocol("a number field is not an integer")),
        },
        Ok(serde_json::Value::Null) | Ok(serde_json::Value::Bool(false)) => Ok(None),
        _ => Err(Error::protocol("a number field has the wrong type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_messages_borrow_their_strings() {
        let Parsed::Internal(m) = parse(br#"{"cmd":"NODE_CLUSTER","act":"close","key":"k:1","address":null,"seq":3}"#).unwrap() else {
            panic!()
        };
        assert!(matches!(m.cmd, Some(Cow::Borrowed("NODE_CLUSTER"))));
        assert!(matches!(m.key, Some(Cow::Borrowed("k:1"))));
        assert_eq!(m.address, None);
        // Escapes still parse (owned).
        let Parsed::Internal(m) = parse(br#"{"cmd":"NODE_CLUSTER","key":"a\"b"}"#).unwrap() else { panic!() };
        assert_eq!(m.key.as_deref(), Some("a\"b"));
    }

    #[test]
    fn classifies_lines() {
        let m = match parse(br#"{"cmd":"NODE_CLUSTER","ack":2,"accepted":true,"seq":3}"#).unwrap() {
            Parsed::Internal(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!((m.ack, m.accepted, m.seq), (Some(2), Some(true), Some(3)));
        assert!(matches!(parse(br#"{"cmd":"NODE_"}"#).unwrap(), Parsed::User));
        assert!(matches!(parse(br#""done""#).unwrap(), Parsed::User));
        assert!(matches!(parse(br#"[1,2]"#).unwrap(), Parsed::User));
        assert!(matches!(parse(br#"["NODE_CLUSTER","queryServer",1]"#).unwrap(), Parsed::User), "an array is never internal");
        assert!(matches!(parse(br#" ["NODE_HANDLE_ACK"]"#).unwrap(), Parsed::User));
        assert!(!is_handle_line(br#"["NODE_HANDLE"]"#), "an array never binds an fd");
        assert!(is_handle_line(br#"{"cmd":"NODE_HANDLE","type":"net.Native"}"#));
        assert!(matches!(parse(br#"{"cmd":"hello","seq":"x"}"#).unwrap(), Parsed::User));
        assert!(parse(br#"{"cmd":"NODE_CLUSTER","seq":"x"}"#).is_err());
        assert!(parse(b"{nope").is_err());
    }

    #[test]
    fn user_objects_the_typed_read_refuses_are_still_user_messages() {
        // A field Msg types, holding what only a generic value could not hold: still valid
        // JSON a Node peer may send, so delivered (before issue 12: a protocol error).
        for line in [
            &br#"{"seq":1e400}"#[..],
            br#"{"cmd":"x\ud800"}"#,
            br#"{"key":"\udc00"}"#,
            br#"{"port":123456789012345678901234567890}"#,
            br#"{"cmd":"NODE_CLUSTER","cmd":"x"}"#,
            br#"{"cmd":"x","seq":"y","n":1e400}"#,
        ] {
            assert!(matches!(parse(line), Ok(Parsed::User)), "{}", String::from_utf8_lossy(line));
        }
        // Internal, as JSON.parse sees it, but malformed: an error.
        for line in
            [&br#"{"cmd":"NODE_CLUSTER","seq":1e400}"#[..], br#"{"cmd":"x","cmd":"NODE_CLUSTER","seq":"y"}"#, br#"{"cmd":"NODE_\ud800"}"#]
        {
            assert!(parse(line).is_err(), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn reads_handle_envelope_and_query() {
        let line = br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"k","seq":2}}"#;
        let Parsed::Internal(m) = parse(line).unwrap() else { panic!() };
        assert_eq!(m.kind.as_deref(), Some("net.Native"));
        let Parsed::Internal(inner) = parse(m.msg.unwrap().get().as_bytes()).unwrap() else { panic!() };
        assert_eq!((inner.act(), inner.key.as_deref(), inner.seq), ("newconn", Some("k"), Some(2)));
        let q = br#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":null,"port":0,"addressType":4,"backlog":false,"seq":1}"#;
        let Parsed::Internal(q) = parse(q).unwrap() else { panic!() };
        assert_eq!(q.address, None);
        assert_eq!(int_or_none(q.backlog).unwrap(), None);
        assert_eq!(q.address_type.unwrap().get(), "4");
    }
}
