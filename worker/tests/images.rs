//! The worker's image cache against the real engine: an image exported by
//! one engine arrives in checked chunks, is loaded and cached by id; a
//! tampered chunk, a wrong archive digest, an archive of another image or one
//! that names tags are refused before the engine sees anything; and the
//! least recently used image goes when the cache outgrows its cap.
//!
//! The chunks come from an in-process source standing in for the job master
//! (the HTTP path is exercised end to end by the Tor tests); everything the
//! engine does is real. Needs a running Docker engine and busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use bollard::Docker;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use tormr_core::encoding::Digest;
use tormr_core::image::{ArchiveRef, ImageRef};
use tormr_worker::executor::docker::connect;
use tormr_worker::images::{CACHE_REPO, ChunkSource, ImageCache, ImageError, export};

const CHUNK: u64 = 256 << 10;

fn base_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/busybox.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "building the test image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A new image no engine has seen (the base with a unique label), tagged `tag`.
fn unique_image(tag: &str) {
    let nonce = Digest::of(format!("{tag}{:?}", std::time::SystemTime::now()).as_bytes());
    let container = docker_cli(&["create", base_image(), "true"]);
    docker_cli(&[
        "commit",
        "-c",
        &format!("LABEL tormr.test={}", nonce.short()),
        &container,
        tag,
    ]);
    docker_cli(&["rm", &container]);
}

/// Serves an archive's chunks from memory, optionally corrupting one.
struct Source {
    data: Vec<u8>,
    archive: ArchiveRef,
    tamper: Option<usize>,
    calls: AtomicUsize,
}

#[async_trait]
impl ChunkSource for Source {
    fn lanes(&self) -> usize {
        3
    }

    async fn fetch(&self, _lane: usize, digest: &Digest, len: u64) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let i = self
            .archive
            .chunks
            .iter()
            .position(|d| d == digest)
            .ok_or("no such chunk")?;
        let (start, n) = self.archive.chunk_range(i);
        assert_eq!(n, len);
        let mut bytes = self.data[start as usize..(start + n) as usize].to_vec();
        if self.tamper == Some(i) {
            bytes[len as usize / 2] ^= 1;
        }
        Ok(bytes)
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    dir: tempfile::TempDir,
}

/// An image exported from the engine and then removed from it, as a job
/// master would offer it to a worker that lacks it.
struct Shipped {
    image: ImageRef,
    data: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let docker = rt.block_on(connect()).expect("a running Docker engine");
        Fixture {
            rt,
            docker,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ship(&self, name: &str) -> Shipped {
        let tag = format!("tormr-test-ship:{name}-{}", std::process::id());
        unique_image(&tag);
        let path = self.dir.path().join(format!("{name}.tar"));
        let id = self.rt.block_on(export(&self.docker, &tag, &path)).unwrap();
        docker_cli(&["rmi", &tag]);
        assert!(!self.engine_has(&id), "the shipped image is still loaded");
        let archive = ArchiveRef::of_file(&path, CHUNK).unwrap();
        assert!(archive.chunks.len() > 3, "want several chunks");
        Shipped {
            image: ImageRef {
                name: tag,
                id,
                archive: Some(archive),
            },
            data: std::fs::read(&path).unwrap(),
        }
    }

    fn source(&self, shipped: &Shipped, tamper: Option<usize>) -> Source {
        Source {
            data: shipped.data.clone(),
            archive: shipped.image.archive.clone().unwrap(),
            tamper,
            calls: AtomicUsize::new(0),
        }
    }

    fn cache(&self, cap: u64) -> ImageCache {
        ImageCache::new(self.docker.clone(), self.dir.path().join("cache"), cap)
    }

    fn ensure(
        &self,
        cache: &ImageCache,
        image: &ImageRef,
        source: &Source,
    ) -> Result<String, ImageError> {
        self.rt.block_on(cache.ensure(image, source, &|_, _| {}))
    }

    fn engine_has(&self, id: &str) -> bool {
        self.rt.block_on(self.docker.inspect_image(id)).is_ok()
    }

    fn remove(&self, id: &str) {
        let _ = Command::new("docker").args(["rmi", "-f", id]).output();
    }
}

#[test]
fn a_delivered_image_is_checked_loaded_and_then_served_from_the_cache() {
    let f = Fixture::new();
    let shipped = f.ship("good");
    let cache = f.cache(1 << 30);
    let source = f.source(&shipped, None);
    let id = f.ensure(&cache, &shipped.image, &source).unwrap();
    assert_eq!(id, shipped.image.id);
    assert!(f.engine_has(&id));
    let tag = format!(
        "{CACHE_REPO}:{}",
        &id["sha256:".len().."sha256:".len() + 16]
    );
    assert!(f.engine_has(&tag), "the cache tags what it loads");
    let fetched = source.calls.load(Ordering::Relaxed);
    assert_eq!(
        fetched,
        shipped.image.archive.as_ref().unwrap().chunks.len()
    );

    // A second job with the same image fetches nothing.
    f.ensure(&cache, &shipped.image, &source).unwrap();
    assert_eq!(source.calls.load(Ordering::Relaxed), fetched);
    assert_eq!(f.rt.block_on(cache.cached()), vec![id.clone()]);
    assert!(
        std::fs::read_dir(f.dir.path().join("cache"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part")),
        "the download is removed once loaded"
    );
    f.remove(&id);
}

#[test]
fn a_tampered_chunk_is_refused_before_anything_is_loaded() {
    let f = Fixture::new();
    let shipped = f.ship("tampered");
    let cache = f.cache(1 << 30);
    let err = f
        .ensure(&cache, &shipped.image, &f.source(&shipped, Some(2)))
        .unwrap_err();
    assert!(matches!(err, ImageError::ChunkDigest { chunk: 2 }), "{err}");
    assert!(!f.engine_has(&shipped.image.id));
    assert!(f.rt.block_on(cache.cached()).is_empty());
}

#[test]
fn a_wrong_archive_digest_is_refused_before_anything_is_loaded() {
    let f = Fixture::new();
    let mut shipped = f.ship("digest");
    let source = f.source(&shipped, None);
    if let Some(a) = shipped.image.archive.as_mut() {
        a.digest = Digest::of(b"some other archive");
    }
    let err = f
        .ensure(&f.cache(1 << 30), &shipped.image, &source)
        .unwrap_err();
    assert!(matches!(err, ImageError::ArchiveDigest), "{err}");
    assert!(!f.engine_has(&shipped.image.id));
}

#[test]
fn an_archive_of_another_image_or_with_tags_is_refused() {
    let f = Fixture::new();
    let shipped = f.ship("other");
    // The job claims the archive holds the base image.
    let base_id =
        f.rt.block_on(f.docker.inspect_image(base_image()))
            .unwrap()
            .id
            .unwrap();
    let claimed = ImageRef {
        id: base_id,
        ..shipped.image.clone()
    };
    let err = f
        .ensure(&f.cache(1 << 30), &claimed, &f.source(&shipped, None))
        .unwrap_err();
    assert!(matches!(err, ImageError::Contents { .. }), "{err}");
    assert!(!f.engine_has(&shipped.image.id));

    // `docker save NAME` names the tag, which could overwrite a volunteer's own.
    let path = f.dir.path().join("tagged.tar");
    let out = Command::new("docker")
        .args(["save", "-o"])
        .arg(&path)
        .arg(base_image())
        .output()
        .unwrap();
    assert!(out.status.success());
    let archive = ArchiveRef::of_file(&path, CHUNK).unwrap();
    let tagged = Shipped {
        image: ImageRef {
            name: "tagged".into(),
            id: claimed.id.clone(),
            archive: Some(archive),
        },
        data: std::fs::read(&path).unwrap(),
    };
    let err = f
        .ensure(&f.cache(1 << 30), &tagged.image, &f.source(&tagged, None))
        .unwrap_err();
    assert!(err.to_string().contains("names tags"), "{err}");
}

#[test]
fn the_least_recently_used_image_is_evicted_beyond_the_cap() {
    let f = Fixture::new();
    let [a, b, c] = ["lru-a", "lru-b", "lru-c"].map(|n| f.ship(n));
    // Room for two images, not three.
    let size =
        f.rt.block_on(f.docker.inspect_image(base_image()))
            .unwrap()
            .size
            .unwrap() as u64;
    let cache = f.cache(size * 5 / 2);
    for shipped in [&a, &b, &a, &c] {
        f.ensure(&cache, &shipped.image, &f.source(shipped, None))
            .unwrap();
    }
    // b was used least recently (a was used again after it).
    assert_eq!(
        f.rt.block_on(cache.cached()),
        vec![a.image.id.clone(), c.image.id.clone()]
    );
    assert!(
        !f.engine_has(&b.image.id),
        "the evicted image left the engine"
    );
    assert!(f.engine_has(&a.image.id) && f.engine_has(&c.image.id));
    for s in [a, c] {
        f.remove(&s.image.id);
    }
}
