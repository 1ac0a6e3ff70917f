//! Hadoop Streaming's job settings: `-D` keys, `-numReduceTasks`, `-partitioner`.
//!
//! The flags themselves are parsed by the CLI; this module turns their values
//! into a [`StepSpec`] and [`JobLimits`], refusing by name the settings whose
//! Hadoop meaning tormr does not give (so nothing is silently ignored).

use super::{Arbitration, JobLimits, SpecError, StepSpec, VerifyPolicy};
use crate::partition::{KeySpec, PartitionerSpec, parse_key_fields};
use std::collections::BTreeMap;

/// The class names Streaming users pass to `-partitioner`.
const KEY_FIELD_PARTITIONER: &str = "KeyFieldBasedPartitioner";
const HASH_PARTITIONER: &str = "HashPartitioner";

/// Settings whose effect tormr does not reproduce, with what to do instead.
const REFUSED: &[(&str, &str)] = &[
    (
        "mapreduce.partition.keycomparator.options",
        "tormr sorts reducer input by the whole line as bytes (key, then value); drop the option or encode the order in the key",
    ),
    (
        "mapreduce.job.output.key.comparator.class",
        "tormr sorts reducer input by the whole line as bytes; custom comparators are not supported",
    ),
    (
        "stream.reduce.output.field.separator",
        "tormr writes reducer output lines exactly as the reducer prints them",
    ),
    (
        "mapreduce.job.inputformat.class",
        "tormr reads text input split into lines",
    ),
    (
        "mapreduce.job.outputformat.class",
        "tormr writes text output as part-NNNNN files",
    ),
];

/// Splits a `-D`/`-cmdenv` argument `KEY=VALUE`.
pub fn parse_key_value(flag: &str, arg: &str) -> Result<(String, String), SpecError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(SpecError::BadFlag {
            flag: flag.to_owned(),
            value: arg.to_owned(),
            why: "expected KEY=VALUE".into(),
        }),
    }
}

fn number<T>(
    conf: &BTreeMap<String, String>,
    key: &str,
    min: T,
    max: T,
) -> Result<Option<T>, SpecError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = conf.get(key) else {
        return Ok(None);
    };
    let bad = |why: String| SpecError::BadConf {
        key: key.to_owned(),
        value: value.clone(),
        why,
    };
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| bad("expected a whole number".into()))?;
    if n < min || n > max {
        return Err(bad(format!("must be between {min} and {max}")));
    }
    Ok(Some(n))
}

/// Parses sizes such as `64m`, `1g`, `65536`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (digits, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// The verification policy from `tormr.verify*` settings.
fn verify_from_conf(conf: &BTreeMap<String, String>) -> Result<VerifyPolicy, SpecError> {
    let mut policy = VerifyPolicy::default();
    let bad = |key: &str, value: &str, why: &str| SpecError::BadConf {
        key: key.into(),
        value: value.into(),
        why: why.into(),
    };
    if let Some(v) = conf.get("tormr.verify") {
        policy.enabled = match v.as_str() {
            "on" | "true" => true,
            "off" | "false" => false,
            _ => return Err(bad("tormr.verify", v, "expected on or off")),
        };
    }
    if let Some(v) = conf.get("tormr.verify.p_min") {
        let p: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .ok_or_else(|| {
                bad(
                    "tormr.verify.p_min",
                    v,
                    "expected a fraction from 0 to 1, such as 0.05",
                )
            })?;
        policy.p_min_ppm = (p * 1e6).round() as u32;
    }
    if let Some(n) = number(conf, "tormr.verify.trust_after", 1u32, 10_000)? {
        policy.trust_after = n;
    }
    if let Some(n) = number(conf, "tormr.verify.ringers", 0u32, 1_000)? {
        policy.ringers = n;
    }
    if let Some(v) = conf.get("tormr.verify.arbitration") {
        policy.arbitration = match v.as_str() {
            "auto" => Arbitration::Auto,
            "trusted" => Arbitration::Trusted,
            "majority" => Arbitration::Majority,
            _ => {
                return Err(bad(
                    "tormr.verify.arbitration",
                    v,
                    "expected auto, trusted or majority",
                ));
            }
        };
    }
    Ok(policy)
}

/// Job limits from `-D` settings, defaults for the rest.
pub fn limits_from_conf(conf: &BTreeMap<String, String>) -> Result<JobLimits, SpecError> {
    let mut limits = JobLimits::default();
    if let Some(n) = number(conf, "mapreduce.map.maxattempts", 1u32, 100)? {
        limits.map_attempts = n;
    }
    if let Some(n) = number(conf, "mapreduce.reduce.maxattempts", 1u32, 100)? {
        limits.reduce_attempts = n;
    }
    limits.max_buckets_per_worker = number(conf, "tormr.max.buckets.per.worker", 1u32, u32::MAX)?;
    if let Some(value) = conf.get("tormr.bucket.bytes") {
        let bytes = parse_size(value)
            .filter(|b| (4096..=(4u64 << 30)).contains(b))
            .ok_or_else(|| SpecError::BadConf {
                key: "tormr.bucket.bytes".into(),
                value: value.clone(),
                why: "expected a size between 4k and 4g, such as 64m".into(),
            })?;
        limits.bucket_bytes = bytes;
    }
    // Read by workers; checked here so a typo fails at submit, not silently.
    if let Some(value) = conf.get("tormr.container.reuse")
        && value != "true"
        && value != "false"
    {
        return Err(SpecError::BadConf {
            key: "tormr.container.reuse".into(),
            value: value.clone(),
            why: "expected true or false".into(),
        });
    }
    limits.verify = verify_from_conf(conf)?;
    if let Some(level) = number(conf, "tormr.compression.level", -7i32, 19)? {
        limits.compression_level = level;
    }
    if let Some(mb) = number(conf, "mapreduce.task.io.sort.mb", 1u64, 64 * 1024)? {
        limits.sort_buffer_bytes = mb << 20;
    }
    if let Some(ms) = number(conf, "mapreduce.task.timeout", 0u64, u64::MAX / 2)? {
        // Hadoop's 0 means "never time out"; a week stands in for never.
        limits.task_timeout_secs = if ms == 0 {
            7 * 24 * 3600
        } else {
            ms.div_ceil(1000).max(1)
        };
    }
    Ok(limits)
}

/// What the Streaming flags said about one step.
#[derive(Debug, Clone, Default)]
pub struct StepFlags {
    pub mapper: Option<String>,
    pub combiner: Option<String>,
    pub reducer: Option<String>,
    pub num_reduce_tasks: Option<u32>,
    pub partitioner: Option<String>,
}

fn separator(conf: &BTreeMap<String, String>, keys: &[&str]) -> Result<Vec<u8>, SpecError> {
    for key in keys {
        if let Some(v) = conf.get(*key) {
            if v.is_empty() {
                return Err(SpecError::BadConf {
                    key: (*key).to_owned(),
                    value: v.clone(),
                    why: "the separator must not be empty".into(),
                });
            }
            return Ok(unescape(v).into_bytes());
        }
    }
    Ok(b"\t".to_vec())
}

/// Lets `\t` typed on a command line mean a tab.
fn unescape(v: &str) -> String {
    v.replace("\\t", "\t")
}

/// Builds a step from Streaming flags and `-D` settings (job-wide merged with
/// step-specific, the latter winning).
pub fn step_from_flags(
    flags: &StepFlags,
    conf: &BTreeMap<String, String>,
) -> Result<StepSpec, SpecError> {
    for (key, why) in REFUSED {
        if conf.contains_key(*key) {
            return Err(SpecError::UnsupportedConf {
                key: (*key).to_owned(),
                why: (*why).to_owned(),
            });
        }
    }
    let reducer = match flags.reducer.as_deref() {
        Some("NONE") => None,
        Some(r) if r.trim().is_empty() => {
            return Err(SpecError::BadFlag {
                flag: "-reducer".into(),
                value: r.into(),
                why: "empty command".into(),
            });
        }
        other => other.map(str::to_owned),
    };
    let conf_reduces = match number(conf, "mapreduce.job.reduces", 0u32, 100_000)? {
        Some(n) => Some(n),
        None => number(conf, "mapred.reduce.tasks", 0u32, 100_000)?,
    };
    let reduces = if flags.reducer.as_deref() == Some("NONE") {
        0
    } else {
        flags.num_reduce_tasks.or(conf_reduces).unwrap_or(1)
    };
    if reduces > 100_000 {
        return Err(SpecError::BadFlag {
            flag: "-numReduceTasks".into(),
            value: reduces.to_string(),
            why: "at most 100000 reduce tasks".into(),
        });
    }
    let key_fields = number(conf, "stream.num.map.output.key.fields", 1usize, 1000)?.unwrap_or(1);
    let sep = separator(conf, &["stream.map.output.field.separator"])?;
    let partitioner = partitioner(flags.partitioner.as_deref(), conf)?;
    for (flag, cmd) in [("-mapper", &flags.mapper), ("-combiner", &flags.combiner)] {
        if let Some(c) = cmd
            && c.trim().is_empty()
        {
            return Err(SpecError::BadFlag {
                flag: flag.into(),
                value: c.clone(),
                why: "empty command".into(),
            });
        }
    }
    Ok(StepSpec {
        mapper: flags.mapper.clone(),
        combiner: flags.combiner.clone(),
        reducer,
        reduces,
        keys: KeySpec {
            separator: sep,
            key_fields,
            partitioner,
        },
        conf: BTreeMap::new(),
    })
}

fn partitioner(
    class: Option<&str>,
    conf: &BTreeMap<String, String>,
) -> Result<PartitionerSpec, SpecError> {
    let class = class.or(conf
        .get("mapreduce.job.partitioner.class")
        .map(String::as_str));
    match class {
        None => Ok(PartitionerSpec::Hash),
        Some(c) if c.ends_with(HASH_PARTITIONER) => Ok(PartitionerSpec::Hash),
        Some(c) if c.ends_with(KEY_FIELD_PARTITIONER) => {
            let (first, last) = match conf.get("mapreduce.partition.keypartitioner.options") {
                Some(opt) => parse_key_fields(opt).map_err(|e| SpecError::BadConf {
                    key: "mapreduce.partition.keypartitioner.options".into(),
                    value: opt.clone(),
                    why: e.to_string(),
                })?,
                None => (1, 0),
            };
            let separator = separator(
                conf,
                &[
                    "mapreduce.map.output.key.field.separator",
                    "map.output.key.field.separator",
                ],
            )?;
            Ok(PartitionerSpec::KeyFields {
                separator,
                first,
                last,
            })
        }
        Some(other) => Err(SpecError::BadFlag {
            flag: "-partitioner".into(),
            value: other.into(),
            why: format!("tormr has {HASH_PARTITIONER} (the default) and {KEY_FIELD_PARTITIONER}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn flags(reducer: Option<&str>) -> StepFlags {
        StepFlags {
            mapper: Some("cat".into()),
            reducer: reducer.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn reduces_come_from_flag_then_conf_then_default() {
        assert_eq!(
            step_from_flags(&flags(Some("wc")), &conf(&[]))
                .unwrap()
                .reduces,
            1
        );
        assert_eq!(
            step_from_flags(&flags(Some("wc")), &conf(&[("mapreduce.job.reduces", "3")]))
                .unwrap()
                .reduces,
            3
        );
        let mut f = flags(Some("wc"));
        f.num_reduce_tasks = Some(5);
        assert_eq!(
            step_from_flags(&f, &conf(&[("mapreduce.job.reduces", "3")]))
                .unwrap()
                .reduces,
            5
        );
        let none = step_from_flags(&flags(Some("NONE")), &conf(&[])).unwrap();
        assert!(none.is_map_only() && none.reducer.is_none());
        let identity = step_from_flags(&flags(None), &conf(&[])).unwrap();
        assert_eq!((identity.reducer, identity.reduces), (None, 1));
    }

    #[test]
    fn key_settings_are_read() {
        let s = step_from_flags(
            &flags(Some("r")),
            &conf(&[
                ("stream.map.output.field.separator", "."),
                ("stream.num.map.output.key.fields", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.keys.separator, b".");
        assert_eq!(s.keys.key_fields, 2);
    }

    #[test]
    fn key_field_partitioner_is_built() {
        let mut f = flags(Some("r"));
        f.partitioner = Some("org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner".into());
        let s = step_from_flags(
            &f,
            &conf(&[("mapreduce.partition.keypartitioner.options", "-k1,1")]),
        )
        .unwrap();
        assert_eq!(
            s.keys.partitioner,
            PartitionerSpec::KeyFields {
                separator: b"\t".to_vec(),
                first: 1,
                last: 1
            }
        );
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let err = step_from_flags(
            &flags(Some("r")),
            &conf(&[("mapreduce.partition.keycomparator.options", "-k2,2nr")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("keycomparator"), "{err}");
        let mut f = flags(Some("r"));
        f.partitioner = Some("com.example.MyPartitioner".into());
        assert!(step_from_flags(&f, &conf(&[])).is_err());
        assert!(
            step_from_flags(
                &flags(Some("r")),
                &conf(&[("mapreduce.job.reduces", "many")])
            )
            .is_err()
        );
        assert!(
            step_from_flags(
                &flags(Some("r")),
                &conf(&[("stream.num.map.output.key.fields", "0")])
            )
            .is_err()
        );
        assert!(step_from_flags(&flags(Some(" ")), &conf(&[])).is_err());
    }

    #[test]
    fn limits_parse() {
        let l = limits_from_conf(&conf(&[
            ("mapreduce.map.maxattempts", "2"),
            ("tormr.max.buckets.per.worker", "3"),
            ("tormr.bucket.bytes", "1m"),
            ("mapreduce.task.timeout", "1500"),
        ]))
        .unwrap();
        assert_eq!(
            (
                l.map_attempts,
                l.max_buckets_per_worker,
                l.bucket_bytes,
                l.task_timeout_secs
            ),
            (2, Some(3), 1 << 20, 2)
        );
        assert!(limits_from_conf(&conf(&[("tormr.bucket.bytes", "1")])).is_err());
        assert!(limits_from_conf(&conf(&[("tormr.container.reuse", "no")])).is_err());
        assert!(limits_from_conf(&conf(&[("tormr.container.reuse", "false")])).is_ok());
        assert!(limits_from_conf(&conf(&[("mapreduce.map.maxattempts", "0")])).is_err());
    }

    #[test]
    fn verification_settings() {
        let d = limits_from_conf(&conf(&[])).unwrap().verify;
        assert!(d.enabled);
        assert_eq!(d.replication_probability(0.0), 1.0);
        assert!((d.replication_probability(d.trust(100)) - 0.05).abs() < 1e-9);
        assert!((d.trust(5) - 0.5).abs() < 1e-9);
        let v = limits_from_conf(&conf(&[
            ("tormr.verify.p_min", "0.2"),
            ("tormr.verify.trust_after", "4"),
            ("tormr.verify.arbitration", "majority"),
            ("tormr.verify.ringers", "3"),
        ]))
        .unwrap()
        .verify;
        assert_eq!(v.ringers, 3);
        assert_eq!(d.ringers, 0, "no ringers unless asked for");
        assert_eq!(v.p_min_ppm, 200_000);
        assert_eq!(v.trust_after, 4);
        assert_eq!(v.arbitration, Arbitration::Majority);
        let off = limits_from_conf(&conf(&[("tormr.verify", "off")]))
            .unwrap()
            .verify;
        assert_eq!(off.replication_probability(0.0), 0.0);
        for (k, v) in [
            ("tormr.verify", "maybe"),
            ("tormr.verify.p_min", "1.5"),
            ("tormr.verify.p_min", "x"),
            ("tormr.verify.trust_after", "0"),
            ("tormr.verify.arbitration", "vote"),
            ("tormr.verify.ringers", "-1"),
            ("tormr.verify.ringers", "5000"),
        ] {
            assert!(limits_from_conf(&conf(&[(k, v)])).is_err(), "{k}={v}");
        }
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn key_values_parse() {
        assert_eq!(
            parse_key_value("-D", "a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_key_value("-D", "novalue").is_err());
        assert!(parse_key_value("-D", "=v").is_err());
    }
}
