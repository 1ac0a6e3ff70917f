//! Builds a job definition from what the owner typed: Streaming flags, or an
//! mrjob script described by its own classes.

use crate::cli::SubmitArgs;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tormr_core::encoding::Digest;
use tormr_core::spec::mrjob::{MrjobDescription, ShippedFile, plan};
use tormr_core::spec::streaming::{
    StepFlags, limits_from_conf, parse_key_value, parse_size, step_from_flags,
};
use tormr_core::spec::{JobFile, JobSpec};

const MRJOB_HELPER: &str = include_str!("mrjob_helper.py");

/// A job ready to submit: the spec workers see, and where its files are here.
pub struct JobDefinition {
    pub spec: JobSpec,
    pub files: BTreeMap<Digest, PathBuf>,
    /// The image archive the job master serves, when the job ships one.
    pub image: Option<tormr_jobmaster::ImageArchive>,
    /// The Pachyderm pipeline the job runs, if it is one.
    pub pipeline: Option<tormr_core::spec::pachyderm::Pipeline>,
    /// Inputs the definition made itself (a pipeline's datums), instead of `-input`.
    pub inputs: Option<Vec<PathBuf>>,
}

fn hash_file(path: &Path) -> Result<(Digest, u64, bool)> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read -file {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("-file {} is not a regular file", path.display());
    }
    let digest = Digest::of_reader(file)?;
    use std::os::unix::fs::PermissionsExt;
    Ok((digest, meta.len(), meta.permissions().mode() & 0o111 != 0))
}

fn ship(files: &[ShippedFile]) -> Result<(Vec<JobFile>, BTreeMap<Digest, PathBuf>)> {
    let mut manifest = Vec::new();
    let mut by_digest = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        if !JobFile::name_is_safe(&f.name) {
            bail!(
                "cannot ship {} as {:?}: the name must be a relative path without '..'",
                f.path,
                f.name
            );
        }
        if !names.insert(f.name.clone()) {
            bail!(
                "two files would both be named {:?} in the task folder; rename one",
                f.name
            );
        }
        let path = PathBuf::from(&f.path);
        let (digest, size, executable) = hash_file(&path)?;
        manifest.push(JobFile {
            name: f.name.clone(),
            digest,
            size,
            executable,
        });
        by_digest.insert(digest, path);
    }
    Ok((manifest, by_digest))
}

fn conf_from(args: &SubmitArgs) -> Result<BTreeMap<String, String>> {
    let mut conf = BTreeMap::new();
    for d in &args.defines {
        let (k, v) = parse_key_value("-D", d)?;
        conf.insert(k, v);
    }
    if let Some(size) = &args.bucket_size {
        parse_size(size)
            .with_context(|| format!("--bucket-size {size:?} is not a size such as 64m"))?;
        conf.insert("tormr.bucket.bytes".into(), size.clone());
    }
    Ok(conf)
}

fn cmdenv(args: &SubmitArgs) -> Result<BTreeMap<String, String>> {
    args.cmdenv
        .iter()
        .map(|e| parse_key_value("-cmdenv", e).map_err(Into::into))
        .collect()
}

/// A Streaming job from `-mapper`/`-reducer`/… flags.
pub fn streaming(args: &SubmitArgs) -> Result<JobDefinition> {
    let Some(mapper) = &args.mapper else {
        bail!("a Streaming job needs -mapper CMD (or use --mrjob SCRIPT.py)");
    };
    let conf = conf_from(args)?;
    let flags = StepFlags {
        mapper: Some(mapper.clone()),
        combiner: args.combiner.clone(),
        reducer: args.reducer.clone(),
        num_reduce_tasks: args.num_reduce_tasks,
        partitioner: args.partitioner.clone(),
    };
    let step = step_from_flags(&flags, &conf)?;
    let shipped: Vec<ShippedFile> = args
        .files
        .iter()
        .map(|p| ShippedFile {
            path: p.display().to_string(),
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
        .collect();
    let (files, by_digest) = ship(&shipped)?;
    let spec = JobSpec {
        name: "streaming".into(),
        steps: vec![step],
        files,
        env: cmdenv(args)?,
        limits: limits_from_conf(&conf)?,
        conf,
        image: None,
        pachyderm: None,
    };
    Ok(JobDefinition {
        spec,
        files: by_digest,
        image: None,
        pipeline: None,
        inputs: None,
    })
}

/// An mrjob job: asks the script's own classes for their steps. Archives
/// the script ships are unpacked under `scratch`.
pub fn mrjob(args: &SubmitArgs, script: &Path, scratch: &Path) -> Result<JobDefinition> {
    if !script.is_file() {
        bail!("mrjob script {} does not exist", script.display());
    }
    let output = std::process::Command::new(&args.python)
        .arg("-c")
        .arg(MRJOB_HELPER)
        .env("TORMR_ARCHIVE_DIR", scratch)
        .arg(script)
        .args(&args.script_args)
        .output()
        .with_context(|| {
            format!(
                "could not run {} to read the mrjob script; pass --python PATH",
                args.python
            )
        })?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!("{}", err.trim().trim_start_matches("tormr-mrjob: "));
    }
    let mut desc: MrjobDescription = serde_json::from_slice(&output.stdout)
        .context("the mrjob helper printed something unexpected")?;
    // The command line has the final say, as with mrjob's own runners.
    for (k, v) in conf_from(args)? {
        desc.jobconf.insert(k, serde_json::Value::String(v));
    }
    if let Some(r) = args.num_reduce_tasks {
        desc.jobconf.insert(
            "mapreduce.job.reduces".into(),
            serde_json::Value::String(r.to_string()),
        );
    }
    if let Some(p) = &args.partitioner {
        desc.partitioner = Some(p.clone());
    }
    let script_file = ShippedFile {
        path: script.display().to_string(),
        name: script
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job.py".into()),
    };
    let planned = plan(&desc, &script_file, &args.python)?;
    let conf = planned.conf;
    let mut shipped = planned.files;
    shipped.extend(args.files.iter().map(|p| {
        ShippedFile {
            path: p.display().to_string(),
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }));
    let (files, by_digest) = ship(&shipped)?;
    let spec = JobSpec {
        name: script_file.name.clone(),
        steps: planned.steps,
        files,
        env: cmdenv(args)?,
        limits: limits_from_conf(&conf)?,
        conf,
        image: None,
        pachyderm: None,
    };
    Ok(JobDefinition {
        spec,
        files: by_digest,
        image: None,
        pipeline: None,
        inputs: None,
    })
}

/// The job the flags describe; `scratch` holds anything unpacked for it.
pub fn build(args: &SubmitArgs, scratch: &Path) -> Result<JobDefinition> {
    match (&args.pachyderm, &args.mrjob) {
        (Some(spec), _) => crate::pachyderm::definition(args, spec, &scratch.join("datums")),
        (None, Some(script)) => mrjob(args, script, scratch),
        (None, None) => streaming(args),
    }
}
