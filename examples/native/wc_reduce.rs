//! Native word-count reducer (and combiner) for tormr: input lines
//! `word<TAB>count` arrive sorted by word; each run of a word is summed.

use std::io::{BufRead, BufWriter, Write};

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut line = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let mut any = false;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let (word, count) = match text.iter().position(|b| *b == b'\t') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &b"1"[..]),
        };
        let n: u64 = std::str::from_utf8(count)
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        if !any || word != current.as_slice() {
            if any {
                out.write_all(&current)?;
                writeln!(out, "\t{total}")?;
            }
            current.clear();
            current.extend_from_slice(word);
            total = 0;
            any = true;
        }
        total += n;
    }
    if any {
        out.write_all(&current)?;
        writeln!(out, "\t{total}")?;
    }
    out.flush()
}
