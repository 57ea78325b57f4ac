//! `cluster_setup_primary` applies all or nothing: a call refused for any field leaves the
//! scheduling policy, the tuning values and the fork settings as they were.

use cluster::testing::capi::primary::{cluster_settings_init, cluster_setup_primary};
use cluster::testing::capi::types::{CLUSTER_SCHED_NONE, cluster_settings};
use cluster::testing::primary::SchedPolicy;

fn settings() -> cluster_settings {
    let mut s = std::mem::MaybeUninit::<cluster_settings>::zeroed();
    // SAFETY: a writable struct of the size given.
    let rc = unsafe { cluster_settings_init(s.as_mut_ptr(), std::mem::size_of::<cluster_settings>()) };
    assert_eq!(rc, 0);
    // SAFETY: cluster_settings_init filled every field.
    unsafe { s.assume_init() }
}

#[test]
fn a_refused_call_changes_nothing() {
    // SAFETY: this test process has no NODE_UNIQUE_ID: it is a primary.
    unsafe { std::env::remove_var("NODE_CLUSTER_SCHED_POLICY") };
    let p = cluster::testing::context::primary().expect("primary");
    assert_eq!(p.sched_policy(), SchedPolicy::RoundRobin);
    let exec = c"/bin/true";
    for bad in 0..3 {
        let mut s = settings();
        s.sched_policy = CLUSTER_SCHED_NONE;
        s.exec = exec.as_ptr();
        match bad {
            0 => s.max_in_flight = 5000,
            1 => s.least_loaded = 7,
            _ => s.max_servers = -3,
        }
        // SAFETY: a valid settings struct.
        assert_eq!(unsafe { cluster_setup_primary(&s) }, -libc::EINVAL, "case {bad}");
        assert_eq!(p.sched_policy(), SchedPolicy::RoundRobin, "case {bad}: the policy changed although the call failed");
        assert!(p.settings().exec.is_none(), "case {bad}: exec changed although the call failed");
    }
    // A field checked by `Settings::validate` (a stdio fd that is not open) refuses the
    // whole call too.
    let fds = [0, 1, 1 << 20];
    let mut s = settings();
    s.sched_policy = CLUSTER_SCHED_NONE;
    s.exec = exec.as_ptr();
    s.stdio = fds.as_ptr();
    // SAFETY: a valid settings struct; `stdio` points to 3 ints.
    assert_eq!(unsafe { cluster_setup_primary(&s) }, -libc::EBADF);
    assert_eq!(p.sched_policy(), SchedPolicy::RoundRobin, "the policy changed although the call failed");
    assert!(p.settings().exec.is_none() && p.settings().stdio.is_none(), "exec or stdio changed although the call failed");
    // A valid call applies it all.
    let mut s = settings();
    s.sched_policy = CLUSTER_SCHED_NONE;
    s.exec = exec.as_ptr();
    // SAFETY: a valid settings struct.
    assert_eq!(unsafe { cluster_setup_primary(&s) }, 0);
    assert_eq!(p.sched_policy(), SchedPolicy::None);
    assert_eq!(p.settings().exec.as_deref(), Some(std::ffi::OsStr::new("/bin/true")));
}
