//! Builders for the exact bytes Node v20 writes (compact JSON, `cmd` first, `seq` last, `\n`).
//! They append to a caller's buffer, so the hot path (newconn, acks) allocates nothing.

use std::io::Write;

pub const HANDLE_ACK: &[u8] = b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
pub const HANDLE_NACK: &[u8] = b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n";

fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn end(out: &mut Vec<u8>, seq: i64) {
    let _ = writeln!(out, ",\"seq\":{seq}}}");
}

/// `{"cmd":"NODE_CLUSTER","act":<act>,"seq":n}`
pub fn act(out: &mut Vec<u8>, act: &str, seq: i64) {
    out.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":");
    string(out, act);
    end(out, seq);
}

/// `{"cmd":"NODE_CLUSTER","act":"close","key":k,"seq":n}`
pub fn close(out: &mut Vec<u8>, key: &str, seq: i64) {
    out.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"close\",\"key\":");
    string(out, key);
    end(out, seq);
}

/// The reply to `newconn`: `{"cmd":"NODE_CLUSTER","ack":a,"accepted":b,"seq":n}`
pub fn accepted(out: &mut Vec<u8>, ack: i64, accepted: bool, seq: i64) {
    let _ = write!(out, "{{\"cmd\":\"NODE_CLUSTER\",\"ack\":{ack},\"accepted\":{accepted}");
    end(out, seq);
}

/// A bare reply: `{"cmd":"NODE_CLUSTER","ack":a,"seq":n}` (e.g. to `exitedAfterDisconnect`).
pub fn ack(out: &mut Vec<u8>, ack: i64, seq: i64) {
    let _ = write!(out, "{{\"cmd\":\"NODE_CLUSTER\",\"ack\":{ack}");
    end(out, seq);
}

/// `newconn` inside its `NODE_HANDLE` envelope; the connection fd goes with it.
pub fn newconn(out: &mut Vec<u8>, key: &str, seq: i64) {
    out.extend_from_slice(
        b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":",
    );
    string(out, key);
    let _ = writeln!(out, ",\"seq\":{seq}}}}}");
}

/// The fields of a `queryServer` (and of the `listening` message that mirrors it).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerQuery {
    pub index: i64,
    pub address: Option<String>,
    pub port: i64,
    /// `4`, `6` or `-1` (a pipe), written as a number; `udp4`/`udp6`, written as a string.
    pub address_type: String,
    /// `fd` (UDP address binds send -1); absent for TCP and pipes.
    pub fd: Option<i64>,
    pub flags: i64,
    /// Absent for UDP.
    pub backlog: Option<i64>,
    /// libcluster's extension (`libclusterInflight`, ignored by Node): how many connections
    /// this worker takes in flight. Absent in Node's own messages.
    pub inflight: Option<i64>,
    /// libcluster's extension (`libclusterLane`, `LANE_*` bits): the fast lane is wanted.
    pub lane: Option<i64>,
    /// Pipes: Node's `readableAll` / `writableAll` (written only when true, as Node omits
    /// options that were not given).
    pub readable_all: bool,
    pub writable_all: bool,
}

/// `queryServer` (or `listening`, with the bound port) as Node's worker writes it.
pub fn query(out: &mut Vec<u8>, act: &str, q: &ServerQuery, port: i64, seq: i64) {
    out.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":");
    string(out, act);
    let _ = write!(out, ",\"index\":{},\"data\":null,\"address\":", q.index);
    opt_string(out, q.address.as_deref());
    let _ = write!(out, ",\"port\":{port},\"addressType\":");
    if q.address_type.parse::<i64>().is_ok() {
        out.extend_from_slice(q.address_type.as_bytes());
    } else {
        string(out, &q.address_type);
    }
    if let Some(fd) = q.fd {
        let _ = write!(out, ",\"fd\":{fd}");
    }
    let _ = write!(out, ",\"flags\":{}", q.flags);
    if let Some(b) = q.backlog {
        let _ = write!(out, ",\"backlog\":{b}");
    }
    if q.readable_all {
        out.extend_from_slice(b",\"readableAll\":true");
    }
    if q.writable_all {
        out.extend_from_slice(b",\"writableAll\":true");
    }
    if let Some(n) = q.inflight {
        let _ = write!(out, ",\"libclusterInflight\":{n}");
    }
    if let Some(n) = q.lane {
        let _ = write!(out, ",\"libclusterLane\":{n}");
    }
    end(out, seq);
}

/// What the primary tells a worker about its server (§5.2, reply to `queryServer`).
pub struct QueryReply<'a> {
    /// `None` writes `null` (round-robin success); `Some(0)` shared success; negative: error.
    pub errno: Option<i64>,
    pub key: &'a str,
    pub ack: i64,
    /// Raw JSON of the handle's `data` (`null` unless TLS).
    pub data: &'a str,
    /// `(address, family, port)` of the primary's socket, for TCP round-robin.
    pub sockname: Option<(&'a str, &'a str, u16)>,
    /// libcluster's extension: the fd that comes with this reply is the worker's fast lane.
    pub lane: bool,
}

/// `libclusterLane` bits in `queryServer` (a libcluster worker asks for the fast lane; Node
/// ignores the field): the lane is wanted; connections should come non-blocking.
pub(crate) const LANE_WANTED: i64 = 1;
pub(crate) const LANE_NONBLOCKING: i64 = 2;

pub fn query_reply(out: &mut Vec<u8>, r: &QueryReply<'_>, seq: i64) {
    out.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"errno\":");
    match r.errno {
        Some(e) => {
            let _ = write!(out, "{e}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"key\":");
    string(out, r.key);
    let _ = write!(out, ",\"ack\":{},\"data\":{}", r.ack, r.data);
    if let Some((addr, family, port)) = r.sockname {
        out.extend_from_slice(b",\"sockname\":{\"address\":");
        string(out, addr);
        out.extend_from_slice(b",\"family\":");
        string(out, family);
        let _ = write!(out, ",\"port\":{port}}}");
    }
    if r.lane {
        out.extend_from_slice(b",\"libclusterLane\":1");
    }
    end(out, seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn bytes_match_node_v20_captures() {
        assert_eq!(s(|o| act(o, "online", 0)), "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n");
        let q = ServerQuery {
            index: 0,
            address: Some("127.0.0.1".into()),
            port: 18231,
            address_type: "4".into(),
            fd: None,
            flags: 0,
            backlog: Some(0),
            inflight: None,
            lane: None,
            readable_all: false,
            writable_all: false,
        };
        assert_eq!(
            s(|o| query(o, "queryServer", &q, 18231, 1)),
            "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"index\":0,\"data\":null,\"address\":\"127.0.0.1\",\"port\":18231,\"addressType\":4,\"flags\":0,\"backlog\":0,\"seq\":1}\n"
        );
        let r = QueryReply {
            errno: None,
            key: "127.0.0.1:18231:4:undefined:0",
            ack: 1,
            data: "null",
            sockname: Some(("127.0.0.1", "IPv4", 18231)),
            lane: false,
        };
        assert_eq!(
            s(|o| query_reply(o, &r, 0)),
            "{\"cmd\":\"NODE_CLUSTER\",\"errno\":null,\"key\":\"127.0.0.1:18231:4:undefined:0\",\"ack\":1,\"data\":null,\"sockname\":{\"address\":\"127.0.0.1\",\"family\":\"IPv4\",\"port\":18231},\"seq\":0}\n"
        );
        assert_eq!(
            s(|o| newconn(o, "127.0.0.1:18231:4:undefined:0", 2)),
            "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"127.0.0.1:18231:4:undefined:0\",\"seq\":2}}\n"
        );
        assert_eq!(s(|o| accepted(o, 2, true, 3)), "{\"cmd\":\"NODE_CLUSTER\",\"ack\":2,\"accepted\":true,\"seq\":3}\n");
        assert_eq!(
            s(|o| close(o, "127.0.0.1:18231:4:undefined:0", 5)),
            "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"close\",\"key\":\"127.0.0.1:18231:4:undefined:0\",\"seq\":5}\n"
        );
        // A pipe with Node's readableAll/writableAll: the fields Node adds, and our parser
        // reads them back (anything but `true` is false).
        let pq = ServerQuery {
            index: 0,
            address: Some("/tmp/s.sock".into()),
            port: -1,
            address_type: "-1".into(),
            fd: None,
            flags: 0,
            backlog: Some(0),
            inflight: None,
            lane: None,
            readable_all: true,
            writable_all: true,
        };
        let line = s(|o| query(o, "queryServer", &pq, -1, 4));
        assert!(line.contains(",\"readableAll\":true,\"writableAll\":true,"), "{line}");
        let crate::ipc::message::Parsed::Internal(m) = crate::ipc::message::parse(line.as_bytes()).unwrap() else { panic!() };
        assert!(crate::ipc::message::is_true(m.readable_all) && crate::ipc::message::is_true(m.writable_all));
        let crate::ipc::message::Parsed::Internal(m) =
            crate::ipc::message::parse(br#"{"cmd":"NODE_CLUSTER","act":"queryServer","readableAll":1,"writableAll":null}"#).unwrap()
        else {
            panic!()
        };
        assert!(!crate::ipc::message::is_true(m.readable_all) && !crate::ipc::message::is_true(m.writable_all));
        let u = ServerQuery {
            index: 0,
            address: Some("127.0.0.1".into()),
            port: 18241,
            address_type: "udp4".into(),
            fd: Some(-1),
            flags: 0,
            backlog: None,
            inflight: None,
            lane: None,
            readable_all: false,
            writable_all: false,
        };
        assert_eq!(
            s(|o| query(o, "queryServer", &u, 18241, 1)),
            "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"index\":0,\"data\":null,\"address\":\"127.0.0.1\",\"port\":18241,\"addressType\":\"udp4\",\"fd\":-1,\"flags\":0,\"seq\":1}\n"
        );
        let e = QueryReply { errno: Some(-98), key: "k", ack: 1, data: "null", sockname: None, lane: false };
        assert_eq!(
            s(|o| query_reply(o, &e, 0)),
            "{\"cmd\":\"NODE_CLUSTER\",\"errno\":-98,\"key\":\"k\",\"ack\":1,\"data\":null,\"seq\":0}\n"
        );
    }
}

/// What kind of socket a handle is, for the `type` of its `NODE_HANDLE` envelope (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleType {
    /// A listening stream socket: `net.Server`.
    Server,
    /// A connected stream socket (TCP or Unix): `net.Socket`.
    Socket,
    /// A datagram socket: `dgram.Socket` with `dgramType` udp4/udp6.
    Dgram {
        ipv6: bool,
    },
    /// Raw handles as cluster itself sends them: `net.Native` / `dgram.Native`.
    NetNative,
    DgramNative,
}

/// Wraps an inner message (a complete line, with its `\n`) in a `NODE_HANDLE` envelope.
pub fn handle_envelope(out: &mut Vec<u8>, ty: HandleType, inner_line: &[u8]) {
    let inner = inner_line.strip_suffix(b"\n").unwrap_or(inner_line);
    out.extend_from_slice(b"{\"cmd\":\"NODE_HANDLE\",\"type\":");
    match ty {
        HandleType::Server => out.extend_from_slice(b"\"net.Server\""),
        HandleType::Socket => out.extend_from_slice(b"\"net.Socket\""),
        HandleType::Dgram { ipv6 } => {
            out.extend_from_slice(b"\"dgram.Socket\",\"dgramType\":");
            out.extend_from_slice(if ipv6 { b"\"udp6\"" } else { b"\"udp4\"" });
        }
        HandleType::NetNative => out.extend_from_slice(b"\"net.Native\""),
        HandleType::DgramNative => out.extend_from_slice(b"\"dgram.Native\""),
    }
    out.extend_from_slice(b",\"msg\":");
    out.extend_from_slice(inner);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn envelopes() {
        let mut o = Vec::new();
        handle_envelope(&mut o, HandleType::Socket, b"{\"x\":1}\n");
        assert_eq!(o, b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{\"x\":1}}\n");
        o.clear();
        handle_envelope(&mut o, HandleType::Dgram { ipv6: true }, b"1\n");
        assert_eq!(o, b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"dgram.Socket\",\"dgramType\":\"udp6\",\"msg\":1}\n");
    }
}
