//! Node's `cluster.settings` (`setupPrimary`): what later forks run. Settings accumulate:
//! each call changes only the fields it gives (§2.2).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;

pub use crate::sys::spawn::Stdio;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The program to run; `None`: this program (`/proc/self/exe`).
    pub exec: Option<OsString>,
    /// argv after argv[0]; `None`: this process's argv[1..].
    pub args: Option<Vec<OsString>>,
    /// The worker's working directory; `None`: ours.
    pub cwd: Option<PathBuf>,
    /// Extra environment for every worker.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// Node's `silent`: stdio piped to the primary.
    pub silent: Option<bool>,
    /// Node's `stdio` (overrides `silent`).
    pub stdio: Option<[Stdio; 3]>,
    /// The worker's fds 4, 5, ... (set together with `stdio`).
    pub extra_stdio: Option<Vec<Stdio>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Settings {
    /// Applies the fields `update` sets.
    pub fn merge(&mut self, update: Settings) {
        if update.exec.is_some() {
            self.exec = update.exec;
        }
        if update.args.is_some() {
            self.args = update.args;
        }
        if update.cwd.is_some() {
            self.cwd = update.cwd;
        }
        if update.env.is_some() {
            self.env = update.env;
        }
        if update.silent.is_some() {
            self.silent = update.silent;
        }
        if update.stdio.is_some() {
            self.stdio = update.stdio;
            self.extra_stdio = update.extra_stdio;
        }
        if update.uid.is_some() {
            self.uid = update.uid;
        }
        if update.gid.is_some() {
            self.gid = update.gid;
        }
    }

    /// What the worker's stdio will be.
    pub fn stdio(&self) -> [Stdio; 3] {
        match (self.stdio, self.silent) {
            (Some(s), _) => s,
            (None, Some(true)) => [Stdio::Pipe; 3],
            _ => [Stdio::Inherit; 3],
        }
    }
}

/// Finds `prog` the way `execvp` would: as given if it contains '/', else on `PATH`.
pub fn resolve_program(prog: &OsString) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if prog.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}
