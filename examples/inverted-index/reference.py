#!/usr/bin/env python3
"""Inverted index without MapReduce: the answer the inverted-index job must give.

Usage: reference.py PATH...   (files or folders, read the way tormr reads
-input: folders recursively, skipping names that start with '.' or '_').
Prints "word<TAB>FILE1,FILE2,..." with files named the way tormr sets
$mapreduce_map_input_file ("docs/tor.txt" for -input examples/inverted-index/docs).
"""
import os
import re
import sys


def input_files(path):
    """(file, name as tormr reports it) pairs."""
    if os.path.isfile(path):
        yield path, os.path.basename(path)
        return
    top = os.path.basename(os.path.normpath(path))
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for f in sorted(files):
            if not f.startswith((".", "_")):
                full = os.path.join(root, f)
                yield full, os.path.join(top, os.path.relpath(full, path))


def main(paths):
    if not paths:
        sys.exit(__doc__)
    index = {}
    for path in paths:
        for full, name in input_files(path):
            with open(full, encoding="utf-8", errors="surrogateescape") as f:
                for word in re.findall(r"[a-z0-9]+", f.read().lower()):
                    index.setdefault(word, set()).add(name)
    for word in sorted(index):
        sys.stdout.write("%s\t%s\n" % (word, ",".join(sorted(index[word]))))


if __name__ == "__main__":
    main(sys.argv[1:])
