//! Identifiers of jobs, buckets, tasks, attempts and board entries.
//!
//! Identifiers travel in URL paths and file names, so each is validated to a
//! small alphabet when it comes from a peer: a bucket id can never name a path
//! outside the data layer's folder.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a peer-supplied identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} {value:?}: {why}")]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn check_charset(what: &'static str, value: &str, max: usize) -> Result<(), InvalidId> {
    let fail = |why| {
        Err(InvalidId {
            what,
            value: value.chars().take(80).collect(),
            why,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > max {
        return fail("it is too long");
    }
    if value.starts_with('.') || value.starts_with('-') {
        return fail("it must start with a letter or digit");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return fail("only a-z, 0-9, '-' and '.' are allowed");
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates a peer- or user-supplied identifier.
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                check_charset($what, value, $max)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }
    };
}

string_id!(
    /// One job of one owner; binds every bucket's associated data.
    JobId, "job id", 64
);
string_id!(
    /// One bucket on the data layer: an input slice, a map-output partition or a
    /// reduce output.
    BucketId, "bucket id", 128
);
string_id!(
    /// A cluster request on the bulletin board.
    RequestId, "request id", 64
);
string_id!(
    /// A join ticket, redeemable once at the job master.
    TicketId, "ticket id", 64
);

fn random_hex(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(crate::random::bytes::<10>()))
}

impl JobId {
    pub fn random() -> Self {
        Self(random_hex("job-"))
    }
}

impl RequestId {
    pub fn random() -> Self {
        Self(random_hex("req-"))
    }
}

impl TicketId {
    pub fn random() -> Self {
        Self(random_hex("tkt-"))
    }
}

impl BucketId {
    /// The `index`th line-aligned slice of the job's input.
    pub fn input(index: u32) -> Self {
        Self(format!("in-{index:05}"))
    }

    /// Input bucket `index` uploaded by the `epoch`th resumption of a job.
    pub fn input_resumed(index: u32, epoch: u32) -> Self {
        Self(format!("in-{index:05}-r{epoch}"))
    }

    /// Partition `partition` of one map attempt's output.
    pub fn map_output(attempt: &AttemptId, partition: u32) -> Self {
        Self(format!("{attempt}-p{partition:05}"))
    }

    /// The whole output of a reduce attempt or of a map attempt in a map-only step.
    pub fn task_output(attempt: &AttemptId) -> Self {
        Self(format!("{attempt}-out"))
    }
}

/// Whether a task maps or reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Map,
    Reduce,
}

impl TaskKind {
    pub fn letter(self) -> char {
        match self {
            TaskKind::Map => 'm',
            TaskKind::Reduce => 'r',
        }
    }
}

/// One task of one step: map task `index` or reduce task (partition) `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    pub step: u32,
    pub kind: TaskKind,
    pub index: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}-{}-{:05}", self.step, self.kind.letter(), self.index)
    }
}

/// One execution of a task by one worker. Retries, verification copies and
/// speculative backups are distinct attempts with distinct output buckets, so
/// no copy can overwrite another's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptId {
    pub task: TaskId,
    pub attempt: u32,
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-a{}", self.task, self.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_ids_refuse_path_tricks() {
        for bad in ["", "../etc", "a/b", ".hidden", "UPPER", "a b", "-x"] {
            assert!(BucketId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(BucketId::parse("s0-m-00001-a1-p00002").is_ok());
        assert!(serde_json::from_str::<BucketId>("\"../x\"").is_err());
    }

    #[test]
    fn derived_bucket_ids_are_valid_and_distinct_per_attempt() {
        let task = TaskId {
            step: 1,
            kind: TaskKind::Map,
            index: 3,
        };
        let a1 = AttemptId { task, attempt: 1 };
        let a2 = AttemptId { task, attempt: 2 };
        let b1 = BucketId::map_output(&a1, 0);
        let b2 = BucketId::map_output(&a2, 0);
        assert_ne!(b1, b2);
        assert_eq!(b1.as_str(), "s1-m-00003-a1-p00000");
        assert!(BucketId::parse(b1.as_str()).is_ok());
        assert!(BucketId::parse(BucketId::task_output(&a1).as_str()).is_ok());
        assert!(BucketId::parse(BucketId::input(7).as_str()).is_ok());
        assert!(JobId::parse(JobId::random().as_str()).is_ok());
    }
}
