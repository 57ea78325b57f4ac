//! Test fixture: one program that is the primary or a worker, driven by the Rust
//! integration tests (`tests/`). Not an example to copy: it exercises the library's Rust
//! internals and misbehaves on purpose in some worker modes.
//!
//! Primary: reads commands on stdin, prints events and answers as JSON lines on stdout:
//!   fork [K=V ...] | setup EXEC [ARG ...] | kill ID SIG | count | fds | quit |
//!   send ID JSON | sendfd ID TEXT | disconnect ID | disconnect-all | sched rr|none | state ID |
//!   allow ADDR|* PORT | maxmsg BYTES | ids UID GID | silent | stdout ID | inflight N | leastloaded
//! Worker: behaves as `FIXTURE_MODE` says (default `serve`), printing JSON lines to the
//! same stdout:
//!   serve       get_server(FIXTURE_ADDR|127.0.0.1, FIXTURE_PORT|0); each connection gets
//!               "<pid>\n" and is closed
//!   noaccept    get_server, never accept
//!   exit:N      exit with N after online
//!   idle        do nothing until killed
//!   tryfork     report what cluster_fork does in a worker
//!   selfdisconnect  get_server, then cluster.worker.disconnect(), then exit 0
//!   selfdestroy get_server, then cluster.worker.destroy() (exits 0)
//!   line        get_server; for each connection read one line, answer
//!               "pid=<pid> nb=<0|1> line=<line>\n" (nb: the connection came O_NONBLOCK),
//!               shut down writing and read until the client closes (no reset).
//!               FIXTURE_NONBLOCK=1: a non-blocking server (poll its fd, then accept)
//! FIXTURE_NOFILE=N: before getting its server, the worker lowers its RLIMIT_NOFILE so
//!   that N more fds fit.
//!   hoard       get_server; accepts every connection and keeps it open unanswered
//!               (printing {"hoarded": n}, or {"accept_error": code} when accept fails)
//!   drip:MS     get_server; every MS ms accept at most one connection and answer as
//!               `line` does (MS=0: never). User messages from the primary steer it:
//!               {"hold":1} stops accepting ({"holding":..} is printed),
//!               {"drip":MS} accepts one every MS ms from now on ({"dripping":..}),
//!               {"close":1} closes the server ({"closed":..}) and idles.
//!               Once the server is closed under it (a disconnect), prints
//!               {"server_closed":..} and idles (does not exit).
//! Every get_server mode prints {"worker","pid","port","fd_kind"} once it has its server:
//!   fd_kind is what the server fd is: "seqpacket" (the fast lane), "stream", "dgram",
//!   "eventfd", "epoll" or the /proc/self/fd link.
//! FIXTURE_ECHO=1 makes a worker answer each message with {"echo": msg, "fd_data": ...}.
//!   fds         report open fds and their CLOEXEC flags after serving one connection
//!   raw:KIND    before touching the library, write a hostile line on fd 3
//!               (badjson, blank, oversize, fdnohandle, badquery), then idle
//!   raw:bigdata one queryServer with 15 MiB `data`, then 40 small ones for the same server,
//!               never reading fd 3; prints {"bigdata_sent": n} and idles
//!   raw:file    before touching the library, write the bytes of the file FIXTURE_RAW_FILE on
//!               fd 3 (in writes of FIXTURE_RAW_CHUNK bytes 1 ms apart, default one write;
//!               FIXTURE_RAW_FD_AT=N: the write starting at byte N carries /dev/null), print
//!               {"raw_file_sent": bytes}, then idle

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use cluster::testing::context::{self, Role};
use cluster::testing::event::Event;
use cluster::testing::worker::Server;
use cluster::testing::worker::server::ServerOptions;

/// One JSON line on stdout in a single write, so lines of the primary and its workers
/// (which share the pipe) never interleave.
fn say(v: serde_json::Value) {
    let line = format!("{v}\n");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn main() {
    if std::env::var_os("NODE_UNIQUE_ID").is_some() {
        worker();
    } else {
        primary();
    }
}

fn event_json(ev: &Event) -> serde_json::Value {
    use serde_json::json;
    match ev {
        Event::Fork { id, pid } => json!({"event":"fork","id":id,"pid":pid}),
        Event::Online { id, pid } => json!({"event":"online","id":id,"pid":pid}),
        Event::Listening { id, pid, address, port, address_type, fd } => {
            json!({"event":"listening","id":id,"pid":pid,"address":address,"port":port,"addressType":address_type,"fd":fd})
        }
        Event::Message { id, pid, json, fd } => {
            // A socket that came with the message: read one line from it to show it works.
            let fd_data = fd.as_ref().map(read_line_from);
            json!({"event":"message","id":id,"pid":pid,"data":json,"fd_data":fd_data})
        }
        Event::Disconnect { id, pid, exited_after_disconnect } => {
            json!({"event":"disconnect","id":id,"pid":pid,"ead":exited_after_disconnect})
        }
        Event::Exit { id, pid, code, signal, exited_after_disconnect } => {
            json!({"event":"exit","id":id,"pid":pid,"code":code,"signal":signal,"ead":exited_after_disconnect})
        }
        Event::Error { id, pid, code, message } => json!({"event":"error","id":id,"pid":pid,"code":code,"message":message}),
        Event::DisconnectRequested { id, pid } => json!({"event":"disconnect_requested","id":id,"pid":pid}),
        Event::Drained => json!({"event":"drained"}),
        Event::Supervision { id, pid, notice } => json!({"event":"supervision","id":id,"pid":pid,"notice":format!("{notice:?}")}),
    }
}

fn read_line_from(fd: &std::os::fd::OwnedFd) -> String {
    let Ok(dup) = fd.try_clone() else { return String::new() };
    let s = std::os::unix::net::UnixStream::from(dup);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let _ = std::io::BufReader::new(s).read_line(&mut line);
    line.trim_end().to_string()
}

/// One end of a socketpair with `text` waiting in it, to send along with a message.
fn socket_with(text: &str) -> std::os::unix::net::UnixStream {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let _ = (&a).write_all(format!("{text}\n").as_bytes());
    b
}

fn fd_report() -> serde_json::Value {
    let fds: Vec<serde_json::Value> = cluster::testing::sys::fd::open_fds()
        .unwrap_or_default()
        .into_iter()
        .map(|fd| {
            let cloexec = cluster::testing::sys::fd::is_cloexec(fd).unwrap_or(false);
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string()).unwrap_or_default();
            serde_json::json!({"fd":fd,"cloexec":cloexec,"target":target})
        })
        .collect();
    serde_json::Value::Array(fds)
}

static EVENTS_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn primary() {
    let ctx = context::get().expect("context");
    let Role::Primary(p) = &ctx.role else { unreachable!() };
    // Events are printed by a thread of ours, so stdin commands and events interleave.
    // `events-hold` stops taking them (a program that does not dispatch), `events-release`
    // goes on.
    std::thread::spawn(move || {
        loop {
            while !EVENTS_HELD.load(std::sync::atomic::Ordering::Acquire) {
                let Some(ev) = ctx.events.pop() else { break };
                say(event_json(&ev));
            }
            if EVENTS_HELD.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                let _ = ctx.events.wait(-1);
            }
        }
    });
    say(serde_json::json!({"ready": std::process::id(), "fds": fd_report()}));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["fork", env @ ..] => {
                let env: Vec<_> = env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
                match p.fork(&env) {
                    Ok(id) => serde_json::json!({"forked": id}),
                    Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
                }
            }
            ["kill", id, sig] => match p.kill(id.parse().unwrap_or(0), sig.parse().unwrap_or(15)) {
                Ok(()) => serde_json::json!({"killed": id}),
                Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
            },
            ["setup", exec, args @ ..] => {
                match p.setup(cluster::testing::primary::settings::Settings {
                    exec: Some((*exec).into()),
                    args: Some(args.iter().map(|a| (*a).into()).collect()),
                    ..Default::default()
                }) {
                    Ok(()) => serde_json::json!({"setup": exec}),
                    Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
                }
            }
            ["send", id, ..] => {
                let json = line.splitn(3, ' ').nth(2).unwrap_or("");
                match p.send(id.parse().unwrap_or(0), json, None) {
                    Ok(()) => serde_json::json!({"sent": id}),
                    Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
                }
            }
            ["sendfd", id, text] => {
                let sock = socket_with(text);
                let fd = std::os::fd::AsFd::as_fd(&sock);
                match p.send(id.parse().unwrap_or(0), &serde_json::json!({"with_fd": text}).to_string(), Some(fd)) {
                    Ok(()) => serde_json::json!({"sent": id}),
                    Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
                }
            }
            ["disconnect", id] => match p.disconnect(id.parse().unwrap_or(0)) {
                Ok(()) => serde_json::json!({"disconnecting": id}),
                Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
            },
            ["close-channel", id] => match p.close_channel(id.parse().unwrap_or(0)) {
                Ok(()) => serde_json::json!({"closing": id}),
                Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
            },
            ["disconnect-all"] => serde_json::json!({"disconnecting_all": p.disconnect_all()}),
            ["sched", policy] => match p.setup(cluster::testing::primary::settings::Settings {
                sched_policy: Some(if *policy == "none" {
                    cluster::testing::primary::SchedPolicy::None
                } else {
                    cluster::testing::primary::SchedPolicy::RoundRobin
                }),
                ..Default::default()
            }) {
                Ok(()) => serde_json::json!({"sched": policy}),
                Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
            },
            ["state", id] => match p.worker(id.parse().unwrap_or(0)) {
                Ok(w) => {
                    serde_json::json!({"state": format!("{:?}", w.state).to_lowercase(), "connected": w.connected, "dead": w.dead, "ead": w.exited_after_disconnect, "listed": w.listed})
                }
                Err(e) => serde_json::json!({"error": e.code, "message": e.message}),
            },
            ["ids", uid, gid] => {
                p.setup(cluster::testing::primary::settings::Settings {
                    uid: uid.parse().ok(),
                    gid: gid.parse().ok(),
                    ..Default::default()
                })
                .expect("setup");
                serde_json::json!({"ids": [uid, gid]})
            }
            ["allow", addr, port] => {
                let address = (*addr != "*").then(|| addr.to_string());
                p.allow_bind(cluster::testing::primary::AllowRule { address, port: port.parse().ok() });
                serde_json::json!({"allowed": [addr, port]})
            }
            ["maxmsg", bytes] => {
                cluster::testing::ipc::set_max_line(bytes.parse().unwrap_or(1024));
                serde_json::json!({"maxmsg": bytes})
            }
            ["inflight", n] => {
                p.setup(cluster::testing::primary::settings::Settings {
                    max_in_flight: Some(n.parse().unwrap_or(1)),
                    ..Default::default()
                })
                .expect("setup");
                serde_json::json!({"inflight": n})
            }
            ["leastloaded"] => {
                p.setup(cluster::testing::primary::settings::Settings { least_loaded: Some(true), ..Default::default() }).expect("setup");
                serde_json::json!({"leastloaded": true})
            }
            ["cloexec-stdio"] => {
                // As Node does to its own fds 0-2: inherited stdio must still reach workers.
                for fd in 0..3 {
                    // SAFETY: (fixture) fcntl on our own stdio fds.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                }
                serde_json::json!({"cloexec_stdio": true})
            }
            ["silent"] => {
                p.setup(cluster::testing::primary::settings::Settings { silent: Some(true), ..Default::default() }).expect("setup");
                serde_json::json!({"silent": true})
            }
            ["stdout", id] => {
                // Read the worker's piped stdout until it has printed one line.
                let fd = p.worker(id.parse().unwrap_or(0)).ok().and_then(|w| w.stdio[1].clone());
                match fd.and_then(|f| f.try_clone().ok()) {
                    Some(f) => {
                        let mut r = std::io::BufReader::new(std::fs::File::from(f));
                        let mut line = String::new();
                        let _ = r.read_line(&mut line);
                        serde_json::json!({"stdout": line})
                    }
                    None => serde_json::json!({"error": -libc::ENOENT}),
                }
            }
            ["count"] => serde_json::json!({"count": p.worker_count(), "ids": p.worker_ids()}),
            ["events-hold"] => {
                EVENTS_HELD.store(true, std::sync::atomic::Ordering::Release);
                serde_json::json!({"events": "held"})
            }
            ["events-release"] => {
                EVENTS_HELD.store(false, std::sync::atomic::Ordering::Release);
                serde_json::json!({"events": "released"})
            }
            ["fds"] => serde_json::json!({"primary_fds": fd_report()}),
            ["quit"] => break,
            _ => serde_json::json!({"error": "unknown command", "line": line}),
        };
        say(reply);
    }
}

fn raw_line(kind: &str) {
    // SAFETY: (test fixture) fd 3 is the inherited channel; we write to it before the
    // library takes it, as a hostile peer would.
    let chan = unsafe { std::os::unix::net::UnixStream::from_raw_fd(3) };
    let online = b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n";
    let _ = (&chan).write_all(online);
    match kind {
        "badjson" => drop((&chan).write_all(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\n")),
        "blank" => drop((&chan).write_all(b"\n")),
        "oversize" => {
            let big = vec![b'x'; 17 * 1024 * 1024];
            let _ = (&chan).write_all(b"\"");
            let _ = (&chan).write_all(&big);
        }
        "fdnohandle" => {
            let f = std::fs::File::open("/dev/null").unwrap();
            let _ = cluster::testing::sys::scm::send(
                std::os::fd::AsFd::as_fd(&chan),
                b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"listening\",\"seq\":1}\n",
                Some(f.as_raw_fd()),
                false,
            );
        }
        "badquery" => {
            let _ = (&chan).write_all(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"index\":0,\"address\":\"nope\",\"port\":99999,\"addressType\":4,\"seq\":1}\n");
            let mut buf = [0u8; 4096];
            let n = std::io::Read::read(&mut &chan, &mut buf).unwrap_or(0);
            say(serde_json::json!({"worker_raw_reply": String::from_utf8_lossy(&buf[..n])}));
        }
        "bigdata" => {
            // Every reply echoes the first query's `data`; unread, they queue in the primary.
            let q = |seq: usize, data: &str| {
                format!(
                    "{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"index\":1,\"address\":\"127.0.0.1\",\"port\":0,\"addressType\":4,\"data\":{data},\"seq\":{seq}}}\n"
                )
            };
            let big = format!("\"{}\"", "x".repeat(15 << 20));
            let mut sent = 0;
            for seq in 1..=41 {
                if (&chan).write_all(q(seq, if seq == 1 { &big } else { "null" }).as_bytes()).is_err() {
                    break;
                }
                sent += 1;
            }
            say(serde_json::json!({"bigdata_sent": sent}));
        }
        _ => {}
    }
    std::mem::forget(chan);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// `raw:file`: a hostile (or replayed) worker whose whole channel traffic is a file's bytes.
fn raw_file() -> ! {
    // SAFETY: (test fixture) fd 3 is the inherited channel, never handed to the library here.
    let chan = unsafe { std::os::unix::net::UnixStream::from_raw_fd(3) };
    let data = std::env::var_os("FIXTURE_RAW_FILE").and_then(|f| std::fs::read(f).ok()).unwrap_or_default();
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let chunk = num("FIXTURE_RAW_CHUNK").filter(|&c| c > 0).unwrap_or(data.len().max(1));
    let fd_at = num("FIXTURE_RAW_FD_AT").filter(|&a| a < data.len());
    let mut cuts: Vec<usize> = (0..data.len()).step_by(chunk).chain(fd_at).collect();
    cuts.sort_unstable();
    cuts.dedup();
    for (i, &start) in cuts.iter().enumerate() {
        let mut part = &data[start..cuts.get(i + 1).copied().unwrap_or(data.len())];
        if fd_at == Some(start) {
            let null = std::fs::File::open("/dev/null").expect("/dev/null");
            match cluster::testing::sys::scm::send(std::os::fd::AsFd::as_fd(&chan), part, Some(null.as_raw_fd()), false) {
                Ok(n) => part = &part[n..],
                Err(_) => break,
            }
        }
        if (&chan).write_all(part).is_err() {
            break;
        }
        if i + 1 < cuts.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    say(serde_json::json!({"raw_file_sent": data.len()}));
    std::mem::forget(chan);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn worker() {
    let mode = std::env::var("FIXTURE_MODE").unwrap_or_else(|_| "serve".into());
    if mode == "raw:file" {
        raw_file();
    }
    if let Some(kind) = mode.strip_prefix("raw:") {
        return raw_line(kind);
    }
    let ctx = context::get().expect("worker start-up");
    let Role::Worker(w) = &ctx.role else { unreachable!() };
    let pid = std::process::id();
    if let Some(n) = std::env::var("FIXTURE_NOFILE").ok().and_then(|n| n.parse::<u64>().ok()) {
        limit_fds(n);
    }
    // Worker-side events: report them; with FIXTURE_ECHO=1 answer every message.
    let echo = std::env::var("FIXTURE_ECHO").is_ok_and(|v| v == "1");
    // User messages also go to the program's thread (modes that take orders: drip).
    let (orders_tx, orders) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        loop {
            while let Some(ev) = ctx.events.pop() {
                if let Event::Message { json, .. } = &ev {
                    let _ = orders_tx.send(json.clone());
                }
                if let (true, Event::Message { json, fd, .. }) = (echo, &ev) {
                    let fd_data = fd.as_ref().map(read_line_from);
                    let reply = serde_json::json!({"echo": serde_json::from_str::<serde_json::Value>(json).unwrap_or_default(), "fd_data": fd_data});
                    match fd_data {
                        // Pass a socket back too, to exercise handles in the other direction.
                        Some(_) => {
                            let sock = socket_with("from-worker");
                            let _ = w.send(&reply.to_string(), Some(std::os::fd::AsFd::as_fd(&sock)));
                        }
                        None => {
                            let _ = w.send(&reply.to_string(), None);
                        }
                    }
                }
                let mut v = event_json(&ev);
                v["worker_event"] = serde_json::Value::Bool(true);
                v["worker"] = serde_json::json!(w.id());
                say(v);
            }
            let _ = ctx.events.wait(-1);
        }
    });
    match mode.as_str() {
        m if m.starts_with("flood:") => {
            // N messages of about 1 KiB, numbered, then {"flood_done": N}; then idle.
            let n: usize = m[6..].parse().unwrap_or(100);
            let pad = "x".repeat(1000);
            for i in 0..n {
                w.send(&serde_json::json!({"flood": i, "pad": pad}).to_string(), None).expect("send");
            }
            w.send(&serde_json::json!({"flood_done": n}).to_string(), None).expect("send");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "idle" => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        m if m.starts_with("exit:") => std::process::exit(m[5..].parse().unwrap_or(1)),
        "printexit" => {
            say(serde_json::json!({"worker": w.id(), "last_words": pid}));
            std::process::exit(5);
        }
        "env" => {
            let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
                .filter(|(k, _)| k.starts_with("CLUSTER_TEST") || k.starts_with("NODE_"))
                .map(|(k, v)| (k, v.into()))
                .collect();
            // SAFETY: (fixture) getuid/getgid have no preconditions.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            say(serde_json::json!({"worker": w.id(), "id": w.id(), "env": env, "uid": uid, "gid": gid}));
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "udp" => {
            let port: i32 = std::env::var("FIXTURE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
            let target = cluster::testing::address::Target::from_user(Some("127.0.0.1"), port).expect("target");
            let opts = ServerOptions { udp: true, ..Default::default() };
            let server = Server::query(w, &target, opts).expect("udp server");
            // SAFETY: (fixture) borrow the server's datagram socket to answer on it.
            let sock = unsafe { std::net::UdpSocket::from_raw_fd(server.fd()) };
            let mut buf = [0u8; 64];
            loop {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(format!("pong {pid}").as_bytes(), from);
                }
            }
        }
        "twoservers" => {
            let target = cluster::testing::address::Target::from_user(Some("127.0.0.1"), 0).expect("target");
            let s0 = Server::query(w, &target, ServerOptions::default()).expect("first");
            let s1 = Server::query(w, &target, ServerOptions::default()).expect("second");
            say(serde_json::json!({"worker": w.id(), "ports": [s0.port(), s1.port()]}));
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "tryfork" => {
            let code = match context::primary() {
                Ok(_) => 0,
                Err(e) => e.code,
            };
            say(serde_json::json!({"worker": w.id(), "pid": pid, "tryfork": code}));
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        _ => {}
    }
    let addr = std::env::var("FIXTURE_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
    let port: i32 = std::env::var("FIXTURE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let target = match cluster::testing::address::Target::from_user(Some(&addr), port) {
        Ok(t) => t,
        Err(e) => {
            say(serde_json::json!({"worker": w.id(), "pid": pid, "error": e.code, "message": e.message}));
            std::process::exit(2);
        }
    };
    let nonblocking = mode == "line" && std::env::var("FIXTURE_NONBLOCK").is_ok_and(|v| v == "1");
    let opts = ServerOptions { nonblocking, ..Default::default() };
    let server = match Server::query(w, &target, opts) {
        Ok(s) => s,
        Err(e) => {
            say(serde_json::json!({"worker": w.id(), "pid": pid, "error": e.code, "message": e.message}));
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    };
    say(serde_json::json!({"worker": w.id(), "pid": pid, "port": server.port(), "fd_kind": fd_kind(server.fd())}));
    if mode == "line" {
        line_worker(&server, nonblocking);
    }
    if let Some(ms) = mode.strip_prefix("drip:") {
        drip_worker(w.id(), server, ms.parse().unwrap_or(0), orders);
    }
    if mode == "hoard" {
        hoard_worker(w.id(), &server);
    }
    if mode == "selfdestroy" {
        w.destroy();
    }
    if mode == "selfdisconnect" {
        let r = w.disconnect();
        say(serde_json::json!({"worker": w.id(), "selfdisconnect": r.is_ok(), "second": w.disconnect().err().map(|e| e.code)}));
        std::thread::sleep(Duration::from_millis(200));
        std::process::exit(0);
    }
    if mode == "noaccept" {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    loop {
        let conn = match server.accept() {
            Ok(c) => c,
            Err(e) => {
                // EBADF: a disconnect closed the server; a well-behaved worker finishes and
                // exits 0, as Node's do.
                say(serde_json::json!({"worker": w.id(), "accept_error": e.code}));
                std::process::exit(if e.code == -libc::EBADF { 0 } else { 3 });
            }
        };
        let mut s = std::net::TcpStream::from(conn);
        let _ = writeln!(s, "{pid}");
        drop(s);
        if mode == "fds" {
            say(serde_json::json!({"worker": w.id(), "pid": pid, "fds": fd_report()}));
        }
    }
}

/// What kind of fd `fd` is: a socket's type, else what /proc says it is.
fn fd_kind(fd: std::os::fd::RawFd) -> String {
    let mut ty: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: (fixture) getsockopt writes at most `len` bytes into `ty`.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut ty).cast(), &mut len) };
    if r == 0 {
        return match ty {
            libc::SOCK_SEQPACKET => "seqpacket".into(),
            libc::SOCK_STREAM => "stream".into(),
            libc::SOCK_DGRAM => "dgram".into(),
            other => format!("socket type {other}"),
        };
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string()).unwrap_or_default();
    match link.as_str() {
        "anon_inode:[eventfd]" => "eventfd".into(),
        "anon_inode:[eventpoll]" => "epoll".into(),
        _ => link,
    }
}

/// `line` mode's answer to one connection: read a line, answer with our pid, whether the
/// connection came non-blocking and the line; then shut down writing and read until the
/// client closes, so unread input never turns the close into a reset.
fn answer_line(conn: std::os::fd::OwnedFd) {
    let fd = conn.as_raw_fd();
    // SAFETY: (fixture) fcntl on a connection we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let nb = flags >= 0 && flags & libc::O_NONBLOCK != 0;
    if nb {
        // SAFETY: (fixture) as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    let s = std::net::TcpStream::from(conn);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut r = std::io::BufReader::new(&s);
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    let _ = (&s).write_all(format!("pid={} nb={} line={}\n", std::process::id(), nb as u8, line.trim_end()).as_bytes());
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut r, &mut rest);
}

fn line_worker(server: &Server, nonblocking: bool) -> ! {
    loop {
        if nonblocking {
            // Readable when a connection waits (or the server closed).
            let mut pfd = libc::pollfd { fd: server.fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: (fixture) one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
        }
        match server.accept() {
            Ok(c) => answer_line(c),
            Err(e) if nonblocking && e.code == -libc::EAGAIN => continue,
            Err(e) => {
                say(serde_json::json!({"worker_pid": std::process::id(), "accept_error": e.code}));
                std::process::exit(if e.code == -libc::EBADF { 0 } else { 3 });
            }
        }
    }
}

/// `drip:MS`: holds connections in its queue, taking one every MS ms (0: none), and obeys
/// the primary's `hold` and `close` messages.
fn drip_worker(id: u32, mut server: Server, period_ms: u64, orders: std::sync::mpsc::Receiver<String>) -> ! {
    let pid = std::process::id();
    let mut holding = period_ms == 0;
    let mut wait = Duration::from_millis(if period_ms == 0 { 50 } else { period_ms });
    let idle = || -> ! {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    };
    loop {
        if let Ok(order) = orders.recv_timeout(wait) {
            let v: serde_json::Value = serde_json::from_str(&order).unwrap_or_default();
            if v.get("close").is_some() {
                server.close();
                say(serde_json::json!({"worker": id, "closed": pid}));
                idle();
            }
            if v.get("hold").is_some() {
                holding = true;
                say(serde_json::json!({"worker": id, "holding": pid}));
            }
            if let Some(ms) = v.get("drip").and_then(|m| m.as_u64()) {
                holding = false;
                wait = Duration::from_millis(ms.max(1));
                say(serde_json::json!({"worker": id, "dripping": pid}));
            }
            continue;
        }
        if server.is_closed() {
            say(serde_json::json!({"worker": id, "server_closed": pid}));
            idle();
        }
        if holding {
            continue;
        }
        let mut pfd = libc::pollfd { fd: server.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: (fixture) one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
            continue;
        }
        match server.accept() {
            Ok(c) => answer_line(c),
            Err(e) => {
                say(serde_json::json!({"worker": id, "server_closed": pid, "accept_error": e.code}));
                idle();
            }
        }
    }
}

/// `hoard`: takes every connection it can and keeps it, unanswered, so that the worker runs
/// out of fds (set its RLIMIT_NOFILE low); reports each one and each failed accept.
fn hoard_worker(id: u32, server: &Server) -> ! {
    let mut held = Vec::new();
    loop {
        let mut pfd = libc::pollfd { fd: server.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: (fixture) one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        match server.accept() {
            Ok(c) => {
                held.push(c);
                say(serde_json::json!({"worker": id, "hoarded": held.len()}));
            }
            Err(e) if e.code == -libc::EAGAIN => {}
            Err(e) => {
                say(serde_json::json!({"worker": id, "accept_error": e.code}));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Lowers RLIMIT_NOFILE so that exactly `room` more fds fit (fds take the lowest free number,
/// which must stay below the limit).
fn limit_fds(room: u64) {
    let lowest = (0..)
        .find(|&fd| {
            // SAFETY: (fixture) F_GETFD on any number only asks whether it is open.
            let flags = unsafe { libc::fcntl(fd as i32, libc::F_GETFD) };
            flags < 0
        })
        .unwrap_or(0u64);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: (fixture) getrlimit/setrlimit read and write one rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lowest + room;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}
