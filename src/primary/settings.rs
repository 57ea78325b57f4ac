//! Node's `cluster.settings` (`setupPrimary`): what later forks run. Settings accumulate:
//! each call changes only the fields it gives (§2.2).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The program to run; `None`: this program (`/proc/self/exe`).
    pub exec: Option<OsString>,
    /// argv after argv[0]; `None`: this process's argv[1..].
    pub args: Option<Vec<OsString>>,
    /// The worker's working directory; `None`: ours.
    pub cwd: Option<PathBuf>,
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
