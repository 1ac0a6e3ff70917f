"""Proof-of-work test shared by the nonce-search mapper and reference.py.

A nonce n is a hit when SHA-256 of the UTF-8 bytes of CHALLENGE followed by n
in decimal has at least BITS leading zero bits.
"""
import hashlib


def search(challenge, bits, start, end):
    """Yields (nonce, hexdigest) for every hit in [start, end), in order."""
    if not 0 <= bits <= 256:
        raise ValueError("bits must be between 0 and 256, not %d" % bits)
    whole, rest = divmod(bits, 8)
    zeros = bytes(whole)
    mask = (0xFF00 >> rest) & 0xFF  # the top `rest` bits of the next byte
    prefix = hashlib.sha256(challenge.encode("utf-8"))
    for nonce in range(start, end):
        h = prefix.copy()
        h.update(str(nonce).encode("ascii"))
        digest = h.digest()
        if digest[:whole] == zeros and (rest == 0 or digest[whole] & mask == 0):
            yield nonce, digest.hex()
