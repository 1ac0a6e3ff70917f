//! Pachyderm pipeline specs: the subset tormr runs, read from JSON or YAML
//! with Pachyderm's snake_case or camelCase field names, and the datums a
//! glob cuts an input folder into.
//!
//! A field outside the subset is refused by name (serde's `unknown field`
//! message names it): running a pipeline while ignoring part of its spec
//! would give a different result than Pachyderm without saying so.

use super::SpecError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pachyderm's default number of tries per datum.
pub const DEFAULT_DATUM_TRIES: u32 = 3;

/// A pipeline as tormr runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub name: String,
    pub image: String,
    /// The command, run directly (not through a shell).
    pub cmd: Vec<String>,
    /// Lines written to the command's stdin.
    pub stdin: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub input: PfsInput,
    /// `parallelism_spec.constant`: workers to ask for.
    pub parallelism: Option<u32>,
    pub datum_tries: u32,
    pub datum_timeout: Option<Duration>,
    pub job_timeout: Option<Duration>,
}

/// What a worker needs to run one datum of a pipeline (`JobSpec.pachyderm`):
/// each map task's input bucket is a tar of the datum's files, unpacked at
/// `/pfs/<input_name>`; the command runs directly with `stdin` on its
/// stdin; what it leaves in `/pfs/out`, as a tar, is the task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PfsTask {
    pub input_name: String,
    pub cmd: Vec<String>,
    pub stdin: Vec<String>,
}

impl Pipeline {
    pub fn task(&self) -> PfsTask {
        PfsTask {
            input_name: self.input.name.clone(),
            cmd: self.cmd.clone(),
            stdin: self.stdin.clone(),
        }
    }
}

/// The pipeline's one input repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsInput {
    pub repo: String,
    /// Where the input appears: `/pfs/<name>` (the repo's name by default).
    pub name: String,
    pub glob: Glob,
}

/// How an input is cut into datums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glob {
    /// `/`: the whole input is one datum.
    Whole,
    /// `/*`: each top-level file or folder is a datum.
    Top,
    /// `/*/*`: each entry one level down is a datum.
    Second,
    /// `/**`: each file, at any depth, is a datum.
    EveryFile,
}

impl Glob {
    fn parse(text: &str) -> Result<Glob, SpecError> {
        match text.trim() {
            "/" => Ok(Glob::Whole),
            "/*" => Ok(Glob::Top),
            "/*/*" => Ok(Glob::Second),
            "/**" => Ok(Glob::EveryFile),
            other => Err(pachyderm(format!(
                "input.pfs.glob {other:?} is not supported: use /, /*, /*/* or /**"
            ))),
        }
    }
}

fn pachyderm(why: String) -> SpecError {
    SpecError::Pachyderm { why }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    pipeline: RawPipeline,
    transform: RawTransform,
    input: RawInput,
    #[serde(default, alias = "parallelismSpec")]
    parallelism_spec: Option<RawParallelism>,
    #[serde(default, alias = "datumTries")]
    datum_tries: Option<u32>,
    #[serde(default, alias = "datumTimeout")]
    datum_timeout: Option<String>,
    #[serde(default, alias = "jobTimeout")]
    job_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    image: String,
    cmd: Vec<String>,
    #[serde(default)]
    stdin: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    pfs: RawPfs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPfs {
    repo: String,
    glob: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParallelism {
    constant: u32,
}

/// Reads a pipeline spec, JSON or YAML.
pub fn parse(text: &str) -> Result<Pipeline, SpecError> {
    let raw: RawSpec = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| pachyderm(format!("the JSON spec: {e}")))?
    } else {
        serde_yaml::from_str(text).map_err(|e| pachyderm(format!("the YAML spec: {e}")))?
    };
    let name = raw.pipeline.name;
    if !is_name(&name) {
        return Err(pachyderm(format!(
            "pipeline.name {name:?}: use letters, digits, - and _ only"
        )));
    }
    if raw.transform.cmd.is_empty() {
        return Err(pachyderm("transform.cmd is empty".into()));
    }
    if raw.transform.image.trim().is_empty() {
        return Err(pachyderm("transform.image is empty".into()));
    }
    let input_name = raw
        .input
        .pfs
        .name
        .unwrap_or_else(|| raw.input.pfs.repo.clone());
    if !is_name(&input_name) || input_name == "out" {
        return Err(pachyderm(format!(
            "the input's name {input_name:?} cannot be a folder under /pfs (and \"out\" is the output)"
        )));
    }
    let parallelism = match raw.parallelism_spec {
        Some(p) if p.constant == 0 || p.constant > 10_000 => {
            return Err(pachyderm(
                "parallelism_spec.constant must be between 1 and 10000".into(),
            ));
        }
        p => p.map(|p| p.constant),
    };
    let datum_tries = raw.datum_tries.unwrap_or(DEFAULT_DATUM_TRIES);
    if datum_tries == 0 || datum_tries > 100 {
        return Err(pachyderm("datum_tries must be between 1 and 100".into()));
    }
    Ok(Pipeline {
        name,
        image: raw.transform.image,
        cmd: raw.transform.cmd,
        stdin: raw.transform.stdin,
        env: raw.transform.env,
        input: PfsInput {
            repo: raw.input.pfs.repo,
            name: input_name,
            glob: Glob::parse(&raw.input.pfs.glob)?,
        },
        parallelism,
        datum_tries,
        datum_timeout: duration("datum_timeout", raw.datum_timeout.as_deref())?,
        job_timeout: duration("job_timeout", raw.job_timeout.as_deref())?,
    })
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A duration as Pachyderm writes one: `90s`, `1.5h`, `10m`, `3600s`.
fn duration(field: &str, text: Option<&str>) -> Result<Option<Duration>, SpecError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    let secs = number.parse::<f64>().map(|n| n * scale);
    match secs {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 366.0 * 86_400.0 => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        _ => Err(pachyderm(format!(
            "{field} {text:?}: expected a duration such as 90s, 10m or 1.5h"
        ))),
    }
}

/// One datum: the input files it holds, as paths relative to the input's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datum {
    pub files: Vec<PathBuf>,
}

/// Cuts the folder `root` into datums by `glob`, in path order. Empty
/// datums (an empty folder) are dropped, as Pachyderm does.
pub fn datums(root: &Path, glob: Glob) -> std::io::Result<Vec<Datum>> {
    let mut all = Vec::new();
    walk(root, Path::new(""), &mut all)?;
    all.sort();
    let key = |file: &Path| -> Option<PathBuf> {
        let parts: Vec<_> = file.components().collect();
        match glob {
            Glob::Whole => Some(PathBuf::new()),
            Glob::Top => parts.first().map(|c| PathBuf::from(c.as_os_str())),
            // A file at the top level matches no `/*/*` entry.
            Glob::Second if parts.len() >= 2 => Some(parts[..2].iter().collect()),
            Glob::Second => None,
            Glob::EveryFile => Some(file.to_owned()),
        }
    };
    let mut grouped: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for file in all {
        if let Some(k) = key(&file) {
            grouped.entry(k).or_default().push(file);
        }
    }
    Ok(grouped.into_values().map(|files| Datum { files }).collect())
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
        // Symlinks and special files are not data: skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP_JSON: &str = r#"{
      "pipeline": {"name": "wordcount-map"},
      "transform": {
        "image": "tormr-example/python:1",
        "cmd": ["python3", "/map.py"],
        "env": {"LANG": "C"}
      },
      "input": {"pfs": {"repo": "text", "glob": "/*"}},
      "parallelism_spec": {"constant": 4},
      "datum_tries": 2,
      "datum_timeout": "90s",
      "job_timeout": "1.5h"
    }"#;

    #[test]
    fn json_with_snake_case_fields() {
        let p = parse(MAP_JSON).unwrap();
        assert_eq!(p.name, "wordcount-map");
        assert_eq!(p.cmd, ["python3", "/map.py"]);
        assert_eq!(p.input.name, "text");
        assert_eq!(p.input.glob, Glob::Top);
        assert_eq!(p.parallelism, Some(4));
        assert_eq!(p.datum_tries, 2);
        assert_eq!(p.datum_timeout, Some(Duration::from_secs(90)));
        assert_eq!(p.job_timeout, Some(Duration::from_secs(5400)));
        assert_eq!(p.env["LANG"], "C");
    }

    #[test]
    fn yaml_with_camel_case_fields_reads_the_same() {
        let yaml = r#"
pipeline:
  name: wordcount-map
transform:
  image: tormr-example/python:1
  cmd: [python3, /map.py]
  env: {LANG: C}
input:
  pfs: {repo: text, glob: "/*"}
parallelismSpec: {constant: 4}
datumTries: 2
datumTimeout: 90s
jobTimeout: 1.5h
"#;
        assert_eq!(parse(yaml).unwrap(), parse(MAP_JSON).unwrap());
    }

    #[test]
    fn fields_outside_the_subset_are_refused_by_name() {
        for (field, spec) in [
            (
                "description",
                MAP_JSON.replacen('{', r#"{"description": "x","#, 1),
            ),
            ("egress", MAP_JSON.replacen('{', r#"{"egress": {},"#, 1)),
            (
                "secrets",
                MAP_JSON.replace(r#""env": {"LANG": "C"}"#, r#""secrets": []"#),
            ),
            (
                "cron",
                MAP_JSON.replace(r#""pfs": {"repo""#, r#""cron": {}, "pfs": {"repo""#),
            ),
        ] {
            let err = parse(&spec).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let bad =
            |from: &str, to: &str| parse(&MAP_JSON.replace(from, to)).unwrap_err().to_string();
        assert!(bad(r#""glob": "/*""#, r#""glob": "/a*""#).contains("glob"));
        assert!(bad(r#""90s""#, r#""soon""#).contains("datum_timeout"));
        assert!(bad(r#"["python3", "/map.py"]"#, "[]").contains("cmd"));
        assert!(bad(r#""constant": 4"#, r#""constant": 0"#).contains("parallelism"));
        assert!(bad(r#""wordcount-map""#, r#""a/b""#).contains("pipeline.name"));
        assert!(bad(r#""repo": "text""#, r#""repo": "out""#).contains("out"));
        assert!(parse("{").is_err());
        assert!(parse(": : :").is_err());
    }

    #[test]
    fn globs_cut_a_folder_into_datums() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["a.txt", "b/1.txt", "b/2.txt", "c/d/3.txt"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let files = |g| -> Vec<Vec<String>> {
            datums(root, g)
                .unwrap()
                .into_iter()
                .map(|d| d.files.iter().map(|p| p.display().to_string()).collect())
                .collect()
        };
        assert_eq!(
            files(Glob::Whole),
            [vec!["a.txt", "b/1.txt", "b/2.txt", "c/d/3.txt"]]
        );
        assert_eq!(
            files(Glob::Top),
            [vec!["a.txt"], vec!["b/1.txt", "b/2.txt"], vec!["c/d/3.txt"]]
        );
        assert_eq!(
            files(Glob::Second),
            [vec!["b/1.txt"], vec!["b/2.txt"], vec!["c/d/3.txt"]]
        );
        assert_eq!(files(Glob::EveryFile).len(), 4);
    }
}
