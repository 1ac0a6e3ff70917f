//! The set of byte ranges of a staged upload that have arrived.

use serde::{Deserialize, Serialize};

/// Disjoint, sorted, half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < s || a > e {
                kept.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        kept.push((s, e));
        kept.sort_unstable();
        self.0 = kept;
    }

    /// Bytes covered.
    pub fn covered(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Whether `[0, total)` is covered.
    pub fn is_complete(&self, total: u64) -> bool {
        total == 0 || self.0.first() == Some(&(0, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_out_of_order_ranges() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        assert!(!r.is_complete(40));
        r.insert(0, 10);
        assert_eq!(r.covered(), 30);
        r.insert(15, 35);
        assert!(r.is_complete(40));
        assert_eq!(r.covered(), 40);
        r.insert(5, 5);
        assert_eq!(r.covered(), 40);
    }
}
