//! Job images without a registry: the owner's export, and the worker's
//! verified, cached import.
//!
//! A worker never pulls: a pull would tell a registry what it works on. The
//! owner's engine saves the image by id (so the archive names no tag that
//! could overwrite one of the volunteer's), the job master serves it in
//! content-addressed chunks, and [`ImageCache::ensure`] fetches the chunks
//! over parallel lanes, checks each chunk, then the whole archive, then that
//! the archive holds exactly the image the job names, and only then hands it
//! to the engine. Loaded images are tagged `tormr/job-image:<id prefix>` and
//! kept, keyed by image id, until the cache's disk cap evicts the least
//! recently used.

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tormr_core::encoding::Digest;
use tormr_core::image::{ArchiveError, ArchiveRef, ImageRef};

/// The repository name cached job images are tagged with.
pub const CACHE_REPO: &str = "tormr/job-image";
/// Attempts per chunk, each on the next lane.
const CHUNK_TRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("the job names an image id {id:?} that is not sha256:<64 hex digits>")]
    BadId { id: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(
        "chunk {chunk} of the job's image does not match its digest: the job master sent \
         something else (refused; nothing was loaded)"
    )]
    ChunkDigest { chunk: usize },
    #[error("fetching chunk {chunk} of the job's image: {why}")]
    Fetch { chunk: usize, why: String },
    #[error("the job's image archive does not match its digest (refused; nothing was loaded)")]
    ArchiveDigest,
    #[error(
        "the job's image archive is not what the job names: {why} (refused; nothing was loaded)"
    )]
    Contents { why: String },
    #[error(
        "the job's image {name:?} is not in this worker's engine and the job master offers no \
         copy of it"
    )]
    NotDelivered { name: String },
    #[error("the Docker engine {what}: {why}")]
    Engine { what: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn engine(what: &str) -> impl FnOnce(bollard::errors::Error) -> ImageError + '_ {
    move |e| ImageError::Engine {
        what: what.to_owned(),
        why: e.to_string(),
    }
}

/// Saves image `name` of the owner's engine into `path`, by id so the archive
/// carries no tag. Returns the image id.
pub async fn export(docker: &Docker, name: &str, path: &Path) -> Result<String, ImageError> {
    let inspected = docker
        .inspect_image(name)
        .await
        .map_err(|e| ImageError::Engine {
            what: format!(
                "has no image {name:?} (build or load it first; `docker images` lists what it has)"
            ),
            why: e.to_string(),
        })?;
    let id = inspected.id.ok_or_else(|| ImageError::Engine {
        what: format!("described image {name:?}"),
        why: "without an id".into(),
    })?;
    let mut file = tokio::fs::File::create(path).await.map_err(io_err(path))?;
    let mut stream = docker.export_image(&id);
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(engine("could not save the image"))?;
        file.write_all(&bytes).await.map_err(io_err(path))?;
    }
    file.flush().await.map_err(io_err(path))?;
    Ok(id)
}

/// Where a worker gets chunks from: the job master, over one or more lanes.
#[async_trait]
pub trait ChunkSource: Send + Sync {
    /// How many fetches may run at once.
    fn lanes(&self) -> usize;
    /// Chunk `digest`, `len` bytes, fetched on `lane`. A source must not
    /// return more than `len` bytes.
    async fn fetch(&self, lane: usize, digest: &Digest, len: u64) -> Result<Vec<u8>, String>;
}

/// Reports bytes fetched so far and the total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    id: String,
    tag: String,
    bytes: u64,
    last_used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: Vec<Entry>,
}

/// The worker's cache of job images in its engine, keyed by image id.
pub struct ImageCache {
    docker: Docker,
    dir: PathBuf,
    cap_bytes: u64,
    /// One fetch or eviction at a time, so the index is never raced.
    lock: tokio::sync::Mutex<()>,
    /// Orders uses within one second.
    tick: AtomicU64,
}

impl ImageCache {
    /// A cache whose index and downloads live in `dir`, holding at most
    /// `cap_bytes` of images (the one in use is never evicted).
    pub fn new(docker: Docker, dir: PathBuf, cap_bytes: u64) -> Self {
        ImageCache {
            docker,
            dir,
            cap_bytes,
            lock: tokio::sync::Mutex::new(()),
            tick: AtomicU64::new(0),
        }
    }

    /// The image ids the cache holds, least recently used first.
    pub async fn cached(&self) -> Vec<String> {
        let mut images = self.load_index().await.images;
        images.sort_by_key(|e| e.last_used);
        images.into_iter().map(|e| e.id).collect()
    }

    /// Makes sure the engine has `image`, fetching and checking it from
    /// `source` if the cache does not hold it. Returns the id to run.
    pub async fn ensure(
        &self,
        image: &ImageRef,
        source: &dyn ChunkSource,
        progress: Progress<'_>,
    ) -> Result<String, ImageError> {
        let id_digest = image.id_digest().ok_or_else(|| ImageError::BadId {
            id: image.id.clone(),
        })?;
        let _guard = self.lock.lock().await;
        let mut index = self.load_index().await;
        let engine_has = self.docker.inspect_image(&image.id).await.is_ok();
        if let Some(entry) = index.images.iter_mut().find(|e| e.id == image.id) {
            if engine_has {
                entry.last_used = self.now();
                self.save_index(&index).await?;
                return Ok(image.id.clone());
            }
            // Someone removed it behind the cache's back: fetch it again.
            index.images.retain(|e| e.id != image.id);
        }
        let Some(archive) = &image.archive else {
            // Local mode: the workers share the owner's engine.
            return if engine_has {
                Ok(image.id.clone())
            } else {
                Err(ImageError::NotDelivered {
                    name: image.name.clone(),
                })
            };
        };
        archive.check()?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io_err(&self.dir))?;
        let path = self
            .dir
            .join(format!("{}.tar.part", archive.digest.short()));
        let loaded = self
            .fetch_check_load(image, &id_digest, archive, &path, source, progress)
            .await;
        let _ = tokio::fs::remove_file(&path).await;
        let bytes = loaded?;
        let tag = id_digest.to_hex()[..16].to_owned();
        self.docker
            .tag_image(
                &image.id,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(CACHE_REPO)
                        .tag(&tag)
                        .build(),
                ),
            )
            .await
            .map_err(engine("could not tag the loaded image"))?;
        index.images.push(Entry {
            id: image.id.clone(),
            tag: format!("{CACHE_REPO}:{tag}"),
            bytes,
            last_used: self.now(),
        });
        self.evict(&mut index, &image.id).await;
        self.save_index(&index).await?;
        Ok(image.id.clone())
    }

    async fn fetch_check_load(
        &self,
        image: &ImageRef,
        id_digest: &Digest,
        archive: &ArchiveRef,
        path: &Path,
        source: &dyn ChunkSource,
        progress: Progress<'_>,
    ) -> Result<u64, ImageError> {
        fetch_chunks(archive, path, source, progress).await?;
        let (p, a, id) = (path.to_owned(), archive.clone(), *id_digest);
        tokio::task::spawn_blocking(move || check_archive(&p, &a, &id))
            .await
            .map_err(|e| ImageError::Contents {
                why: format!("the check stopped: {e}"),
            })??;
        self.load(path).await?;
        let inspected = self
            .docker
            .inspect_image(&image.id)
            .await
            .map_err(engine("did not list the image after loading it"))?;
        Ok(inspected.size.unwrap_or(0).max(0) as u64)
    }

    async fn load(&self, path: &Path) -> Result<(), ImageError> {
        let file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = self.docker.import_image_stream(options, body, None);
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(engine("refused the image archive"))?;
            if let Some(detail) = answer.error_detail {
                return Err(ImageError::Engine {
                    what: "refused the image archive".into(),
                    why: detail.message.unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Removes least recently used images until the cache fits its cap.
    async fn evict(&self, index: &mut Index, keep: &str) {
        index.images.sort_by_key(|e| e.last_used);
        let mut total: u64 = index.images.iter().map(|e| e.bytes).sum();
        let mut kept = Vec::new();
        for entry in std::mem::take(&mut index.images) {
            if total <= self.cap_bytes || entry.id == keep {
                kept.push(entry);
                continue;
            }
            // By tag: if the volunteer tagged the image too, only our name goes.
            let options = RemoveImageOptionsBuilder::default().build();
            match self
                .docker
                .remove_image(&entry.tag, Some(options), None)
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        "image cache: evicted {} ({} MiB)",
                        entry.tag,
                        entry.bytes >> 20
                    );
                    total -= entry.bytes;
                }
                Err(e) => {
                    tracing::warn!("image cache: could not evict {}: {e}", entry.tag);
                    kept.push(entry);
                }
            }
        }
        index.images = kept;
    }

    fn now(&self) -> u64 {
        // Seconds, then a counter: strictly increasing within this process.
        let t = tormr_core::unix_now() << 20;
        let n = self.tick.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
        t | n
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    async fn load_index(&self) -> Index {
        match tokio::fs::read(self.index_path()).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("image cache: unreadable index ({e}); starting afresh");
                Index::default()
            }),
            Err(_) => Index::default(),
        }
    }

    async fn save_index(&self, index: &Index) -> Result<(), ImageError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io_err(&self.dir))?;
        let path = self.index_path();
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(index).unwrap_or_default();
        tokio::fs::write(&tmp, bytes).await.map_err(io_err(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io_err(&path))
    }
}

/// Fetches every chunk into `path` over the source's lanes, checking each
/// against its digest; a chunk that fails is tried on the next lane.
async fn fetch_chunks(
    archive: &ArchiveRef,
    path: &Path,
    source: &dyn ChunkSource,
    progress: Progress<'_>,
) -> Result<(), ImageError> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    file.set_len(archive.size).map_err(io_err(path))?;
    let file = std::sync::Arc::new(file);
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let lanes = source.lanes().clamp(1, 16);
    let lane = |lane: usize| {
        let (file, next, done) = (file.clone(), &next, &done);
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(digest) = archive.chunks.get(i) else {
                    return Ok::<(), ImageError>(());
                };
                let bytes = fetch_one(archive, i, digest, lane, lanes, source).await?;
                let (offset, _) = archive.chunk_range(i);
                let f = file.clone();
                let n = bytes.len() as u64;
                tokio::task::spawn_blocking(move || {
                    std::os::unix::fs::FileExt::write_all_at(&*f, &bytes, offset)
                })
                .await
                .map_err(|e| ImageError::Fetch {
                    chunk: i,
                    why: e.to_string(),
                })?
                .map_err(io_err(path))?;
                let total = done.fetch_add(n, Ordering::Relaxed) + n;
                progress(total, archive.size);
            }
        }
    };
    futures_util::future::try_join_all((0..lanes).map(lane)).await?;
    Ok(())
}

async fn fetch_one(
    archive: &ArchiveRef,
    i: usize,
    digest: &Digest,
    lane: usize,
    lanes: usize,
    source: &dyn ChunkSource,
) -> Result<Vec<u8>, ImageError> {
    let (_, len) = archive.chunk_range(i);
    let mut last = ImageError::Fetch {
        chunk: i,
        why: "not tried".into(),
    };
    for attempt in 0..CHUNK_TRIES {
        match source.fetch((lane + attempt) % lanes, digest, len).await {
            Ok(bytes) if bytes.len() as u64 == len && Digest::of(&bytes) == *digest => {
                return Ok(bytes);
            }
            Ok(_) => last = ImageError::ChunkDigest { chunk: i },
            Err(why) => last = ImageError::Fetch { chunk: i, why },
        }
    }
    Err(last)
}

/// The parts of a `docker save` manifest a worker checks.
#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// Checks a fetched archive: its digest, and that it holds exactly one image,
/// the one whose id the job names, with no tag.
pub fn check_archive(path: &Path, archive: &ArchiveRef, id: &Digest) -> Result<(), ImageError> {
    let contents = |why: &str| ImageError::Contents {
        why: why.to_owned(),
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    if Digest::of_reader(file).map_err(io_err(path))? != archive.digest {
        return Err(ImageError::ArchiveDigest);
    }
    let manifest = read_member(path, "manifest.json", 1 << 20)?
        .ok_or_else(|| contents("it has no manifest.json"))?;
    let entries: Vec<ManifestEntry> = serde_json::from_slice(&manifest).map_err(|e| {
        contents(&format!(
            "its manifest.json is not a docker save manifest ({e})"
        ))
    })?;
    let [entry] = entries.as_slice() else {
        return Err(contents(&format!(
            "it holds {} images, not one",
            entries.len()
        )));
    };
    if entry.repo_tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(contents(
            "it names tags, which would overwrite the volunteer's own image names",
        ));
    }
    let config = read_member(path, &entry.config, 16 << 20)?
        .ok_or_else(|| contents("its manifest names a config it does not hold"))?;
    if Digest::of(&config) != *id {
        return Err(contents(
            "its image config is not the image id the job names",
        ));
    }
    Ok(())
}

/// The bytes of member `name` of a tar file, if it has one no larger than `max`.
fn read_member(path: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>, ImageError> {
    let bad = |e: std::io::Error| ImageError::Contents {
        why: format!("it is not a readable tar archive ({e})"),
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut tar = tar::Archive::new(file);
    let want = name.trim_start_matches("./");
    for entry in tar.entries_with_seek().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let entry_path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if entry_path.trim_start_matches("./") != want {
            continue;
        }
        if entry.size() > max {
            return Err(ImageError::Contents {
                why: format!("its {want} is larger than {max} bytes"),
            });
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(bad)?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

/// A [`ChunkSource`] over HTTP lanes to a job master (`GET /v1/image/{digest}`).
pub struct JobMasterChunks {
    pub lanes: Vec<tormr_net::HttpClient>,
}

#[async_trait]
impl ChunkSource for JobMasterChunks {
    fn lanes(&self) -> usize {
        self.lanes.len()
    }

    async fn fetch(&self, lane: usize, digest: &Digest, len: u64) -> Result<Vec<u8>, String> {
        let client = self
            .lanes
            .get(lane)
            .or(self.lanes.first())
            .ok_or("no lane to the job master")?;
        let req = client
            .request(http::Method::GET, &format!("/v1/image/{digest}"))
            .body(tormr_net::body::empty())
            .map_err(|e| e.to_string())?;
        let resp = client
            .send(req, std::time::Duration::from_secs(120))
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(len as usize);
        tormr_net::body::copy_body(
            resp.into_body(),
            &mut bytes,
            len,
            std::time::Duration::from_secs(60),
            |_| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}
