//! Shared by the native word-count programs: split ASCII whitespace, count
//! with a fast non-cryptographic hash.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's hasher): fast for short keys; no DoS concern for local counts.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
}

pub type Counts = HashMap<Vec<u8>, u64, BuildHasherDefault<Fx>>;

/// Adds every whitespace-separated word of `text` to `counts`. `text` must end
/// at a word boundary.
pub fn count_words(text: &[u8], counts: &mut Counts) {
    for word in text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        match counts.get_mut(word) {
            Some(n) => *n += 1,
            None => {
                counts.insert(word.to_vec(), 1);
            }
        }
    }
}

/// Reads `input` to its end in large blocks, counting words across block edges.
pub fn count_stream(mut input: impl std::io::Read, counts: &mut Counts) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4 << 20];
    let mut carry = 0;
    loop {
        let n = input.read(&mut buf[carry..])?;
        if n == 0 {
            count_words(&buf[..carry], counts);
            return Ok(());
        }
        let filled = carry + n;
        // Count up to the last whitespace; keep the partial word for next time.
        let cut = buf[..filled]
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
            .map(|i| i + 1)
            .unwrap_or(0);
        if cut == 0 && filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
            carry = filled;
            continue;
        }
        count_words(&buf[..cut], counts);
        buf.copy_within(cut..filled, 0);
        carry = filled - cut;
    }
}
