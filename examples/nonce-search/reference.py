#!/usr/bin/env python3
"""Nonce search without MapReduce: the answer the nonce-search job must give.

Usage: reference.py CHALLENGE BITS RANGES_FILE...
Reads the same "START END" lines the job reads and prints "nonce<TAB>hexdigest"
for every hit, using the same test (pow.py) as the mapper.
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from pow import search  # noqa: E402


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    challenge, bits = argv[0], int(argv[1])
    for path in argv[2:]:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if fields:
                    for nonce, digest in search(challenge, bits, int(fields[0]), int(fields[1])):
                        sys.stdout.write("%d\t%s\n" % (nonce, digest))


if __name__ == "__main__":
    main(sys.argv[1:])
