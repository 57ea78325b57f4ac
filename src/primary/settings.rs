//! Node's `cluster.settings` (`setupPrimary`) and libcluster's tuning: every setting of the
//! primary, in one type.
//!
//! A [`Settings`] value is used two ways:
//! - as an *update* (what one `setupPrimary` call passes): `None` fields are left unchanged;
//!   [`Settings::validate`] checks the whole update before anything is applied;
//! - as the primary's *current* settings, which accumulate updates ([`Settings::merge`],
//!   Node's rule, §2.2). `Primary::setup` validates and merges under one lock, so a call that
//!   fails changes nothing, and the distributor reads the same value (a
//!   `Distribution` snapshot taken once per `queryServer`, never per connection).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::SchedPolicy;
use crate::error::{Error, Result};

pub use crate::sys::spawn::Stdio;

/// Most servers one worker may hold unless set otherwise (Node programs hold a few).
pub(crate) const DEFAULT_MAX_SERVERS: usize = 64;
/// Most connections waiting in one fast-lane worker's queue unless set otherwise.
pub(crate) const DEFAULT_LANE_WINDOW: usize = 16;
/// `max_in_flight` and `lane_window` range.
pub(crate) const MAX_IN_FLIGHT_LIMIT: usize = 1024;
/// `max_servers` range.
pub(crate) const MAX_SERVERS_LIMIT: usize = 65536;
/// Most entries in a `stdio` list (the three standard ones included).
pub(crate) const MAX_STDIO: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    // What later forks run (Node's `cluster.settings`).
    /// The program to run; `None`: this program (`/proc/self/exe`).
    pub exec: Option<OsString>,
    /// argv after `argv[0]`; `None`: this process's `argv[1..]`.
    pub args: Option<Vec<OsString>>,
    /// The worker's working directory; `None`: ours.
    pub cwd: Option<PathBuf>,
    /// Extra environment for every worker.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// Node's `silent`: stdio piped to the primary.
    pub silent: Option<bool>,
    /// Node's `stdio` (overrides `silent`).
    pub stdio: Option<[Stdio; 3]>,
    /// The worker's fds 3, 4, ... (set together with `stdio`; exactly one is the channel).
    pub extra_stdio: Option<Vec<Stdio>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,

    // How connections reach workers (read by the distributor).
    /// The scheduling policy; fixed once the first worker is forked (changing it then fails
    /// with `EBUSY`; setting the current one again is not a change). Default: round-robin,
    /// or `NODE_CLUSTER_SCHED_POLICY`.
    pub sched_policy: Option<SchedPolicy>,
    /// Connections in flight per libcluster worker, 1 to 1024 (Node workers always get 1).
    /// Default 1, or `LIBCLUSTER_MAX_INFLIGHT`.
    pub max_in_flight: Option<usize>,
    /// Hand a connection to the worker with the fewest unanswered ones instead of the
    /// longest idle. Default off.
    pub least_loaded: Option<bool>,
    /// Most servers one worker may hold, 1 to 65536 (its next `queryServer` fails with
    /// `EMFILE`). Default 64, or `LIBCLUSTER_MAX_SERVERS`.
    pub max_servers: Option<usize>,
    /// Grant the fast lane to libcluster workers that ask. Default on
    /// (`LIBCLUSTER_FAST_LANE=0`: off).
    pub fast_lane: Option<bool>,
    /// Most connections waiting in one fast-lane worker's queue, 1 to 1024. Default 16, or
    /// `LIBCLUSTER_LANE_WINDOW`.
    pub lane_window: Option<usize>,
}

/// What the distributor needs of the settings, copied out in one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Distribution {
    pub sched_policy: SchedPolicy,
    pub max_in_flight: usize,
    pub least_loaded: bool,
    pub max_servers: usize,
    pub fast_lane: bool,
    pub lane_window: usize,
}

fn invalid(what: impl Into<String>) -> Error {
    Error::errno(libc::EINVAL, what)
}

fn no_nul(s: &std::ffi::OsStr, what: &str) -> Result<()> {
    if s.as_bytes().contains(&0) {
        return Err(invalid(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

impl Settings {
    /// The primary's settings before any `setupPrimary`: the defaults, with what the
    /// environment says (`NODE_CLUSTER_SCHED_POLICY`, `LIBCLUSTER_*`).
    pub(crate) fn from_env() -> Settings {
        let num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
        let sched_policy = match std::env::var("NODE_CLUSTER_SCHED_POLICY").as_deref() {
            Ok("none") => SchedPolicy::None,
            Ok("reuseport") => SchedPolicy::ReusePort,
            _ => SchedPolicy::RoundRobin,
        };
        Settings {
            sched_policy: Some(sched_policy),
            max_in_flight: Some(num("LIBCLUSTER_MAX_INFLIGHT").unwrap_or(1).clamp(1, MAX_IN_FLIGHT_LIMIT)),
            least_loaded: Some(false),
            max_servers: Some(num("LIBCLUSTER_MAX_SERVERS").unwrap_or(DEFAULT_MAX_SERVERS).clamp(1, MAX_SERVERS_LIMIT)),
            fast_lane: Some(std::env::var("LIBCLUSTER_FAST_LANE").map_or(true, |v| v != "0")),
            lane_window: Some(num("LIBCLUSTER_LANE_WINDOW").unwrap_or(DEFAULT_LANE_WINDOW).clamp(1, MAX_IN_FLIGHT_LIMIT)),
            ..Settings::default()
        }
    }

    /// Checks every field this update sets, without looking at the primary's state (the one
    /// rule that depends on it, the policy's `EBUSY` after the first fork, is
    /// `Primary::setup`'s). `Err` (`-EINVAL`, or `-EBADF` for a stdio fd that is not open)
    /// names the first bad field.
    pub fn validate(&self) -> Result<()> {
        if let Some(exec) = &self.exec {
            if exec.is_empty() {
                return Err(invalid("exec is empty"));
            }
            no_nul(exec, "exec")?;
        }
        for a in self.args.iter().flatten() {
            no_nul(a, "an args entry")?;
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err(invalid("cwd is empty"));
            }
            no_nul(cwd.as_os_str(), "cwd")?;
        }
        for (k, v) in self.env.iter().flatten() {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(invalid("env entries must look like KEY=VALUE"));
            }
            no_nul(k, "an env key")?;
            no_nul(v, "an env value")?;
        }
        let check_fd = |i: usize, s: &Stdio| -> Result<()> {
            match *s {
                Stdio::Fd(fd) if fd < 0 => Err(invalid("stdio entries must be CLUSTER_STDIO_* or an open fd")),
                Stdio::Fd(fd) if !crate::sys::fd::is_open(fd) => Err(Error::errno(libc::EBADF, format!("stdio[{i}]: fd {fd} is not open"))),
                _ => Ok(()),
            }
        };
        match (&self.stdio, &self.extra_stdio) {
            (None, Some(_)) => return Err(invalid("extra_stdio is set without stdio")),
            (None, None) => {}
            (Some(std3), extra) => {
                for (i, s) in std3.iter().enumerate() {
                    if *s == Stdio::Channel {
                        return Err(invalid("stdio entries must be CLUSTER_STDIO_* or an open fd"));
                    }
                    check_fd(i, s)?;
                }
                let extra = extra.as_deref().unwrap_or(&[]);
                if 3 + extra.len() > MAX_STDIO {
                    return Err(invalid("stdio_count must be 0 or 3 to 64"));
                }
                for (i, s) in extra.iter().enumerate() {
                    check_fd(3 + i, s)?;
                }
                if !extra.is_empty() && extra.iter().filter(|e| **e == Stdio::Channel).count() != 1 {
                    return Err(invalid("a stdio list longer than 3 needs exactly one CLUSTER_STDIO_IPC past index 2 (the channel's fd)"));
                }
            }
        }
        if self.max_in_flight.is_some_and(|n| !(1..=MAX_IN_FLIGHT_LIMIT).contains(&n)) {
            return Err(invalid("max_in_flight must be 0 (unchanged) or 1 to 1024"));
        }
        if self.max_servers.is_some_and(|n| !(1..=MAX_SERVERS_LIMIT).contains(&n)) {
            return Err(invalid("max_servers must be 0 (unchanged) or 1 to 65536"));
        }
        if self.lane_window.is_some_and(|n| !(1..=MAX_IN_FLIGHT_LIMIT).contains(&n)) {
            return Err(invalid("lane_window must be 1 to 1024"));
        }
        Ok(())
    }

    /// Applies the fields `update` sets (unchecked: validate it first).
    pub fn merge(&mut self, update: Settings) {
        fn set<T>(cur: &mut Option<T>, new: Option<T>) {
            if new.is_some() {
                *cur = new;
            }
        }
        let Settings {
            exec,
            args,
            cwd,
            env,
            silent,
            stdio,
            extra_stdio,
            uid,
            gid,
            sched_policy,
            max_in_flight,
            least_loaded,
            max_servers,
            fast_lane,
            lane_window,
        } = update;
        set(&mut self.exec, exec);
        set(&mut self.args, args);
        set(&mut self.cwd, cwd);
        set(&mut self.env, env);
        set(&mut self.silent, silent);
        if stdio.is_some() {
            // Set together: a new stdio list replaces the extra fds too.
            self.stdio = stdio;
            self.extra_stdio = extra_stdio;
        }
        set(&mut self.uid, uid);
        set(&mut self.gid, gid);
        set(&mut self.sched_policy, sched_policy);
        set(&mut self.max_in_flight, max_in_flight);
        set(&mut self.least_loaded, least_loaded);
        set(&mut self.max_servers, max_servers);
        set(&mut self.fast_lane, fast_lane);
        set(&mut self.lane_window, lane_window);
    }

    /// What the worker's stdio will be.
    pub fn stdio(&self) -> [Stdio; 3] {
        match (self.stdio, self.silent) {
            (Some(s), _) => s,
            (None, Some(true)) => [Stdio::Pipe; 3],
            _ => [Stdio::Inherit; 3],
        }
    }

    /// The scheduling policy these settings give (round-robin when unset).
    pub fn sched_policy(&self) -> SchedPolicy {
        self.sched_policy.unwrap_or(SchedPolicy::RoundRobin)
    }

    /// The distributor's values, with the defaults for fields never set.
    pub(crate) fn distribution(&self) -> Distribution {
        Distribution {
            sched_policy: self.sched_policy(),
            max_in_flight: self.max_in_flight.unwrap_or(1),
            least_loaded: self.least_loaded.unwrap_or(false),
            max_servers: self.max_servers.unwrap_or(DEFAULT_MAX_SERVERS),
            fast_lane: self.fast_lane.unwrap_or(true),
            lane_window: self.lane_window.unwrap_or(DEFAULT_LANE_WINDOW),
        }
    }
}

/// Finds `prog` the way `execvp` would: as given if it contains '/', else on `PATH`.
pub fn resolve_program(prog: &OsString) -> Option<PathBuf> {
    if prog.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &Settings) -> i32 {
        s.validate().err().map_or(0, |e| e.code)
    }

    #[test]
    fn an_empty_update_is_valid_and_changes_nothing() {
        assert_eq!(code(&Settings::default()), 0);
        let mut cur = Settings::from_env();
        let before = cur.clone();
        cur.merge(Settings::default());
        assert_eq!(cur, before);
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(code(&Settings::from_env()), 0);
        let d = Settings::default().distribution();
        assert_eq!(
            d,
            Distribution {
                sched_policy: SchedPolicy::RoundRobin,
                max_in_flight: 1,
                least_loaded: false,
                max_servers: 64,
                fast_lane: true,
                lane_window: 16
            }
        );
    }

    #[test]
    fn ranges_are_checked() {
        let einval = -libc::EINVAL;
        for n in [0, 1025, usize::MAX] {
            assert_eq!(code(&Settings { max_in_flight: Some(n), ..Default::default() }), einval, "max_in_flight {n}");
            assert_eq!(code(&Settings { lane_window: Some(n), ..Default::default() }), einval, "lane_window {n}");
        }
        for n in [1, 1024] {
            assert_eq!(code(&Settings { max_in_flight: Some(n), lane_window: Some(n), ..Default::default() }), 0);
        }
        assert_eq!(code(&Settings { max_servers: Some(0), ..Default::default() }), einval);
        assert_eq!(code(&Settings { max_servers: Some(65537), ..Default::default() }), einval);
        assert_eq!(code(&Settings { max_servers: Some(65536), ..Default::default() }), 0);
    }

    #[test]
    fn strings_are_checked() {
        let einval = -libc::EINVAL;
        assert_eq!(code(&Settings { exec: Some("".into()), ..Default::default() }), einval);
        assert_eq!(code(&Settings { exec: Some("a\0b".into()), ..Default::default() }), einval);
        assert_eq!(code(&Settings { exec: Some("/bin/true".into()), ..Default::default() }), 0);
        assert_eq!(code(&Settings { args: Some(vec!["ok".into(), "n\0".into()]), ..Default::default() }), einval);
        assert_eq!(code(&Settings { cwd: Some(PathBuf::new()), ..Default::default() }), einval);
        for (k, v) in [("", "v"), ("A=B", "v"), ("K\0", "v"), ("K", "v\0")] {
            assert_eq!(code(&Settings { env: Some(vec![(k.into(), v.into())]), ..Default::default() }), einval, "{k:?}={v:?}");
        }
        assert_eq!(code(&Settings { env: Some(vec![("K".into(), "a=b".into())]), ..Default::default() }), 0);
    }

    #[test]
    fn stdio_is_checked() {
        let einval = -libc::EINVAL;
        let with = |std3: [Stdio; 3], extra: Option<Vec<Stdio>>| Settings { stdio: Some(std3), extra_stdio: extra, ..Default::default() };
        let std3 = [Stdio::Pipe, Stdio::Inherit, Stdio::Ignore];
        assert_eq!(code(&with(std3, None)), 0);
        assert_eq!(code(&with(std3, Some(vec![]))), 0);
        assert_eq!(code(&with(std3, Some(vec![Stdio::Channel]))), 0);
        assert_eq!(code(&with(std3, Some(vec![Stdio::Pipe, Stdio::Channel]))), 0);
        assert_eq!(code(&with(std3, Some(vec![Stdio::Pipe]))), einval, "no channel");
        assert_eq!(code(&with(std3, Some(vec![Stdio::Channel, Stdio::Channel]))), einval, "two channels");
        assert_eq!(code(&with([Stdio::Channel, Stdio::Inherit, Stdio::Inherit], None)), einval, "channel in 0..3");
        assert_eq!(code(&with(std3, Some(vec![Stdio::Ignore; 61]))), einval, "65 entries");
        let mut sixty_one = vec![Stdio::Ignore; 60];
        sixty_one.push(Stdio::Channel);
        assert_eq!(code(&with(std3, Some(sixty_one))), 0, "64 entries");
        assert_eq!(code(&Settings { extra_stdio: Some(vec![Stdio::Channel]), ..Default::default() }), einval, "extra without stdio");
        // An fd must be open: 2 is (the test harness's stderr); a huge one is not.
        assert_eq!(code(&with([Stdio::Inherit, Stdio::Inherit, Stdio::Fd(2)], None)), 0);
        assert_eq!(code(&with([Stdio::Fd(1 << 20), Stdio::Inherit, Stdio::Inherit], None)), -libc::EBADF);
        assert_eq!(code(&with([Stdio::Fd(-5), Stdio::Inherit, Stdio::Inherit], None)), einval);
    }

    #[test]
    fn merge_keeps_what_an_update_leaves_out() {
        let mut cur = Settings::from_env();
        cur.merge(Settings {
            exec: Some("/bin/a".into()),
            max_in_flight: Some(8),
            stdio: Some([Stdio::Pipe; 3]),
            extra_stdio: Some(vec![Stdio::Channel]),
            ..Default::default()
        });
        cur.merge(Settings { args: Some(vec!["x".into()]), least_loaded: Some(true), ..Default::default() });
        assert_eq!(cur.exec.as_deref(), Some(std::ffi::OsStr::new("/bin/a")));
        assert_eq!(cur.args, Some(vec![OsString::from("x")]));
        assert_eq!(cur.distribution().max_in_flight, 8);
        assert!(cur.distribution().least_loaded);
        assert_eq!(cur.extra_stdio, Some(vec![Stdio::Channel]));
        // A new stdio list replaces the extra fds with it.
        cur.merge(Settings { stdio: Some([Stdio::Inherit; 3]), ..Default::default() });
        assert_eq!(cur.extra_stdio, None);
        assert_eq!(cur.stdio(), [Stdio::Inherit; 3]);
    }
}
