//! systemd socket activation (`sd_listen_fds(3)`'s protocol, no libsystemd): the sockets
//! passed as fds 3, 4, ... when `LISTEN_PID` is this process, `LISTEN_FDS` says how many and
//! `LISTEN_FDNAMES` names them. They go to the inherited pool (`inherited`), where a
//! worker's `queryServer` for the same address takes one instead of a new bind.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};

use super::inherited::Inherited;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const FIRST: i32 = 3;

/// Which sockets the environment passes to process `pid`: `(fd, name)` pairs. None when
/// `LISTEN_PID` is absent or another process's (the variables were meant for a parent).
pub fn passed(env: impl Fn(&str) -> Option<String>, pid: i32) -> Result<Vec<(i32, Option<String>)>> {
    let Some(for_pid) = env("LISTEN_PID") else { return Ok(Vec::new()) };
    if for_pid.trim().parse::<i32>().ok() != Some(pid) {
        return Ok(Vec::new());
    }
    let n: i32 = env("LISTEN_FDS")
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| (0..=4096).contains(n))
        .ok_or_else(|| Error::errno(libc::EINVAL, "LISTEN_FDS is not a number of fds"))?;
    let names: Vec<String> = env("LISTEN_FDNAMES").map(|v| v.split(':').map(str::to_owned).collect()).unwrap_or_default();
    Ok((0..n).map(|i| (FIRST + i, names.get(i as usize).filter(|s| !s.is_empty()).cloned())).collect())
}

/// Adopts the sockets systemd passed this process into `pool`; returns how many. An fd that
/// is not open or not a socket fails the call (`EBADF`, `ENOTSOCK`) after the others.
pub fn adopt(pool: &mut Inherited) -> Result<usize> {
    let list = passed(|k| std::env::var(k).ok(), crate::sys::process::getpid())?;
    let mut first_err = None;
    let mut n = 0;
    for (fd, name) in list {
        let r = crate::sys::fd::adopt_inherited(fd).and_then(|owned| pool.add(owned, name));
        match r {
            Ok(()) => n += 1,
            Err(e) => {
                first_err.get_or_insert(Error::io(format!("LISTEN_FDS fd {fd}"), e));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_are_read_only_for_this_pid() {
        let env = |pid: &'static str, n: &'static str, names: Option<&'static str>| {
            move |k: &str| match k {
                "LISTEN_PID" => Some(pid.to_string()),
                "LISTEN_FDS" => Some(n.to_string()),
                "LISTEN_FDNAMES" => names.map(str::to_string),
                _ => None,
            }
        };
        assert_eq!(passed(env("42", "2", Some("web:")), 42).unwrap(), vec![(3, Some("web".into())), (4, None)]);
        assert!(passed(env("41", "2", None), 42).unwrap().is_empty(), "meant for another process");
        assert!(passed(|_| None, 42).unwrap().is_empty());
        assert_eq!(passed(env("42", "x", None), 42).unwrap_err().code, -libc::EINVAL);
    }
}
