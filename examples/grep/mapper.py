#!/usr/bin/env python3
"""Grep mapper (Hadoop Streaming, map-only): prints "FILE<TAB>LINE" for every
input line that matches the regular expression in $GREP_PATTERN.

Set the pattern with `-cmdenv GREP_PATTERN=...`; `-cmdenv GREP_IGNORE_CASE=1`
matches without regard to case. FILE is the task's input file name as tormr
reports it in $mapreduce_map_input_file (relative to the -input argument).
"""
import os
import re
import sys

pattern = os.environ.get("GREP_PATTERN")
if not pattern:
    sys.exit("grep mapper: set the pattern with -cmdenv GREP_PATTERN=REGEX")
flags = re.IGNORECASE if os.environ.get("GREP_IGNORE_CASE", "") not in ("", "0") else 0
regex = re.compile(pattern, flags)
name = os.environ.get("mapreduce_map_input_file", "-")

matched = 0
for line in sys.stdin:
    line = line.rstrip("\n")
    if regex.search(line):
        sys.stdout.write("%s\t%s\n" % (name, line))
        matched += 1
sys.stderr.write("reporter:counter:grep,matching lines,%d\n" % matched)
