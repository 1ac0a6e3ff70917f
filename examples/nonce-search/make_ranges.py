#!/usr/bin/env python3
"""Writes the nonce-search input: "START END" lines (END exclusive) that split
the range [FIRST, LAST) into pieces of STEP nonces.

Usage: make_ranges.py FIRST LAST [STEP]   (STEP defaults to 2000)

    python3 examples/nonce-search/make_ranges.py 0 2000000 > ranges.txt
"""
import sys


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    first, last = int(argv[0]), int(argv[1])
    step = int(argv[2]) if len(argv) == 3 else 2000
    if first < 0 or last < first or step <= 0:
        sys.exit("make_ranges.py: need 0 <= FIRST <= LAST and STEP > 0")
    for start in range(first, last, step):
        sys.stdout.write("%d %d\n" % (start, min(start + step, last)))


if __name__ == "__main__":
    main(sys.argv[1:])
