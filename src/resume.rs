//! Resuming a job whose `tormr submit` died: the job's manifest in its state
//! folder holds what the store does not (the command line that defined the
//! job, where it was run from, the ports its services were reached on), and
//! `tormr job resume --state DIR` runs the same submission again in resume
//! mode. The store (`STATE/owner/JOB.redb`) holds the rest: input buckets and
//! their keys, finished tasks, workers' sessions.

use crate::UsageError;
use crate::cli::{Cli, Command, ResumeArgs};
use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tormr_core::identity::Identity;
use tormr_core::ids::JobId;

const MANIFEST: &str = "job.json";

/// What a resumed submission needs besides the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub job: JobId,
    /// The `tormr submit` command line, normalised.
    pub argv: Vec<String>,
    /// The folder it ran in: relative paths on the command line mean the same.
    pub cwd: PathBuf,
    /// Loopback ports of the job's services (tcp:// clusters), so that
    /// workers still in the job find them again.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

/// How a submission starts: a new job, or one found in its state folder.
pub struct JobStart {
    pub manifest: Manifest,
    path: PathBuf,
    /// The job's key: the same on resume, so tickets and the job master's
    /// onion address stay valid.
    pub identity: Arc<Identity>,
    pub resuming: bool,
}

impl JobStart {
    /// A new job in `state`.
    pub fn new(state: &Path, argv: Vec<String>) -> Result<Self> {
        let job = JobId::random();
        std::fs::create_dir_all(state.join("owner"))
            .with_context(|| format!("creating {}", state.join("owner").display()))?;
        let identity = Arc::new(
            Identity::load_or_create(&key_path(state, &job)).context("creating the job's key")?,
        );
        let cwd = std::env::current_dir().context("reading the current folder")?;
        Ok(JobStart {
            manifest: Manifest {
                job,
                argv,
                cwd,
                ports: BTreeMap::new(),
            },
            path: state.join(MANIFEST),
            identity,
            resuming: false,
        })
    }

    /// The job recorded in `state`.
    pub fn load(state: &Path) -> Result<Self> {
        let path = state.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| {
            UsageError(format!(
                "{} cannot be read ({e}): is {} the --state folder of a submitted job that has not ended? (a job that succeeded, failed or was interrupted cannot be resumed)",
                path.display(),
                state.display()
            ))
        })?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        let key = key_path(state, &manifest.job);
        if !key.exists() {
            return Err(UsageError(format!(
                "the job's key {} is missing: the job cannot be resumed; submit it again",
                key.display()
            ))
            .into());
        }
        let identity = Arc::new(
            Identity::load_or_create(&key)
                .with_context(|| format!("reading the job's key {}", key.display()))?,
        );
        Ok(JobStart {
            manifest,
            path,
            identity,
            resuming: true,
        })
    }

    /// Writes the manifest (readable by its owner only, like the folder).
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.manifest)?;
        // Written aside and renamed: a crash mid-write leaves the old one.
        let aside = self.path.with_extension("json.new");
        let _ = std::fs::remove_file(&aside);
        tormr_core::identity::write_private(&aside, &text)
            .and_then(|()| std::fs::rename(&aside, &self.path))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The owner's folder in the state folder: the job's store and key, the
    /// trust book.
    pub fn owner_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("owner"), |state| state.join("owner"))
    }

    /// Forgets the job once it has ended, so that `tormr job resume` says so.
    pub fn finish(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// The port a service was reached on before, if any.
    pub fn port(&self, service: &str) -> u16 {
        self.manifest.ports.get(service).copied().unwrap_or(0)
    }
}

fn key_path(state: &Path, job: &JobId) -> PathBuf {
    state.join("owner").join(format!("{job}.key"))
}

/// `tormr job resume --state DIR`.
pub async fn run(args: ResumeArgs) -> Result<()> {
    let state = std::fs::canonicalize(&args.state).map_err(|e| {
        UsageError(format!(
            "--state {}: {e}; name the folder the job was submitted with",
            args.state.display()
        ))
    })?;
    let start = JobStart::load(&state)?;
    let cli = Cli::try_parse_from(start.manifest.argv.clone()).map_err(|e| {
        UsageError(format!(
            "the recorded command line no longer parses ({e}); submit the job again"
        ))
    })?;
    let Command::Submit(mut submit) = cli.command else {
        return Err(UsageError("the recorded command line is not a `tormr submit`".into()).into());
    };
    std::env::set_current_dir(&start.manifest.cwd).map_err(|e| {
        UsageError(format!(
            "the job was submitted from {}, which cannot be entered now ({e})",
            start.manifest.cwd.display()
        ))
    })?;
    submit.state = Some(state);
    submit.json |= args.json;
    let argv = start.manifest.argv.clone();
    crate::submit::run_start(*submit, argv, Some(start)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_survives_a_round_trip_and_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("owner")).unwrap();
        let mut start = JobStart::new(dir.path(), vec!["tormr".into(), "submit".into()]).unwrap();
        start.save().unwrap();
        start.manifest.ports.insert("job".into(), 4242);
        start.save().unwrap();
        let again = JobStart::load(dir.path()).unwrap();
        assert!(again.resuming);
        assert_eq!(again.manifest.job, start.manifest.job);
        assert_eq!(again.port("job"), 4242);
        assert_eq!(again.port("datalayer"), 0);
        assert_eq!(again.identity.public(), start.identity.public());
    }

    #[test]
    fn a_folder_without_a_job_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let err = JobStart::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("--state folder of a submitted job"), "{err}");
    }
}
