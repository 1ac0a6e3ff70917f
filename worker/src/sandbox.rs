//! The worker's container side: its Docker engine, the limits the volunteer
//! set, and the image cache. A job that names an image gets a
//! [`DockerExecutor`] for it once the image is in the engine.

use crate::executor::Executor;
use crate::executor::docker::{self, DockerError, DockerExecutor, Limits};
use crate::images::{ChunkSource, ImageCache, ImageError, Progress};
use bollard::Docker;
use std::path::Path;
use std::sync::Arc;
use tormr_core::image::ImageRef;

pub struct Sandbox {
    docker: Docker,
    /// Where the idle program of kept containers is written.
    idle_dir: std::path::PathBuf,
    limits: Limits,
    label: String,
    images: ImageCache,
}

impl Sandbox {
    /// A sandbox on `docker` whose images are cached under `state_dir`
    /// (at most `cache_bytes`) and whose containers carry `label`. Removes
    /// containers an earlier run under the same label left behind.
    pub async fn new(
        docker: Docker,
        state_dir: &Path,
        limits: Limits,
        cache_bytes: u64,
        label: &str,
    ) -> Result<Self, DockerError> {
        let images = ImageCache::new(docker.clone(), state_dir.join("images"), cache_bytes);
        let sandbox = Sandbox {
            idle_dir: state_dir.join("idle"),
            docker,
            limits,
            label: label.to_owned(),
            images,
        };
        sandbox.sweep().await?;
        Ok(sandbox)
    }

    /// Removes every container under this sandbox's label. Run at start
    /// and again as the worker stops: a container whose job was cut short
    /// is otherwise removed only in the background, which a process on its
    /// way out does not wait for.
    pub async fn sweep(&self) -> Result<usize, DockerError> {
        // Any image will do for sweeping: it only lists containers by label.
        DockerExecutor::new(
            self.docker.clone(),
            "sweep",
            self.limits.clone(),
            &self.label,
        )
        .sweep()
        .await
    }

    /// Connects to the local engine (see [`docker::connect`]).
    pub async fn connect(
        state_dir: &Path,
        limits: Limits,
        cache_bytes: u64,
        label: &str,
    ) -> Result<Self, DockerError> {
        let docker = docker::connect().await?;
        Self::new(docker, state_dir, limits, cache_bytes, label).await
    }

    pub fn images(&self) -> &ImageCache {
        &self.images
    }

    /// An executor running the job's code in containers of `image`, fetched
    /// from `source` unless the cache holds it. With `keep`, a container
    /// serves many runs of the job while it stays fresh; without, every run
    /// gets a new one.
    pub async fn executor(
        &self,
        image: &ImageRef,
        source: &dyn ChunkSource,
        progress: Progress<'_>,
        keep: bool,
    ) -> Result<Arc<dyn Executor>, ImageError> {
        let id = self.images.ensure(image, source, progress).await?;
        // One executor per job: its kept containers serve only this job.
        let executor =
            DockerExecutor::new(self.docker.clone(), &id, self.limits.clone(), &self.label);
        Ok(Arc::new(if keep {
            executor.keeping_containers(&self.idle_dir)
        } else {
            executor
        }))
    }
}
