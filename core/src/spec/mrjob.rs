//! mrjob scripts as tormr steps.
//!
//! mrjob 0.7 has no `--steps` flag: its runners ask the job class in-process.
//! tormr does the same with a small Python helper (shipped in the `tormr`
//! binary) that loads the script, instantiates its job class with the user's
//! arguments and prints a [`MrjobDescription`]: the `_steps_desc()` list, the
//! jobconf, partitioner, SORT_VALUES, files to ship and pass-through arguments.
//! This module turns that description into Streaming steps that run
//! `python3 SCRIPT --step-num=K --mapper|--combiner|--reducer ARGS`, exactly the
//! commands mrjob's own Hadoop runner would give Streaming.

use super::streaming::{StepFlags, step_from_flags};
use super::{SpecError, StepSpec};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A file the helper found the job wants in its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShippedFile {
    /// Where it is on the owner's machine.
    pub path: String,
    /// Its name in the task's working directory.
    pub name: String,
}

/// A pass-through argument: plain text, or a file shipped and named by its
/// working-directory name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExtraArg {
    Text(String),
    File(ShippedFile),
}

/// What the helper printed about a script.
#[derive(Debug, Clone, Deserialize)]
pub struct MrjobDescription {
    pub steps: Vec<Value>,
    #[serde(default)]
    pub jobconf: BTreeMap<String, Value>,
    #[serde(default)]
    pub partitioner: Option<String>,
    #[serde(default)]
    pub sort_values: bool,
    #[serde(default)]
    pub extra_args: Vec<ExtraArg>,
    /// FILES, `--files`, and the contents of DIRS and unpacked ARCHIVES.
    #[serde(default)]
    pub files: Vec<ShippedFile>,
    #[serde(default)]
    pub hadoop_input_format: Option<String>,
    #[serde(default)]
    pub hadoop_output_format: Option<String>,
    #[serde(default)]
    pub libjars: Vec<String>,
}

/// Steps and files for a job built from an mrjob script.
#[derive(Debug, Clone)]
pub struct MrjobPlan {
    pub steps: Vec<StepSpec>,
    /// Every file to ship: the script itself first.
    pub files: Vec<ShippedFile>,
    /// Job-wide settings from the script's JOBCONF and `--jobconf`.
    pub conf: BTreeMap<String, String>,
}

fn conf_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn mrjob_err(why: impl Into<String>) -> SpecError {
    SpecError::Mrjob { why: why.into() }
}

/// Builds tormr steps from the helper's description of `script` (its path on
/// the owner's machine) run with `python`.
pub fn plan(
    desc: &MrjobDescription,
    script: &ShippedFile,
    python: &str,
) -> Result<MrjobPlan, SpecError> {
    if let Some(f) = &desc.hadoop_input_format {
        return Err(mrjob_err(format!(
            "sets HADOOP_INPUT_FORMAT {f}; tormr reads text lines only"
        )));
    }
    if let Some(f) = &desc.hadoop_output_format {
        return Err(mrjob_err(format!(
            "sets HADOOP_OUTPUT_FORMAT {f}; tormr writes text lines only"
        )));
    }
    if !desc.libjars.is_empty() {
        return Err(mrjob_err("uses LIBJARS; tormr runs no Java"));
    }
    if desc.steps.is_empty() {
        return Err(SpecError::NoSteps);
    }
    let extra: Vec<String> = desc
        .extra_args
        .iter()
        .map(|a| match a {
            ExtraArg::Text(t) => t.clone(),
            ExtraArg::File(f) => f.name.clone(),
        })
        .collect();
    let mut conf: BTreeMap<String, String> = desc
        .jobconf
        .iter()
        .map(|(k, v)| (k.clone(), conf_value(v)))
        .collect();
    let mut partitioner = desc.partitioner.clone();
    if desc.sort_values {
        // What mrjob's runners add for SORT_VALUES.
        conf.entry("mapreduce.partition.keypartitioner.options".into())
            .or_insert_with(|| "-k1,1".into());
        conf.entry("stream.num.map.output.key.fields".into())
            .or_insert_with(|| "2".into());
        partitioner
            .get_or_insert_with(|| "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner".into());
    }
    let mut steps = Vec::new();
    for (k, step) in desc.steps.iter().enumerate() {
        steps.push(plan_step(
            k,
            step,
            &script.name,
            python,
            &extra,
            &conf,
            partitioner.as_deref(),
        )?);
    }
    let mut files = vec![script.clone()];
    files.extend(desc.extra_args.iter().filter_map(|a| match a {
        ExtraArg::File(f) => Some(f.clone()),
        ExtraArg::Text(_) => None,
    }));
    files.extend(desc.files.iter().cloned());
    Ok(MrjobPlan { steps, files, conf })
}

fn plan_step(
    k: usize,
    step: &Value,
    script_name: &str,
    python: &str,
    extra: &[String],
    job_conf: &BTreeMap<String, String>,
    partitioner: Option<&str>,
) -> Result<StepSpec, SpecError> {
    let kind = step.get("type").and_then(Value::as_str).unwrap_or("?");
    if kind != "streaming" {
        return Err(mrjob_err(format!(
            "step {k} is a {kind:?} step; tormr runs streaming steps only"
        )));
    }
    if step.get("input_manifest").and_then(Value::as_bool) == Some(true) {
        return Err(mrjob_err(format!(
            "step {k} uses mapper_raw; tormr feeds mappers lines, not files"
        )));
    }
    let substep = |which: &str| -> Result<Option<String>, SpecError> {
        let Some(sub) = step.get(which) else {
            return Ok(None);
        };
        match sub.get("type").and_then(Value::as_str) {
            Some("script") => {
                let mut args = vec![
                    python.to_owned(),
                    script_name.to_owned(),
                    format!("--step-num={k}"),
                    format!("--{which}"),
                ];
                args.extend(extra.iter().cloned());
                let line = super::join_words(&args);
                Ok(Some(match sub.get("pre_filter").and_then(Value::as_str) {
                    Some(pre) => format!("{pre} | {line}"),
                    None => line,
                }))
            }
            Some("command") => match sub.get("command") {
                Some(Value::String(c)) => Ok(Some(c.clone())),
                Some(Value::Array(parts)) => {
                    let words: Vec<String> = parts.iter().map(conf_value).collect();
                    Ok(Some(super::join_words(&words)))
                }
                _ => Err(mrjob_err(format!("step {k} {which} has no command"))),
            },
            other => Err(mrjob_err(format!(
                "step {k} {which} has unknown type {other:?}"
            ))),
        }
    };
    let mut conf = job_conf.clone();
    if let Some(Value::Object(step_conf)) = step.get("jobconf") {
        for (key, v) in step_conf {
            conf.insert(key.clone(), conf_value(v));
        }
    }
    let reducer = substep("reducer")?;
    let flags = StepFlags {
        mapper: substep("mapper")?,
        combiner: substep("combiner")?,
        // mrjob steps without a reducer are map-only.
        reducer: Some(reducer.clone().unwrap_or_else(|| "NONE".into())),
        num_reduce_tasks: None,
        partitioner: partitioner.map(str::to_owned),
    };
    let mut spec = step_from_flags(&flags, &conf)?;
    spec.conf = step
        .get("jobconf")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), conf_value(v))).collect())
        .unwrap_or_default();
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> ShippedFile {
        ShippedFile {
            path: "/home/a/mr_wc.py".into(),
            name: "mr_wc.py".into(),
        }
    }

    fn desc(json: &str) -> MrjobDescription {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn two_step_job_becomes_streaming_steps() {
        let d = desc(
            r#"{"steps": [
                {"type": "streaming", "mapper": {"type": "script"}, "combiner": {"type": "script"}, "reducer": {"type": "script"}},
                {"type": "streaming", "reducer": {"type": "script"}, "jobconf": {"mapreduce.job.reduces": 1}}
            ], "extra_args": ["--top", "5", {"path": "/x/stop.txt", "name": "stop.txt"}],
               "jobconf": {"mapreduce.job.reduces": "3"}}"#,
        );
        let p = plan(&d, &script(), "python3").unwrap();
        assert_eq!(p.steps.len(), 2);
        assert_eq!(
            p.steps[0].mapper.as_deref(),
            Some("python3 mr_wc.py --step-num=0 --mapper --top 5 stop.txt")
        );
        assert_eq!(p.steps[0].reduces, 3);
        assert!(p.steps[1].mapper.is_none(), "second step maps by identity");
        assert_eq!(p.steps[1].reduces, 1, "step jobconf wins");
        assert_eq!(
            p.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["mr_wc.py", "stop.txt"]
        );
    }

    #[test]
    fn mapper_only_and_commands_and_pre_filters() {
        let d = desc(
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "command", "command": "grep -i x"}},
                           {"type": "streaming", "mapper": {"type": "script", "pre_filter": "grep y"}, "reducer": {"type": "command", "command": ["uniq", "-c"]}}]}"#,
        );
        let p = plan(&d, &script(), "python3").unwrap();
        assert!(p.steps[0].is_map_only());
        assert_eq!(p.steps[0].mapper.as_deref(), Some("grep -i x"));
        assert_eq!(
            p.steps[1].mapper.as_deref(),
            Some("grep y | python3 mr_wc.py --step-num=1 --mapper")
        );
        assert_eq!(p.steps[1].reducer.as_deref(), Some("uniq -c"));
    }

    #[test]
    fn sort_values_sets_secondary_sort() {
        let d = desc(
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}, "reducer": {"type": "script"}}], "sort_values": true}"#,
        );
        let p = plan(&d, &script(), "python3").unwrap();
        assert_eq!(p.steps[0].keys.key_fields, 2);
        assert!(matches!(
            p.steps[0].keys.partitioner,
            crate::partition::PartitionerSpec::KeyFields {
                first: 1,
                last: 1,
                ..
            }
        ));
    }

    #[test]
    fn unsupported_scripts_are_refused() {
        for json in [
            r#"{"steps": [{"type": "spark"}]}"#,
            r#"{"steps": []}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}}], "hadoop_input_format": "x"}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}, "input_manifest": true}]}"#,
        ] {
            assert!(plan(&desc(json), &script(), "python3").is_err(), "{json}");
        }
    }
}
