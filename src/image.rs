//! The owner's side of a job's image: find it in her engine and, for workers
//! that do not share that engine, export it as a chunked archive the job
//! master serves.

use crate::UsageError;
use crate::progress::Ui;
use anyhow::{Context, Result};
use std::path::Path;
use tormr_core::image::{ArchiveRef, CHUNK_BYTES, ImageRef};
use tormr_jobmaster::ImageArchive;
use tormr_worker::executor::docker;
use tormr_worker::images;

/// The image `name` of the owner's engine, as a job names it. With `ship`,
/// the image is also exported into `dir` for the job master to serve.
pub async fn prepare(
    name: &str,
    ship: bool,
    dir: &Path,
    ui: &Ui,
) -> Result<(ImageRef, Option<ImageArchive>)> {
    let engine = docker::connect()
        .await
        .map_err(|e| UsageError(format!("--image: {e}")))?;
    if !ship {
        let inspected = engine.inspect_image(name).await.map_err(|e| {
            UsageError(format!(
                "--image: your Docker engine has no image {name:?} ({e}); build or load it \
                 first (`docker images` lists what it has)"
            ))
        })?;
        let id = inspected
            .id
            .context("the Docker engine described the image without an id")?;
        let image = ImageRef {
            name: name.to_owned(),
            id,
            archive: None,
        };
        return Ok((image, None));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("image.tar");
    ui.say(&format!("exporting image {name} from your Docker engine…"));
    let id = images::export(&engine, name, &path)
        .await
        .map_err(|e| UsageError(format!("--image: {e}")))?;
    let chunked = path.clone();
    let archive =
        tokio::task::spawn_blocking(move || ArchiveRef::of_file(&chunked, CHUNK_BYTES)).await??;
    ui.say(&format!(
        "image {name}: {} in {} chunk(s), served to workers by the job master",
        crate::owner::human_bytes(archive.size),
        archive.chunks.len()
    ));
    let image = ImageRef {
        name: name.to_owned(),
        id,
        archive: Some(archive.clone()),
    };
    Ok((image, Some(ImageArchive { path, archive })))
}
