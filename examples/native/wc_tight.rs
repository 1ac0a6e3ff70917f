//! The near-limit for word count on one machine: one process, one pass, no
//! framework. Prints `word<TAB>count` lines (unsorted) for FILE.
//! Benchmarks compare tormr's native word count against this.

#[path = "words.rs"]
mod words;

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: wc-tight FILE");
        std::process::exit(2);
    };
    let mut counts = words::Counts::default();
    words::count_stream(std::fs::File::open(path)?, &mut counts)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (word, n) in &counts {
        out.write_all(word)?;
        writeln!(out, "\t{n}")?;
    }
    out.flush()
}
