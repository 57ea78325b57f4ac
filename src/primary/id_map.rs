//! Maps keyed by worker and handle ids (small integers the primary hands out itself), hashed
//! by a multiply instead of SipHash: no peer chooses these keys, so flooding is not a
//! concern, and the distributor looks them up several times per connection.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` keyed by an id.
pub type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_and_round_trip() {
        let mut m: IdMap<u32> = IdMap::default();
        for i in 1..=1000 {
            m.insert(i, i * 2);
        }
        assert!((1..=1000).all(|i| m[&i] == i * 2));
        let h = |n: u32| {
            let mut s = IdHasher::default();
            s.write_u32(n);
            s.finish() >> 57
        };
        // Consecutive ids land in different top-7-bit groups (what hashbrown looks at).
        let groups: std::collections::HashSet<u64> = (1..=16).map(h).collect();
        assert!(groups.len() > 8);
    }
}
