//! The crash-loop breaker: boot failures (deaths before ready) are counted in a sliding
//! window; too many and it opens (no forks), after a cool-down it lets one probe through
//! (half-open), and the probe's readiness closes it again.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use super::Ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    pub state: BreakerState,
    /// Times of the boot failures within the window.
    failures: VecDeque<Ms>,
    /// Open: when the probe may go (`None`: only a reset closes it).
    pub open_until: Option<Ms>,
    /// Half-open: the probe's worker id, once forked.
    pub probe: Option<u32>,
}

impl Breaker {
    pub fn new() -> Breaker {
        Breaker { state: BreakerState::Closed, failures: VecDeque::new(), open_until: None, probe: None }
    }

    /// Records a boot failure at `now`; true when the breaker must open (it is not open
    /// already and `burst` failures fell within `window`, or the probe failed).
    pub fn failed(&mut self, now: Ms, burst: usize, window: Ms) -> bool {
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|&t| t + window <= now) {
            self.failures.pop_front();
        }
        match self.state {
            BreakerState::Closed => self.failures.len() >= burst,
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        }
    }

    pub fn failures(&self) -> usize {
        self.failures.len()
    }

    pub fn open(&mut self, now: Ms, cooldown: Ms) {
        self.state = BreakerState::Open;
        self.open_until = (cooldown > 0).then_some(now + cooldown);
        self.probe = None;
    }

    /// Open and its cool-down is over: becomes half-open (true).
    pub fn cooled(&mut self, now: Ms) -> bool {
        if self.state == BreakerState::Open && self.open_until.is_some_and(|t| now >= t) {
            self.state = BreakerState::HalfOpen;
            self.open_until = None;
            return true;
        }
        false
    }

    pub fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.failures.clear();
        self.open_until = None;
        self.probe = None;
    }
}
