//! `cluster_version()`: the loaded library's version, as `CLUSTER_VERSION` encodes the
//! header's (`CLUSTER_VERSION_MAJOR/MINOR/PATCH`, which build.rs writes into the header from
//! the same Cargo.toml version).

use std::ffi::c_int;

/// Parses a decimal version part at compile time (Cargo's `CARGO_PKG_VERSION_*`).
const fn parse(s: &str) -> c_int {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "empty version part");
    let mut v: c_int = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version part is not a number");
        v = v * 10 + (b[i] - b'0') as c_int;
        i += 1;
    }
    v
}

pub(crate) const MAJOR: c_int = parse(env!("CARGO_PKG_VERSION_MAJOR"));
pub(crate) const MINOR: c_int = parse(env!("CARGO_PKG_VERSION_MINOR"));
pub(crate) const PATCH: c_int = parse(env!("CARGO_PKG_VERSION_PATCH"));
const _: () = assert!(MINOR < 100 && PATCH < 100 && MAJOR < 21474, "the version does not fit MAJOR * 10000 + MINOR * 100 + PATCH");

/// The version of the loaded library: `MAJOR * 10000 + MINOR * 100 + PATCH` (0.1.0 is 100),
/// never negative.
///
/// Compare it with `CLUSTER_VERSION`, the version of the header a program was compiled
/// with: a library older than the header may lack functions or struct fields the program
/// uses (structs grow by size, see `cluster_settings_init`). Safe to call from any thread,
/// in any role, before any other call.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_version() -> c_int {
    ffi_guard!({ MAJOR * 10000 + MINOR * 100 + PATCH })
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_matches_cargo() {
        let v = env!("CARGO_PKG_VERSION");
        let parts: Vec<i32> = v.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap()).collect();
        assert_eq!(super::cluster_version(), parts[0] * 10000 + parts[1] * 100 + parts[2]);
    }

    #[test]
    fn header_macros_match() {
        let h = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/cluster.h")).unwrap();
        for (name, v) in [("MAJOR", super::MAJOR), ("MINOR", super::MINOR), ("PATCH", super::PATCH)] {
            assert!(h.contains(&format!("#define CLUSTER_VERSION_{name} {v}\n")), "cluster.h lacks CLUSTER_VERSION_{name} {v}");
        }
        let v = super::cluster_version();
        assert!(h.contains(&format!("#define CLUSTER_VERSION {v}\n")), "cluster.h lacks CLUSTER_VERSION {v}");
    }
}
