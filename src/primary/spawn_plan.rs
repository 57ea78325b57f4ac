//! The worker's command line and environment, built in full before anything forks.

#![forbid(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::error::{Error, Result};
use crate::sys::process;
use crate::sys::spawn::SpawnPlan;

use super::settings::{self, Settings};

/// The variables that make a process a worker on a channel (Node's): set here for each
/// worker, never passed on from ours (nor to a new primary, `upgrade`).
pub(super) const NODE_CHANNEL_VARS: [&str; 3] = ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"];

/// Builds the worker's command line before anything forks (house style P2): this program's
/// executable and argv, our environment plus `extra_env`, then `NODE_UNIQUE_ID`,
/// `NODE_CHANNEL_FD=3` and `NODE_CHANNEL_SERIALIZATION_MODE=json`, in Node's order (§2.1).
pub(super) fn build_plan(id: u32, settings: &Settings, extra_env: &[(OsString, OsString)], unset: &[OsString]) -> Result<SpawnPlan> {
    let (mut exe, mut args) = process::current_command().map_err(|e| Error::io("read /proc/self", e))?;
    if let Some(prog) = &settings.exec {
        exe = settings::resolve_program(prog).ok_or_else(|| Error::errno(libc::ENOENT, format!("exec {:?} was not found", prog)))?;
        args = vec![prog.clone()];
    }
    if let Some(extra) = &settings.args {
        args.truncate(1);
        args.extend(extra.iter().cloned());
    }
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| Error::errno(libc::EINVAL, "argument or environment entry contains NUL"));
    // systemd's variables are the primary's alone (`LISTEN_PID` and `WATCHDOG_PID` name it;
    // the primary speaks for its workers on `NOTIFY_SOCKET`), as sd_notify's
    // `unset_environment` has it.
    let internal = [
        NODE_CHANNEL_VARS[0],
        NODE_CHANNEL_VARS[1],
        NODE_CHANNEL_VARS[2],
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ];
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().filter(|(k, _)| !internal.iter().any(|i| k == i)).collect();
    for (k, v) in settings.env.iter().flatten().chain(extra_env) {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env.retain(|(k, _)| !unset.contains(k));
    env.push(("NODE_UNIQUE_ID".into(), id.to_string().into()));
    let extra = settings.extra_stdio.clone().unwrap_or_default();
    let channel_fd = extra.iter().position(|s| *s == settings::Stdio::Channel).map_or(3, |k| 3 + k);
    env.push(("NODE_CHANNEL_FD".into(), channel_fd.to_string().into()));
    env.push(("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()));
    let envp = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpawnPlan {
        path: cstr(exe.as_os_str().as_bytes())?,
        argv: args.iter().map(|a| cstr(a.as_bytes())).collect::<Result<Vec<_>>>()?,
        envp,
        cwd: settings.cwd.as_ref().map(|c| cstr(c.as_os_str().as_bytes())).transpose()?,
        uid: settings.uid,
        gid: settings.gid,
        stdio: settings.stdio(),
        extra,
        parent_death_signal: libc::SIGTERM,
    })
}
