#!/usr/bin/env python3
"""Top words without MapReduce: the answer mr_top_words.py must give.

Usage: reference.py [--top N] [--stop-words FILE] PATH...
Prints the N most frequent words that are not stop words, by count descending
then word ascending, as mrjob writes them: "\"word\"<TAB>count" (JSON key and
value). PATHs may be files or folders (read recursively, skipping names that
start with '.' or '_').
"""
import argparse
import json
import os
import re
import sys
from collections import Counter

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
HERE = os.path.dirname(os.path.abspath(__file__))


def input_files(path):
    if os.path.isfile(path):
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for f in sorted(files):
            if not f.startswith((".", "_")):
                yield os.path.join(root, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--stop-words", default=os.path.join(HERE, "stop_words.txt"))
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()

    with open(args.stop_words, encoding="utf-8") as f:
        stop = {w for w in (l.split("#", 1)[0].strip().lower() for l in f) if w}
    counts = Counter()
    for path in args.paths:
        for name in input_files(path):
            with open(name, encoding="utf-8", errors="surrogateescape") as f:
                for line in f:
                    counts.update(w for w in WORD_RE.findall(line.lower()) if w not in stop)
    ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
    for word, count in ranked[: args.top]:
        sys.stdout.write("%s\t%s\n" % (json.dumps(word), json.dumps(count)))


if __name__ == "__main__":
    main()
