//! `tormr submit --pachyderm SPEC`: a Pachyderm pipeline as a map-only job.
//! Each datum the glob cuts from the `-input` folder becomes one tar, one
//! input bucket and one map task; each task's output is the tar of what the
//! command left in `/pfs/out`, and the owner merges those into the output
//! folder, refusing two datums that wrote the same path.

use crate::cli::SubmitArgs;
use crate::jobdef::JobDefinition;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tormr_core::spec::pachyderm::{self, Datum, Pipeline};
use tormr_core::spec::{JobLimits, JobSpec, StepSpec, join_words};

/// Reads the spec named by `--pachyderm`.
pub fn read_spec(path: &Path) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the pipeline spec {}", path.display()))?;
    Ok(pachyderm::parse(&text)?)
}

/// The job for the pipeline, with one tar per datum written into `scratch`.
pub fn definition(args: &SubmitArgs, spec_path: &Path, scratch: &Path) -> Result<JobDefinition> {
    if args.mapper.is_some() || args.reducer.is_some() || args.combiner.is_some() {
        bail!("--pachyderm runs the spec's transform.cmd: drop -mapper, -reducer and -combiner");
    }
    if args.image.is_some() {
        bail!("--pachyderm takes the image from the spec's transform.image: drop --image");
    }
    let pipeline = read_spec(spec_path)?;
    let [root] = args.inputs.as_slice() else {
        bail!(
            "a Pachyderm pipeline reads one -input folder (the contents of its input repo {:?})",
            pipeline.input.repo
        );
    };
    if !root.is_dir() {
        bail!(
            "-input {}: a Pachyderm input must be a folder",
            root.display()
        );
    }
    let datums = pachyderm::datums(root, pipeline.input.glob)
        .with_context(|| format!("reading the input folder {}", root.display()))?;
    if datums.is_empty() {
        bail!(
            "the glob {:?} finds no datum in {}: is the folder empty?",
            glob_text(&pipeline),
            root.display()
        );
    }
    std::fs::create_dir_all(scratch)?;
    let mut tars = Vec::with_capacity(datums.len());
    for (i, datum) in datums.iter().enumerate() {
        let tar = scratch.join(format!("datum-{i:06}.tar"));
        pack_datum(root, datum, &tar)?;
        tars.push(tar);
    }
    let largest = tars
        .iter()
        .filter_map(|t| std::fs::metadata(t).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let mut limits = JobLimits {
        map_attempts: pipeline.datum_tries,
        // One bucket per datum: a slice never spans files, and no datum is
        // cut when a bucket can hold the largest.
        bucket_bytes: largest.max(4096),
        ..JobLimits::default()
    };
    if let Some(t) = pipeline.datum_timeout {
        limits.task_timeout_secs = t.as_secs().max(1);
    }
    let spec = JobSpec {
        name: pipeline.name.clone(),
        steps: vec![StepSpec {
            mapper: Some(join_words(&pipeline.cmd)),
            combiner: None,
            reducer: None,
            reduces: 0,
            keys: Default::default(),
            conf: BTreeMap::new(),
        }],
        files: vec![],
        env: pipeline.env.clone(),
        conf: BTreeMap::new(),
        limits,
        image: None,
        pachyderm: Some(pipeline.task()),
    };
    Ok(JobDefinition {
        spec,
        files: BTreeMap::new(),
        image: None,
        pipeline: Some(pipeline),
        inputs: Some(tars),
    })
}

fn glob_text(p: &Pipeline) -> &'static str {
    match p.input.glob {
        pachyderm::Glob::Whole => "/",
        pachyderm::Glob::Top => "/*",
        pachyderm::Glob::Second => "/*/*",
        pachyderm::Glob::EveryFile => "/**",
    }
}

/// Writes a datum's files, with their paths under the input folder, as a tar.
fn pack_datum(root: &Path, datum: &Datum, tar_path: &Path) -> Result<()> {
    let file = std::fs::File::create(tar_path)
        .with_context(|| format!("writing {}", tar_path.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    for rel in &datum.files {
        let mut f = std::fs::File::open(root.join(rel))
            .with_context(|| format!("reading {}", root.join(rel).display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(f.metadata()?.len());
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, &mut f)?;
    }
    tar.into_inner()?;
    Ok(())
}

/// Unpacks every part (each a datum's `/pfs/out` as a tar) into `output`,
/// refusing a path two datums wrote. Returns the number of files.
pub fn merge_outputs(parts: &Path, output: &Path) -> Result<usize> {
    let mut part_files: Vec<PathBuf> = std::fs::read_dir(parts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    part_files.sort();
    std::fs::create_dir_all(output)?;
    let mut written: BTreeMap<PathBuf, String> = BTreeMap::new();
    for part in &part_files {
        let part_name = part
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut archive = tar::Archive::new(std::fs::File::open(part)?);
        archive.set_preserve_permissions(false);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            if let Some(first) = written.get(&path) {
                bail!(
                    "two datums wrote /pfs/out/{} (outputs {first} and {part_name}); \
                     Pachyderm refuses that too: make each datum write its own paths",
                    path.display()
                );
            }
            if !entry.unpack_in(output)? {
                bail!("a datum wrote a path outside /pfs/out: {}", path.display());
            }
            written.insert(path, part_name.clone());
        }
    }
    // No `_SUCCESS` marker: a pipeline's output is exactly what its datums
    // wrote, as in Pachyderm (and the next pipeline's input).
    Ok(written.len())
}
