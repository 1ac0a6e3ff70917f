//! Hadoop Streaming's contract for map output lines: where the key ends and
//! which reduce partition a line belongs to.
//!
//! A line's key is everything before the Nth occurrence of the field separator
//! (`stream.num.map.output.key.fields`, default 1; `stream.map.output.field.separator`,
//! default tab); a line without it is all key. The default partitioner is
//! Hadoop's `HashPartitioner` over Java's `Text.hashCode()`, so a key lands in the
//! same partition number as it would on Hadoop. `KeyFieldBasedPartitioner`
//! (`-k2,3`) hashes only some fields of the key.

use serde::{Deserialize, Serialize};

/// Which partitioner a step uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PartitionerSpec {
    /// Hash of the whole key.
    #[default]
    Hash,
    /// Hash of key fields `first..=last` (1-based; `last` 0 means to the end),
    /// split by `separator` (`mapreduce.map.output.key.field.separator`).
    KeyFields {
        separator: Vec<u8>,
        first: usize,
        last: usize,
    },
}

/// How to cut and route map output lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    pub separator: Vec<u8>,
    pub key_fields: usize,
    pub partitioner: PartitionerSpec,
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            separator: b"\t".to_vec(),
            key_fields: 1,
            partitioner: PartitionerSpec::Hash,
        }
    }
}

/// Why a partitioner option was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unsupported key-field option {option:?}: tormr takes -kN or -kN,M (field numbers from 1)")]
pub struct BadKeyFields {
    pub option: String,
}

/// Parses `mapreduce.partition.keypartitioner.options` (`-k1,1`, `-k2`).
pub fn parse_key_fields(option: &str) -> Result<(usize, usize), BadKeyFields> {
    let bad = || BadKeyFields {
        option: option.to_owned(),
    };
    let rest = option.trim().strip_prefix("-k").ok_or_else(bad)?;
    let field = |s: &str| -> Result<usize, BadKeyFields> {
        // Options such as "n" or "r" only affect comparators, not partitioning.
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let tail = &s[digits.len()..];
        if digits.is_empty() || tail.contains('.') || !tail.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(bad());
        }
        digits.parse::<usize>().map_err(|_| bad())
    };
    let (first, last) = match rest.split_once(',') {
        Some((a, b)) => (field(a)?, field(b)?),
        None => (field(rest)?, 0),
    };
    if first == 0 || (last != 0 && last < first) {
        return Err(bad());
    }
    Ok((first, last))
}

/// Java's `WritableComparator.hashBytes`, which `Text.hashCode()` uses.
pub fn java_bytes_hash(bytes: &[u8], seed: i32) -> i32 {
    bytes.iter().fold(seed, |h, &b| {
        h.wrapping_mul(31).wrapping_add(b as i8 as i32)
    })
}

fn partition_of_hash(hash: i32, partitions: u32) -> u32 {
    ((hash & i32::MAX) as u32) % partitions.max(1)
}

/// Finds the start of each occurrence of `sep` in `hay`, lazily.
fn find_nth(hay: &[u8], sep: &[u8], n: usize) -> Option<usize> {
    if sep.is_empty() || n == 0 {
        return None;
    }
    if sep.len() == 1 {
        return memchr::memchr_iter(sep[0], hay).nth(n - 1);
    }
    memchr::memmem::find_iter(hay, sep).nth(n - 1)
}

impl KeySpec {
    /// Length of the key part of `line` (without newline).
    pub fn key_len(&self, line: &[u8]) -> usize {
        find_nth(line, &self.separator, self.key_fields).unwrap_or(line.len())
    }

    /// The partition a map output line goes to, of `partitions`.
    pub fn partition(&self, line: &[u8], partitions: u32) -> u32 {
        if partitions <= 1 {
            return 0;
        }
        let key = &line[..self.key_len(line)];
        match &self.partitioner {
            PartitionerSpec::Hash => partition_of_hash(java_bytes_hash(key, 1), partitions),
            PartitionerSpec::KeyFields {
                separator,
                first,
                last,
            } => {
                let span = field_span(key, separator, *first, *last);
                partition_of_hash(java_bytes_hash(span, 0), partitions)
            }
        }
    }
}

/// Bytes of fields `first..=last` of `key` (1-based, `last` 0 = to the end).
fn field_span<'a>(key: &'a [u8], sep: &[u8], first: usize, last: usize) -> &'a [u8] {
    let start = if first <= 1 {
        0
    } else {
        match find_nth(key, sep, first - 1) {
            Some(p) => p + sep.len(),
            None => return &[],
        }
    };
    let end = if last == 0 {
        key.len()
    } else {
        find_nth(key, sep, last).unwrap_or(key.len())
    };
    if end < start { &[] } else { &key[start..end] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_text_hashcode() {
        // Text("hello").hashCode() on a JVM is 99162322 + 31^5 (hashBytes starts at 1).
        let expected = 31i32.wrapping_pow(5).wrapping_add(99162322);
        assert_eq!(java_bytes_hash(b"hello", 1), expected);
        // Bytes above 0x7f count as negative, as Java's signed bytes do.
        assert_eq!(java_bytes_hash(&[0xff], 1), 31 - 1);
    }

    #[test]
    fn key_ends_at_nth_separator() {
        let spec = KeySpec::default();
        assert_eq!(spec.key_len(b"a\tb\tc"), 1);
        assert_eq!(spec.key_len(b"noseparator"), 11);
        let two = KeySpec {
            key_fields: 2,
            ..KeySpec::default()
        };
        assert_eq!(two.key_len(b"a\tb\tc"), 3);
        let dot = KeySpec {
            separator: b"::".to_vec(),
            key_fields: 1,
            partitioner: PartitionerSpec::Hash,
        };
        assert_eq!(dot.key_len(b"k::v::w"), 1);
    }

    #[test]
    fn same_key_same_partition_whatever_the_value() {
        let spec = KeySpec::default();
        for n in 1..8 {
            let p = spec.partition(b"word\t1", n);
            assert!(p < n);
            assert_eq!(p, spec.partition(b"word\t999", n));
            assert_eq!(p, spec.partition(b"word", n));
        }
    }

    #[test]
    fn key_field_partitioner_ignores_other_fields() {
        let (first, last) = parse_key_fields("-k1,1").unwrap();
        let spec = KeySpec {
            separator: b"\t".to_vec(),
            key_fields: 2,
            partitioner: PartitionerSpec::KeyFields {
                separator: b"\t".to_vec(),
                first,
                last,
            },
        };
        let p = spec.partition(b"user7\t2024\tvalue", 13);
        for other in [&b"user7\t1999\tx"[..], b"user7\t0\ty"] {
            assert_eq!(spec.partition(other, 13), p);
        }
    }

    #[test]
    fn key_field_options_parse_or_refuse() {
        assert_eq!(parse_key_fields("-k1,1").unwrap(), (1, 1));
        assert_eq!(parse_key_fields("-k2").unwrap(), (2, 0));
        assert_eq!(parse_key_fields("-k2n,3r").unwrap(), (2, 3));
        for bad in ["k1", "-k0", "-k3,2", "-k1.2,1.3", "-kx"] {
            assert!(parse_key_fields(bad).is_err(), "{bad}");
        }
    }
}
