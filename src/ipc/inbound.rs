//! Node's channel rules for a received line, the same for both roles (§3.3, §4.2): what the
//! line is, and the control reply (`NODE_HANDLE_ACK` / `NACK`) the rules require. No I/O:
//! the primary's distributor and the worker's reader thread each write the reply and act on
//! the line their own way (the primary requeues a nacked connection; the worker may let the
//! ACK for a `newconn` ride with its `accepted` reply).
//!
//! The rules:
//! - a user message (§3.3) is delivered as text; an fd with it is a protocol error;
//! - `NODE_HANDLE` without an fd is answered with a NACK and dropped; with one, it is
//!   answered with an ACK and its inner `msg` is processed as if it had arrived on its own,
//!   with the fd: an internal one goes to the cluster protocol, anything else to the user;
//! - an fd with any other line is a protocol error (a stray fd is never handed on);
//! - `NODE_HANDLE_ACK` / `NACK` release the sender's handle in flight (§4.3);
//! - `NODE_CLUSTER` goes to the cluster protocol; other `NODE_*` messages are ignored.

use std::os::fd::OwnedFd;

use super::message::{self, Msg, Parsed};
use super::wire;
use crate::error::{Error, Result};

/// The control line a received line requires. It is never queued behind a handle in flight
/// (`Writer::send_control`, §4.3 rule 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// `NODE_HANDLE_ACK`: the handle arrived.
    Ack,
    /// `NODE_HANDLE_NACK`: a `NODE_HANDLE` came without an fd.
    Nack,
}

impl Control {
    /// The line, with its `\n`.
    pub fn line(self) -> &'static [u8] {
        match self {
            Control::Ack => wire::HANDLE_ACK,
            Control::Nack => wire::HANDLE_NACK,
        }
    }
}

/// What a received line carries, once the rules have been applied.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a short-lived value on the stack; boxing `Msg` would allocate for every ack on the primary's hot path"
)]
pub enum Inbound<'a> {
    /// A user message without a handle: its JSON text.
    User { json: String },
    /// The user message inside a `NODE_HANDLE` (`null` if it has none), with its fd.
    UserWithHandle { json: String, fd: OwnedFd },
    /// An internal message for the cluster protocol: a `NODE_CLUSTER` line (`fd` is `None`),
    /// or the internal message inside a `NODE_HANDLE`, whatever its `cmd` (`fd` is `Some`).
    Cluster { msg: Msg<'a>, fd: Option<OwnedFd> },
    /// The peer's `NODE_HANDLE_ACK` (`nacked: false`) or `NODE_HANDLE_NACK` for our handle.
    HandleReplied { nacked: bool },
    /// Nothing to act on: another `NODE_*` message, or a `NODE_HANDLE` without an fd (whose
    /// NACK is the only effect).
    Ignored,
}

/// A classified line.
#[derive(Debug)]
pub struct Received<'a> {
    /// The control reply the rules require, to be written before any reply `inbound` leads
    /// to (§4.2: the ACK goes out before the inner message is processed).
    pub reply: Option<Control>,
    /// What the line carries. An `Err` here is an acked `NODE_HANDLE` whose inner message is
    /// malformed: a protocol error once the ACK is owed (each role decides whether to write
    /// the ACK before it closes the channel).
    pub inbound: Result<Inbound<'a>>,
}

fn stray_fd() -> Error {
    Error::protocol("an fd arrived with a message that is not NODE_HANDLE")
}

/// Classifies one line (without its `\n`) and the fd bound to it, if any. `Err`: the line
/// is not valid JSON, is a malformed internal message, or came with an fd it may not carry
/// (no reply is owed then; the fd is closed).
pub fn classify(line: &[u8], fd: Option<OwnedFd>) -> Result<Received<'_>> {
    let m = match message::parse(line)? {
        Parsed::User => {
            if fd.is_some() {
                return Err(stray_fd());
            }
            let json = String::from_utf8_lossy(line).trim_end().to_string();
            return Ok(Received { reply: None, inbound: Ok(Inbound::User { json }) });
        }
        Parsed::Internal(m) => m,
    };
    let inbound = match m.cmd() {
        "NODE_HANDLE" => return Ok(open_envelope(&m, fd)),
        _ if fd.is_some() => return Err(stray_fd()),
        "NODE_HANDLE_ACK" => Inbound::HandleReplied { nacked: false },
        "NODE_HANDLE_NACK" => Inbound::HandleReplied { nacked: true },
        "NODE_CLUSTER" => Inbound::Cluster { msg: m, fd: None },
        _ => Inbound::Ignored,
    };
    Ok(Received { reply: None, inbound: Ok(inbound) })
}

/// A `NODE_HANDLE` (§4.2 rule 3): NACK without an fd (the inner message is not looked at),
/// else ACK and the inner message with the fd.
fn open_envelope<'a>(m: &Msg<'a>, fd: Option<OwnedFd>) -> Received<'a> {
    let Some(fd) = fd else {
        return Received { reply: Some(Control::Nack), inbound: Ok(Inbound::Ignored) };
    };
    let inner = m.msg.map(|r| r.get()).unwrap_or("null");
    let inbound = message::parse(inner.as_bytes()).map(|parsed| match parsed {
        Parsed::Internal(msg) => Inbound::Cluster { msg, fd: Some(fd) },
        Parsed::User => Inbound::UserWithHandle { json: inner.to_string(), fd },
    });
    Received { reply: Some(Control::Ack), inbound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    fn an_fd() -> OwnedFd {
        OwnedFd::from(std::os::unix::net::UnixStream::pair().unwrap().0)
    }

    fn ok(line: &[u8], fd: Option<OwnedFd>) -> (Option<Control>, Inbound<'_>) {
        let r = classify(line, fd).unwrap();
        (r.reply, r.inbound.unwrap())
    }

    fn protocol_error(line: &[u8], fd: Option<OwnedFd>) {
        let e = classify(line, fd).unwrap_err();
        assert_eq!(e.code, code::PROTOCOL, "{}", e.message);
    }

    #[test]
    fn user_messages() {
        let (reply, i) = ok(br#"{"a":[1,2]} "#, None);
        assert_eq!(reply, None);
        assert!(matches!(i, Inbound::User { json } if json == r#"{"a":[1,2]}"#));
        assert!(matches!(ok(br#""done""#, None).1, Inbound::User { json } if json == r#""done""#));
        // `NODE_` alone and non-string cmds are not internal (§3.3).
        assert!(matches!(ok(br#"{"cmd":"NODE_"}"#, None).1, Inbound::User { .. }));
        assert!(matches!(ok(br#"{"cmd":5,"seq":"x"}"#, None).1, Inbound::User { .. }));
    }

    #[test]
    fn an_fd_on_anything_but_node_handle_is_refused() {
        protocol_error(br#"{"a":1}"#, Some(an_fd()));
        protocol_error(br#"{"cmd":"NODE_"}"#, Some(an_fd()));
        protocol_error(br#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#, Some(an_fd()));
        protocol_error(br#"{"cmd":"NODE_HANDLE_ACK"}"#, Some(an_fd()));
        protocol_error(br#"{"cmd":"NODE_SOCKET_NOTIFY_CLOSE"}"#, Some(an_fd()));
    }

    #[test]
    fn node_handle_without_fd_is_nacked_and_dropped() {
        let line = br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"k","seq":2}}"#;
        let (reply, i) = ok(line, None);
        assert_eq!(reply, Some(Control::Nack));
        assert!(matches!(i, Inbound::Ignored));
        // The inner message is not looked at, malformed or not.
        let (reply, i) = ok(br#"{"cmd":"NODE_HANDLE","msg":{"cmd":"NODE_CLUSTER","seq":"x"}}"#, None);
        assert_eq!(reply, Some(Control::Nack));
        assert!(matches!(i, Inbound::Ignored));
    }

    #[test]
    fn node_handle_with_fd_is_acked_and_unwrapped() {
        let line = br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"k","seq":2}}"#;
        let (reply, i) = ok(line, Some(an_fd()));
        assert_eq!(reply, Some(Control::Ack));
        let Inbound::Cluster { msg, fd: Some(_) } = i else { panic!("{i:?}") };
        assert_eq!((msg.act(), msg.key.as_deref(), msg.seq), ("newconn", Some("k"), Some(2)));

        let line = br#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"x":[1, 2]}}"#;
        let (reply, i) = ok(line, Some(an_fd()));
        assert_eq!(reply, Some(Control::Ack));
        assert!(matches!(i, Inbound::UserWithHandle { json, .. } if json == r#"{"x":[1, 2]}"#));

        // No `msg`: the user gets `null` with the handle.
        let (reply, i) = ok(br#"{"cmd":"NODE_HANDLE","type":"net.Socket"}"#, Some(an_fd()));
        assert_eq!(reply, Some(Control::Ack));
        assert!(matches!(i, Inbound::UserWithHandle { json, .. } if json == "null"));

        // Any internal inner message goes to the cluster protocol, which ignores what it
        // does not know.
        let (_, i) = ok(br#"{"cmd":"NODE_HANDLE","msg":{"cmd":"NODE_HANDLE_ACK"}}"#, Some(an_fd()));
        assert!(matches!(i, Inbound::Cluster { msg, fd: Some(_) } if msg.cmd() == "NODE_HANDLE_ACK"));
    }

    #[test]
    fn a_malformed_inner_message_is_an_error_after_the_ack() {
        let r = classify(br#"{"cmd":"NODE_HANDLE","msg":{"cmd":"NODE_CLUSTER","seq":"x"}}"#, Some(an_fd())).unwrap();
        assert_eq!(r.reply, Some(Control::Ack));
        assert_eq!(r.inbound.unwrap_err().code, code::PROTOCOL);
    }

    #[test]
    fn handle_replies_cluster_and_other_internal_messages() {
        assert!(matches!(ok(br#"{"cmd":"NODE_HANDLE_ACK"}"#, None), (None, Inbound::HandleReplied { nacked: false })));
        assert!(matches!(ok(br#"{"cmd":"NODE_HANDLE_NACK"}"#, None), (None, Inbound::HandleReplied { nacked: true })));
        let (reply, i) = ok(br#"{"cmd":"NODE_CLUSTER","ack":2,"accepted":true,"seq":3}"#, None);
        assert_eq!(reply, None);
        let Inbound::Cluster { msg, fd: None } = i else { panic!("{i:?}") };
        assert_eq!((msg.ack, msg.accepted, msg.seq), (Some(2), Some(true), Some(3)));
        assert!(matches!(ok(br#"{"cmd":"NODE_SOCKET_ALL_CLOSED"}"#, None), (None, Inbound::Ignored)));
        assert!(matches!(ok(br#"{"cmd":"NODE_DEBUG_ENABLED"}"#, None), (None, Inbound::Ignored)));
    }

    #[test]
    fn hostile_lines() {
        protocol_error(b"{nope", None);
        protocol_error(b"{nope", Some(an_fd()));
        protocol_error(b"", None);
        // An internal message whose fields have the wrong types.
        protocol_error(br#"{"cmd":"NODE_CLUSTER","seq":"x"}"#, None);
        protocol_error(br#"{"cmd":"NODE_HANDLE","type":5,"msg":{}}"#, Some(an_fd()));
        protocol_error(br#"{"cmd":"NODE_HANDLE_NACK","ack":[]}"#, None);
    }

    #[test]
    fn control_lines() {
        assert_eq!(Control::Ack.line(), b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
        assert_eq!(Control::Nack.line(), b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
    }
}
