#!/usr/bin/env python3
"""Nonce search mapper (Hadoop Streaming, map-only): a proof-of-work search
after seed 001. Each input line is a range "START END" (END exclusive); for
every nonce in it whose SHA-256(CHALLENGE + str(nonce)) has at least BITS
leading zero bits, writes "nonce<TAB>hexdigest".

CHALLENGE and BITS come from the environment: -cmdenv NONCE_CHALLENGE=...
-cmdenv NONCE_BITS=16 (or -D nonce.challenge=... -D nonce.bits=16, which tasks
see as nonce_challenge and nonce_bits). Needs pow.py shipped with -file.
"""
import os
import sys

from pow import search


def setting(*names):
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    sys.exit("nonce-search mapper: set %s with -cmdenv %s=..." % (names[0], names[0]))


challenge = setting("NONCE_CHALLENGE", "nonce_challenge")
bits = int(setting("NONCE_BITS", "nonce_bits"))

tried = hits = 0
for line in sys.stdin:
    fields = line.split()
    if not fields:
        continue
    start, end = int(fields[0]), int(fields[1])
    for nonce, digest in search(challenge, bits, start, end):
        sys.stdout.write("%d\t%s\n" % (nonce, digest))
        hits += 1
    tried += max(0, end - start)
sys.stderr.write("reporter:counter:nonce-search,nonces tried,%d\n" % tried)
sys.stderr.write("reporter:counter:nonce-search,hits,%d\n" % hits)
