//! Installing and restoring signal handlers: only for a program that asks
//! (`cluster_install_signal_handlers`); the library never installs one by itself.

use std::io;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use parking_lot::Mutex;

/// The handlers that were there before ours, to restore.
static SAVED: Mutex<Vec<(Signal, SigAction)>> = Mutex::new(Vec::new());

/// Installs `handler` for each of `signals` (`SA_RESTART`, nothing masked); the previous
/// handlers are kept for `restore`. Installing again over ours keeps the first saved ones.
pub fn install(signals: &[i32], handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    let action = SigAction::new(SigHandler::Handler(handler), SaFlags::SA_RESTART, SigSet::empty());
    let sigs = signals.iter().map(|&s| Signal::try_from(s).map_err(io::Error::from)).collect::<io::Result<Vec<_>>>()?;
    let mut saved = SAVED.lock();
    for sig in sigs {
        // SAFETY: the handler only touches atomics and calls write(2) (async-signal-safe).
        let old = unsafe { sigaction(sig, &action) }?;
        if !saved.iter().any(|(s, _)| *s == sig) {
            saved.push((sig, old));
        }
    }
    Ok(())
}

/// Puts back the handlers `install` replaced.
pub fn restore() -> io::Result<()> {
    let mut saved = SAVED.lock();
    for (sig, old) in saved.drain(..) {
        // SAFETY: restores a disposition the process had before.
        unsafe { sigaction(sig, &old) }?;
    }
    Ok(())
}
