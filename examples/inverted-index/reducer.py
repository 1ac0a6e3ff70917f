#!/usr/bin/env python3
"""Inverted index reducer (Hadoop Streaming): input "word<TAB>FILE[,FILE...]"
lines sorted by word; writes "word<TAB>FILE1,FILE2,..." with each word's
distinct files in sorted order.

Also works as a combiner: it takes comma-separated lists as well as single
names, and its output has the same shape as its input. (File names containing
commas would be split; keep input names free of them.)
"""
import sys


def flush(word, files):
    if word is not None:
        sys.stdout.write("%s\t%s\n" % (word, ",".join(sorted(files))))


current, files = None, set()
for line in sys.stdin:
    word, _, value = line.rstrip("\n").partition("\t")
    if word != current:
        flush(current, files)
        current, files = word, set()
    files.update(f for f in value.split(",") if f)
flush(current, files)
