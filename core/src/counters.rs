//! Counters: Hadoop's `group → name → value` tallies.
//!
//! Job code reports counters with `reporter:counter:GROUP,NAME,AMOUNT` lines on
//! stderr (Streaming's contract) and status with `reporter:status:MESSAGE`; the
//! framework adds its own (records and bytes in and out, tasks). Only counters of
//! accepted attempts are added into the job's totals.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The framework's own counter group, named as Hadoop names it.
pub const FRAMEWORK: &str = "Map-Reduce Framework";
/// tormr's counters about tasks and transfers.
pub const TORMR: &str = "tormr";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, i64>>);

impl Counters {
    pub fn add(&mut self, group: &str, name: &str, amount: i64) {
        let slot = self
            .0
            .entry(group.to_owned())
            .or_default()
            .entry(name.to_owned())
            .or_default();
        *slot = slot.saturating_add(amount);
    }

    pub fn get(&self, group: &str, name: &str) -> i64 {
        self.0
            .get(group)
            .and_then(|g| g.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub fn merge(&mut self, other: &Counters) {
        for (group, names) in &other.0 {
            for (name, value) in names {
                self.add(group, name, *value);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bounds what a peer can make us store: at most `groups` groups of `names`
    /// counters each, names of at most 128 bytes.
    pub fn truncated(&self, groups: usize, names: usize) -> Counters {
        let mut out = Counters::default();
        for (group, counters) in self.0.iter().take(groups) {
            for (name, value) in counters.iter().take(names) {
                out.add(&clip(group), &clip(name), *value);
            }
        }
        out
    }
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

/// A line job code wrote on stderr, read for Streaming's reporter protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReporterLine {
    Counter {
        group: String,
        name: String,
        amount: i64,
    },
    Status(String),
    Other,
}

/// Parses one stderr line (without newline).
pub fn parse_reporter_line(line: &str) -> ReporterLine {
    if let Some(rest) = line.strip_prefix("reporter:counter:") {
        // The amount is after the last comma; group and name are split at the first.
        if let Some((head, amount)) = rest.rsplit_once(',')
            && let Some((group, name)) = head.split_once(',')
            && let Ok(amount) = amount.trim().parse::<i64>()
        {
            return ReporterLine::Counter {
                group: group.to_owned(),
                name: name.to_owned(),
                amount,
            };
        }
        return ReporterLine::Other;
    }
    if let Some(rest) = line.strip_prefix("reporter:status:") {
        return ReporterLine::Status(rest.to_owned());
    }
    ReporterLine::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_lines_parse() {
        assert_eq!(
            parse_reporter_line("reporter:counter:Words,long words,3"),
            ReporterLine::Counter {
                group: "Words".into(),
                name: "long words".into(),
                amount: 3
            }
        );
        assert_eq!(
            parse_reporter_line("reporter:counter:g,a,b,-2"),
            ReporterLine::Counter {
                group: "g".into(),
                name: "a,b".into(),
                amount: -2
            }
        );
        assert_eq!(
            parse_reporter_line("reporter:status:half way"),
            ReporterLine::Status("half way".into())
        );
        assert_eq!(
            parse_reporter_line("reporter:counter:broken"),
            ReporterLine::Other
        );
        assert_eq!(
            parse_reporter_line("Traceback (most recent call last):"),
            ReporterLine::Other
        );
    }

    #[test]
    fn counters_merge_and_saturate() {
        let mut a = Counters::default();
        a.add("g", "n", i64::MAX);
        let mut b = Counters::default();
        b.add("g", "n", 5);
        b.add("h", "m", 1);
        a.merge(&b);
        assert_eq!(a.get("g", "n"), i64::MAX);
        assert_eq!(a.get("h", "m"), 1);
        assert_eq!(a.truncated(1, 1).0.len(), 1);
    }
}
