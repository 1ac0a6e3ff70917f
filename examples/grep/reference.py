#!/usr/bin/env python3
"""Grep without MapReduce: the answer the grep job must give.

Usage: reference.py [-i] PATTERN PATH...   (a PATH may be a folder, read
recursively the way tormr reads -input folders: names starting with '.' or '_'
are skipped). Prints "FILE<TAB>LINE" lines with FILE named the way tormr sets
$mapreduce_map_input_file: a file's own name, or for a file under a folder
PATH, the folder's last component joined with the path below it
("logs/worker.log" for -input examples/grep/logs).
"""
import os
import re
import sys


def input_files(path):
    """(file, name relative to path) pairs, in the order tormr would read them."""
    if os.path.isfile(path):
        yield path, os.path.basename(path)
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for f in sorted(files):
            if not f.startswith((".", "_")):
                full = os.path.join(root, f)
                top = os.path.basename(os.path.normpath(path))
                yield full, os.path.join(top, os.path.relpath(full, path))


def main(argv):
    flags = 0
    if argv and argv[0] == "-i":
        flags, argv = re.IGNORECASE, argv[1:]
    if len(argv) < 2:
        sys.exit(__doc__)
    regex = re.compile(argv[0], flags)
    for path in argv[1:]:
        for full, name in input_files(path):
            with open(full, encoding="utf-8", errors="surrogateescape") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if regex.search(line):
                        sys.stdout.write("%s\t%s\n" % (name, line))


if __name__ == "__main__":
    main(sys.argv[1:])
