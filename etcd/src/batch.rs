//! Turning a batch into writes etcd accepts in one transaction.
//!
//! etcd refuses a transaction that names a key twice, or that puts a key
//! inside a range it also deletes. A batch may do both (a put after a prefix
//! delete is a common way to reset a subtree), so it is reduced to its final
//! effect first: one write per key, and prefix deletes cut around the keys
//! the batch puts afterwards.

use std::collections::BTreeMap;

/// A batch operation on full (namespaced) keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeletePrefix(Vec<u8>),
}

/// One write of a flattened batch; no two touch the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes keys in `[from, end)`; an `end` of `[0]` means no upper bound.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// etcd's range end for a prefix: the prefix with its last byte below 0xff
/// incremented (trailing 0xff bytes dropped), or `[0]` (every key) if none.
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn below(key: &[u8], end: &[u8]) -> bool {
    end == [0] || key < end
}

/// The writes with the same final effect as `ops` applied in order.
pub fn flatten(ops: impl IntoIterator<Item = Op>) -> Vec<Write> {
    // Final value per key (None: deleted) and the prefixes deleted.
    let mut keys: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                keys.insert(k, Some(v));
            }
            Op::Delete(k) => {
                keys.insert(k, None);
            }
            Op::DeletePrefix(p) => {
                // Earlier writes under the prefix are undone by it.
                keys.retain(|k, _| !k.starts_with(&p));
                prefixes.push(p);
            }
        }
    }
    // A prefix inside another deleted prefix adds nothing.
    prefixes.sort();
    prefixes.dedup();
    let mut outer: Vec<Vec<u8>> = Vec::new();
    for p in prefixes {
        if !outer.iter().any(|o| p.starts_with(o)) {
            outer.push(p);
        }
    }
    let covered = |k: &[u8]| outer.iter().any(|p| k.starts_with(p));
    let mut writes = Vec::new();
    for (k, v) in &keys {
        match v {
            Some(v) => writes.push(Write::Put(k.clone(), v.clone())),
            None if !covered(k) => writes.push(Write::Delete(k.clone())),
            None => {}
        }
    }
    for p in &outer {
        let end = range_end(p);
        let mut from = p.clone();
        // Keys put after the prefix delete survive it: cut the range around them.
        let puts = keys
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(p))
            .filter(|(_, v)| v.is_some());
        for (k, _) in puts {
            if from < *k {
                writes.push(Write::DeleteRange(from, k.clone()));
            }
            from = k.clone();
            from.push(0);
        }
        if below(&from, &end) {
            writes.push(Write::DeleteRange(from, end));
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn range_end_follows_etcd() {
        assert_eq!(range_end(b"job/"), b("job0"));
        assert_eq!(range_end(&[b'a', 0xff]), b("b"));
        assert_eq!(range_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(range_end(b""), vec![0]);
    }

    #[test]
    fn last_write_to_a_key_wins() {
        let w = flatten([
            Op::Put(b("k"), b("1")),
            Op::Delete(b("k")),
            Op::Put(b("k"), b("2")),
            Op::Delete(b("j")),
        ]);
        assert_eq!(w, [Write::Delete(b("j")), Write::Put(b("k"), b("2"))]);
    }

    #[test]
    fn a_prefix_delete_undoes_earlier_puts_and_is_cut_around_later_ones() {
        let w = flatten([
            Op::Put(b("t/a"), b("gone")),
            Op::Delete(b("t/c")),
            Op::DeletePrefix(b("t/")),
            Op::Put(b("t/b"), b("kept")),
            Op::Put(b("u"), b("other")),
        ]);
        assert_eq!(
            w,
            [
                Write::Put(b("t/b"), b("kept")),
                Write::Put(b("u"), b("other")),
                Write::DeleteRange(b("t/"), b("t/b")),
                Write::DeleteRange(b("t/b\0"), b("t0")),
            ]
        );
    }

    #[test]
    fn nested_prefixes_collapse() {
        let w = flatten([
            Op::DeletePrefix(b("t/x/")),
            Op::DeletePrefix(b("t/")),
            Op::DeletePrefix(b("t/")),
        ]);
        assert_eq!(w, [Write::DeleteRange(b("t/"), b("t0"))]);
    }

    #[test]
    fn a_put_at_the_prefix_itself_leaves_no_empty_range() {
        let w = flatten([Op::DeletePrefix(b("t")), Op::Put(b("t"), b("v"))]);
        assert_eq!(
            w,
            [
                Write::Put(b("t"), b("v")),
                Write::DeleteRange(b("t\0"), b("u")),
            ]
        );
    }
}
