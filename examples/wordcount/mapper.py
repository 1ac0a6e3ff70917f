#!/usr/bin/env python3
"""Word count mapper (Hadoop Streaming): one "word<TAB>1" line per word."""
import sys

for line in sys.stdin:
    for word in line.split():
        sys.stdout.write(word + "\t1\n")
