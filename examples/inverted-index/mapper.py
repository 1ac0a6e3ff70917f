#!/usr/bin/env python3
"""Inverted index mapper (Hadoop Streaming): one "word<TAB>FILE" line per
distinct word of the task's input, FILE being $mapreduce_map_input_file.

Words are lower-cased runs of letters and digits. A map task reads one file (or
a slice of one), so each (word, file) pair is written at most once per task.
"""
import os
import re
import sys

name = os.environ.get("mapreduce_map_input_file", "-")
words = set()
for line in sys.stdin:
    words.update(re.findall(r"[a-z0-9]+", line.lower()))
for word in sorted(words):
    sys.stdout.write("%s\t%s\n" % (word, name))
