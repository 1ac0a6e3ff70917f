//! Throughput of the sealed-bucket pipeline and its parts, in MiB/s, on
//! word-like text. `cargo bench -p tormr-core --bench seal`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::Instant;
use tormr_core::encoding::Hasher;
use tormr_core::ids::{BucketId, JobId};
use tormr_core::seal::{BucketKey, BucketReader, BucketWriter, SealWriter};

fn text(len: usize) -> Vec<u8> {
    let words = [
        "etaoin", "shrdlu", "the", "of", "a", "tormr", "bucket", "onion", "map", "reduce", "zeta",
    ];
    let mut x = 88172645463325252u64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

struct Counting(usize);

impl Write for Counting {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rate(name: &str, bytes: usize, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>8.0} MiB/s",
        bytes as f64 / s / (1 << 20) as f64
    );
}

fn main() {
    // A real corpus (gen_corpus.py) if given, else synthetic text.
    let data = match std::env::var("TORMR_BENCH_CORPUS") {
        Ok(path) => std::fs::read(path).expect("reading TORMR_BENCH_CORPUS"),
        Err(_) => text(256 << 20),
    };
    let n = data.len();
    let (job, bucket, key) = (
        JobId::parse("job-bench").unwrap(),
        BucketId::parse("in-00000").unwrap(),
        BucketKey::random(),
    );
    rate("sha256", n, || {
        let mut h = Hasher::new();
        h.update(&data);
        std::hint::black_box(h.finish());
    });
    for level in [3, 1, -1, -3, -5] {
        let mut size = 0;
        rate(&format!("zstd level {level}"), n, || {
            let mut counter = Counting(0);
            zstd::stream::copy_encode(&data[..], &mut counter, level).unwrap();
            size = counter.0;
        });
        println!(
            "{:<28} {:>8.2}",
            format!("  ratio at level {level}"),
            n as f64 / size as f64
        );
    }
    for frame in [1usize << 20, 4 << 20] {
        let mut size = 0;
        rate(&format!("zstd 1, {} MiB frames", frame >> 20), n, || {
            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(frame));
            for piece in data.chunks(frame) {
                out.clear();
                c.compress_to_buffer(piece, &mut out).unwrap();
                size += out.len();
            }
        });
        println!("{:<28} {:>8.2}", "  ratio", n as f64 / size as f64);
    }
    let compressed = zstd::stream::encode_all(&data[..], 1).unwrap();
    rate("zstd decompress", n, || {
        zstd::stream::copy_decode(&compressed[..], std::io::sink()).unwrap();
    });
    rate("xchacha20poly1305 STREAM", n, || {
        let mut w = SealWriter::new(std::io::sink(), &key, &job, &bucket);
        w.write_all(&data).unwrap();
        std::hint::black_box(w.finish().unwrap());
    });
    rate("seal (zstd+aead+sha)", n, || {
        let mut w = BucketWriter::new(std::io::sink(), &key, &job, &bucket).unwrap();
        for piece in data.chunks(1 << 20) {
            w.write_all(piece).unwrap();
        }
        std::hint::black_box(w.finish().unwrap());
    });
    let sealed = {
        let mut w = BucketWriter::new(Vec::with_capacity(n / 2), &key, &job, &bucket).unwrap();
        w.write_all(&data).unwrap();
        w.finish().unwrap().0
    };
    println!(
        "{:<28} {:>8.2}",
        "compression ratio",
        n as f64 / sealed.len() as f64
    );
    rate("open (aead+zstd+sha)", n, || {
        let mut r = BucketReader::new(&sealed[..], &key, &job, &bucket).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            total += k;
        }
        assert_eq!(total, n);
    });
}
