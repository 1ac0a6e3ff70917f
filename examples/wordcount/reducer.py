#!/usr/bin/env python3
"""Word count reducer (Hadoop Streaming): input sorted by key; sums each run.

Also works as a combiner: its output has the same shape as its input.
"""
import sys

current, total = None, 0
for line in sys.stdin:
    word, _, count = line.rstrip("\n").partition("\t")
    if word != current:
        if current is not None:
            sys.stdout.write("%s\t%d\n" % (current, total))
        current, total = word, 0
    total += int(count or 0)
if current is not None:
    sys.stdout.write("%s\t%d\n" % (current, total))
