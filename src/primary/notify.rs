//! What the primary tells systemd, and when (`docs/systemd.md`): a pure state machine the
//! distributor feeds with supervision's notices, a snapshot of the counts after each
//! supervision pass, and the clock; it returns the datagrams to send (`sys::notify` sends
//! them). Nothing is sent unless the program opted in (`cluster_systemd`).
//!
//! - `READY=1` (with `STATUS=`) once the initial workers are ready: with supervision, `ready
//!   >= target`; without, every forked worker ready (listening, by default) and at least one.
//! - `RELOADING=1` + `MONOTONIC_USEC=` when a rolling restart starts (or a reload signal
//!   came), `READY=1` when it is done or aborted (or when the signal started nothing).
//! - `STOPPING=1` once, when a stop begins; nothing but `STATUS=` after it.
//! - `STATUS=` whenever the line would change.
//! - `WATCHDOG=1` every `WATCHDOG_USEC / 2`, from the distributor's own loop (so never while
//!   it is wedged), and only while at least one ready worker can serve (not stopped, not
//!   stalled on the accept path); before the first `READY=1` and while stopping, the
//!   distributor's progress alone is enough (start and stop have their own timeouts).

#![forbid(unsafe_code)]

use super::supervisor::{BreakerState, Control, Ms, Notice, RolloutState, UpgradeState};

/// `cluster_systemd` flags.
pub(crate) const NOTIFY: u32 = 1;
pub(crate) const WATCHDOG: u32 = 2;
pub(crate) const FDSTORE: u32 = 4;
pub(crate) const ALL: u32 = NOTIFY | WATCHDOG | FDSTORE;

/// The counts the notifier decides from, read after a supervision pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Supervision's target (0: no target, the program forks).
    pub target: usize,
    /// Workers alive (forked, not yet exited), draining ones included.
    pub workers: usize,
    /// Ready and not draining.
    pub ready: usize,
    pub generation: u32,
    pub breaker: BreakerState,
    pub stopping: bool,
}

#[derive(Debug)]
pub struct Notifier {
    flags: u32,
    /// Half of `WATCHDOG_USEC`, in ms (`None`: no watchdog asked for, or not for this pid).
    watchdog_every: Option<Ms>,
    next_watchdog: Ms,
    ready_sent: bool,
    reloading: bool,
    /// A reload signal came and no rollout started from it (yet).
    reload_unconfirmed: bool,
    stopping: bool,
    /// A hot upgrade handed the service to another primary (`MAINPID=` sent): this one
    /// stops without `STOPPING=1` (systemd would stop the service) and says nothing more.
    handed_over: bool,
    /// This primary started a hot upgrade (until it is aborted).
    handing_over: bool,
    last_status: String,
}

impl Notifier {
    pub fn new(flags: u32, watchdog_every: Option<Ms>, now: Ms) -> Notifier {
        let watchdog_every = watchdog_every.filter(|_| flags & WATCHDOG != 0).map(|e| e.max(1));
        Notifier {
            flags,
            watchdog_every,
            next_watchdog: now,
            ready_sent: false,
            reloading: false,
            reload_unconfirmed: false,
            stopping: false,
            handed_over: false,
            handing_over: false,
            last_status: String::new(),
        }
    }

    fn notifying(&self) -> bool {
        self.flags & NOTIFY != 0
    }

    pub fn fdstore(&self) -> bool {
        self.flags & FDSTORE != 0
    }

    /// A supervision notice: rollouts and reload signals (`monotonic_usec`: the clock for
    /// `MONOTONIC_USEC`, read by the caller).
    pub fn notice(&mut self, n: &Notice, monotonic_usec: impl FnOnce() -> u64) -> Option<String> {
        if !self.notifying() || self.stopping || self.handed_over {
            return None;
        }
        match n {
            // The old primary of a hot upgrade, once the new one is ready: the service's
            // main pid is the new one from now on (tableflip's and shellflip's order).
            Notice::Upgrade { state: UpgradeState::Started, .. } => {
                self.handing_over = true;
                None
            }
            Notice::Upgrade { state: UpgradeState::Aborted, .. } => {
                self.handing_over = false;
                None
            }
            Notice::Upgrade { state: UpgradeState::Ready, pid, .. } if self.handing_over => {
                self.handed_over = true;
                Some(format!("MAINPID={pid}\nREADY=1\nSTATUS=handed over to primary {pid}"))
            }
            Notice::Control { action: Control::Reload, .. } if !self.reloading => {
                self.reload_unconfirmed = true;
                Some(self.begin_reload(monotonic_usec()))
            }
            Notice::Rollout { state: RolloutState::Started, .. } => {
                self.reload_unconfirmed = false;
                (!self.reloading).then(|| self.begin_reload(monotonic_usec()))
            }
            Notice::Rollout { state: RolloutState::Done | RolloutState::Aborted, .. } if self.reloading => {
                self.reloading = false;
                self.reload_unconfirmed = false;
                self.ready_sent = true;
                Some("READY=1".to_string())
            }
            _ => None,
        }
    }

    fn begin_reload(&mut self, usec: u64) -> String {
        self.reloading = true;
        format!("RELOADING=1\nMONOTONIC_USEC={usec}")
    }

    /// After a supervision pass: the initial `READY=1`, `STOPPING=1`, the end of a reload
    /// that started nothing, and `STATUS=` when it changed; all in one datagram.
    pub fn observe(&mut self, s: &Snapshot) -> Option<String> {
        if !self.notifying() {
            return None;
        }
        if self.handed_over {
            return None;
        }
        let mut lines: Vec<String> = Vec::new();
        if s.stopping && !self.stopping {
            self.stopping = true;
            self.reloading = false;
            lines.push("STOPPING=1".into());
        }
        if !self.stopping {
            // A rollout under way before the first READY=1 sends it at its end.
            if !self.ready_sent && !self.reloading && initial_ready(s) {
                self.ready_sent = true;
                lines.push("READY=1".into());
            }
            if std::mem::take(&mut self.reload_unconfirmed) && self.reloading {
                // The signal was refused (the breaker is open, say): the reload is over.
                self.reloading = false;
                self.ready_sent = true;
                lines.push("READY=1".into());
            }
        }
        let status = self.status(s);
        if status != self.last_status {
            lines.push(format!("STATUS={status}"));
            self.last_status = status;
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    fn status(&self, s: &Snapshot) -> String {
        let of = if s.target > 0 { s.target } else { s.workers };
        let breaker = match s.breaker {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        };
        let phase = if self.stopping {
            ", stopping"
        } else if self.reloading {
            ", reloading"
        } else if !self.ready_sent {
            ", starting"
        } else {
            ""
        };
        format!("{}/{} workers ready, generation {}, breaker {}{}", s.ready, of, s.generation, breaker, phase)
    }

    /// When the watchdog is due next (`None`: no watchdog).
    pub fn next_deadline(&self) -> Option<Ms> {
        self.watchdog_every.map(|_| self.next_watchdog)
    }

    /// Whether `WATCHDOG=1` is to be sent now. Called from the distributor's loop (its
    /// progress); `serving`: how many ready workers can serve (asked only when due).
    pub fn watchdog(&mut self, now: Ms, serving: impl FnOnce() -> usize) -> bool {
        let Some(every) = self.watchdog_every else { return false };
        if now < self.next_watchdog {
            return false;
        }
        self.next_watchdog = now + every;
        !self.ready_sent || self.stopping || serving() >= 1
    }
}

/// The initial workers are ready: supervision's target all ready, or (no target) every
/// forked worker ready, at least one.
fn initial_ready(s: &Snapshot) -> bool {
    if s.target > 0 { s.ready >= s.target } else { s.workers > 0 && s.ready >= s.workers }
}

/// The interval for `WATCHDOG=1` from `WATCHDOG_USEC` and `WATCHDOG_PID` (as
/// `sd_watchdog_enabled(3)`): half the timeout, `None` when unset, invalid or meant for
/// another process.
pub fn watchdog_interval(env: impl Fn(&str) -> Option<String>, pid: i32) -> Option<Ms> {
    let usec: u64 = env("WATCHDOG_USEC")?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = env("WATCHDOG_PID")
        && p.trim().parse::<i32>().ok() != Some(pid)
    {
        return None;
    }
    Some((usec / 2 / 1000).max(1))
}

/// The `FDNAME` for a server's listener: `lc-` and its address, in the characters systemd
/// accepts in a name (printable ASCII, no `:`), at most 255.
pub fn fd_name(addr: &str) -> String {
    let mut n: String = format!("lc-{addr}").chars().map(|c| if c.is_ascii_graphic() && c != ':' { c } else { '_' }).collect();
    n.truncate(255);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(target: usize, workers: usize, ready: usize) -> Snapshot {
        Snapshot { target, workers, ready, generation: 1, breaker: BreakerState::Closed, stopping: false }
    }

    fn started() -> Notice {
        Notice::Rollout { state: RolloutState::Started, generation: 2, replaced: 0 }
    }

    #[test]
    fn ready_once_the_target_is_ready_then_status_changes_only() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        assert_eq!(n.observe(&snap(2, 1, 0)).unwrap(), "STATUS=0/2 workers ready, generation 1, breaker closed, starting");
        assert_eq!(n.observe(&snap(2, 2, 0)), None, "same line: nothing");
        assert_eq!(n.observe(&snap(2, 2, 1)).unwrap(), "STATUS=1/2 workers ready, generation 1, breaker closed, starting");
        assert_eq!(n.observe(&snap(2, 2, 2)).unwrap(), "READY=1\nSTATUS=2/2 workers ready, generation 1, breaker closed");
        assert_eq!(n.observe(&snap(2, 1, 1)).unwrap(), "STATUS=1/2 workers ready, generation 1, breaker closed");
        assert_eq!(n.observe(&snap(2, 2, 2)).unwrap(), "STATUS=2/2 workers ready, generation 1, breaker closed", "READY=1 once");
    }

    #[test]
    fn without_a_target_every_forked_worker_must_be_ready() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        assert!(!n.observe(&snap(0, 0, 0)).unwrap().contains("READY=1"), "no worker is not ready");
        assert!(!n.observe(&snap(0, 3, 2)).unwrap().contains("READY=1"));
        assert!(n.observe(&snap(0, 3, 3)).unwrap().starts_with("READY=1\n"));
    }

    #[test]
    fn a_rollout_is_reloading_then_ready() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        n.observe(&snap(2, 2, 2));
        let hup = Notice::Control { action: Control::Reload, signal: libc::SIGHUP };
        assert_eq!(n.notice(&hup, || 42).unwrap(), "RELOADING=1\nMONOTONIC_USEC=42");
        assert_eq!(n.notice(&started(), || 43), None, "the signal's rollout: already reloading");
        assert!(n.observe(&snap(2, 3, 2)).unwrap().ends_with(", reloading"), "no READY=1 while it runs");
        let done = Notice::Rollout { state: RolloutState::Done, generation: 2, replaced: 2 };
        assert_eq!(n.notice(&done, || 0).unwrap(), "READY=1");
        // A rollout the program asked for (no signal), aborted.
        assert_eq!(n.notice(&started(), || 7).unwrap(), "RELOADING=1\nMONOTONIC_USEC=7");
        let aborted = Notice::Rollout { state: RolloutState::Aborted, generation: 3, replaced: 0 };
        assert_eq!(n.notice(&aborted, || 0).unwrap(), "READY=1");
    }

    #[test]
    fn a_reload_signal_that_starts_nothing_ends_at_once() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        n.observe(&snap(2, 2, 2));
        let hup = Notice::Control { action: Control::Reload, signal: libc::SIGHUP };
        assert!(n.notice(&hup, || 1).unwrap().starts_with("RELOADING=1\n"));
        let mut open = snap(2, 2, 2);
        open.breaker = BreakerState::Open;
        assert_eq!(n.observe(&open).unwrap(), "READY=1\nSTATUS=2/2 workers ready, generation 1, breaker open");
    }

    #[test]
    fn a_rollout_before_the_first_ready_ends_with_it() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        assert!(n.notice(&started(), || 5).unwrap().starts_with("RELOADING=1\n"));
        assert!(!n.observe(&snap(2, 2, 2)).unwrap().contains("READY=1"), "not while reloading");
        let done = Notice::Rollout { state: RolloutState::Done, generation: 2, replaced: 2 };
        assert_eq!(n.notice(&done, || 0).unwrap(), "READY=1");
        assert!(!n.observe(&snap(2, 2, 2)).unwrap().contains("READY=1"), "once");
    }

    #[test]
    fn stopping_once_and_nothing_after_but_status() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        n.observe(&snap(2, 2, 2));
        n.notice(&started(), || 1);
        let mut s = snap(2, 2, 2);
        s.stopping = true;
        assert_eq!(n.observe(&s).unwrap(), "STOPPING=1\nSTATUS=2/2 workers ready, generation 1, breaker closed, stopping");
        assert_eq!(n.observe(&s), None);
        let done = Notice::Rollout { state: RolloutState::Done, generation: 2, replaced: 0 };
        assert_eq!(n.notice(&done, || 0), None, "no READY=1 after STOPPING=1");
        assert_eq!(n.observe(&snap(2, 0, 0)).unwrap(), "STATUS=0/2 workers ready, generation 1, breaker closed, stopping");
    }

    #[test]
    fn nothing_without_the_notify_flag() {
        let mut n = Notifier::new(WATCHDOG | FDSTORE, Some(100), 0);
        assert_eq!(n.observe(&snap(1, 1, 1)), None);
        assert_eq!(n.notice(&started(), || 1), None);
        let mut n = Notifier::new(0, Some(100), 0);
        assert_eq!(n.next_deadline(), None, "no watchdog without its flag");
        assert!(!n.watchdog(0, || 1));
    }

    #[test]
    fn the_watchdog_needs_a_serving_worker_once_ready() {
        let mut n = Notifier::new(NOTIFY | WATCHDOG, Some(500), 0);
        assert!(n.watchdog(0, || 0), "before READY=1: progress is enough");
        assert_eq!(n.next_deadline(), Some(500));
        assert!(!n.watchdog(499, || 1), "not due");
        n.observe(&snap(1, 1, 1));
        assert!(!n.watchdog(500, || 0), "ready, but no worker can serve");
        assert_eq!(n.next_deadline(), Some(1000));
        assert!(n.watchdog(1000, || 1));
        let mut s = snap(1, 1, 1);
        s.stopping = true;
        n.observe(&s);
        assert!(n.watchdog(1500, || 0), "stopping: progress is enough");
    }

    #[test]
    fn watchdog_environment_and_fd_names() {
        let env = |usec: &'static str, pid: Option<&'static str>| {
            move |k: &str| match k {
                "WATCHDOG_USEC" => Some(usec.to_string()),
                "WATCHDOG_PID" => pid.map(str::to_string),
                _ => None,
            }
        };
        assert_eq!(watchdog_interval(env("4000000", None), 9), Some(2000));
        assert_eq!(watchdog_interval(env("4000000", Some("9")), 9), Some(2000));
        assert_eq!(watchdog_interval(env("4000000", Some("8")), 9), None, "another process's");
        assert_eq!(watchdog_interval(env("0", None), 9), None);
        assert_eq!(watchdog_interval(|_| None, 9), None);
        assert_eq!(fd_name("127.0.0.1:8000"), "lc-127.0.0.1_8000");
        assert_eq!(fd_name("[::1]:80"), "lc-[__1]_80");
        assert_eq!(fd_name(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn a_hot_upgrade_hands_the_main_pid_over_and_never_says_stopping() {
        let mut n = Notifier::new(NOTIFY, None, 0);
        let s = snap(2, 2, 2);
        assert_eq!(n.observe(&s).unwrap(), "READY=1\nSTATUS=2/2 workers ready, generation 1, breaker closed");
        let up = |state| Notice::Upgrade { state, pid: 4242, error: 0 };
        assert_eq!(n.notice(&up(UpgradeState::Started), || 0), None);
        assert_eq!(n.notice(&up(UpgradeState::Ready), || 0).unwrap(), "MAINPID=4242\nREADY=1\nSTATUS=handed over to primary 4242");
        let stopping = Snapshot { stopping: true, ..s };
        assert_eq!(n.observe(&stopping), None, "the service goes on in the new primary");
        // The new primary's side: a Ready notice from its old primary sends nothing.
        let mut new = Notifier::new(NOTIFY, None, 0);
        assert_eq!(new.notice(&up(UpgradeState::Ready), || 0), None);
        // Aborted: the old primary goes on as before.
        let mut old = Notifier::new(NOTIFY, None, 0);
        old.observe(&s);
        old.notice(&up(UpgradeState::Started), || 0);
        old.notice(&up(UpgradeState::Aborted), || 0);
        assert_eq!(old.notice(&up(UpgradeState::Ready), || 0), None);
        assert_eq!(old.observe(&stopping).unwrap(), "STOPPING=1\nSTATUS=2/2 workers ready, generation 1, breaker closed, stopping");
    }
}
