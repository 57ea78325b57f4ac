//! The two lines Node's path carries once per connection — the worker's answer to a
//! `newconn` and a `NODE_HANDLE_ACK` — recognised by their exact bytes (Node writes
//! `{cmd, ack, accepted, seq}` in that order, as we do) without the generic JSON parser.
//! Anything else, including any variation of these, goes to the JSON parser.

use std::borrow::Cow;

use super::message::Msg;

/// The message, when `line` (with or without its newline) is exactly one of the hot lines.
pub fn parse(line: &[u8]) -> Option<Msg<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line == br#"{"cmd":"NODE_HANDLE_ACK"}"# {
        return Some(Msg { cmd: Some(Cow::Borrowed("NODE_HANDLE_ACK")), ..Msg::default() });
    }
    let rest = line.strip_prefix(br#"{"cmd":"NODE_CLUSTER","ack":"#)?;
    let (ack, rest) = int(rest)?;
    let (accepted, rest) = match rest.strip_prefix(br#","accepted":true"#) {
        Some(r) => (true, r),
        None => (false, rest.strip_prefix(br#","accepted":false"#)?),
    };
    let (seq, rest) = int(rest.strip_prefix(br#","seq":"#)?)?;
    (rest == b"}").then(|| Msg {
        cmd: Some(Cow::Borrowed("NODE_CLUSTER")),
        ack: Some(ack),
        accepted: Some(accepted),
        seq: Some(seq),
        ..Msg::default()
    })
}

/// A JSON integer as serde reads it into an `i64` (no leading zeros, at most 18 digits so
/// it cannot overflow), and the rest.
fn int(b: &[u8]) -> Option<(i64, &[u8])> {
    let (neg, digits) = match b.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, b),
    };
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    // serde reads `-0` as a float, not an i64: leave it (and every other doubt) to serde.
    if n == 0 || n > 18 || (n > 1 && digits[0] == b'0') || (neg && digits[0] == b'0') {
        return None;
    }
    let v = digits[..n].iter().fold(0i64, |v, &c| v * 10 + (c - b'0') as i64);
    Some((if neg { -v } else { v }, &digits[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::message::{self as message, Parsed};

    /// The fast path says what the JSON parser says, and declines everything else.
    #[test]
    fn agrees_with_the_json_parser_and_declines_the_rest() {
        let hot: &[&[u8]] = &[
            b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":2,\"accepted\":true,\"seq\":3}\n",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":0,\"accepted\":false,\"seq\":123456789012345678}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":-4,\"accepted\":true,\"seq\":0}",
        ];
        for line in hot {
            let fast = parse(line).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(line)));
            let Parsed::Internal(slow) = message::parse(line).unwrap() else { panic!() };
            assert_eq!(
                (fast.cmd(), fast.act(), fast.ack, fast.accepted, fast.seq, fast.key.is_none()),
                (slow.cmd(), slow.act(), slow.ack, slow.accepted, slow.seq, slow.key.is_none())
            );
        }
        let other: &[&[u8]] = &[
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":02,\"accepted\":true,\"seq\":3}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":2,\"accepted\":true,\"seq\":3,\"x\":1}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":2,\"accepted\":1,\"seq\":3}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":1234567890123456789,\"accepted\":true,\"seq\":3}",
            b"{\"cmd\":\"NODE_CLUSTER\", \"ack\":2,\"accepted\":true,\"seq\":3}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":2,\"accepted\":true,\"seq\":}",
            b"{\"cmd\":\"NODE_HANDLE_ACK\"} ",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":-0,\"accepted\":true,\"seq\":3}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}",
        ];
        for line in other {
            assert!(parse(line).is_none(), "{}", String::from_utf8_lossy(line));
        }
    }
}
