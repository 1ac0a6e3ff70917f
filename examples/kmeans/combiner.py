#!/usr/bin/env python3
"""K-means combiner (Hadoop Streaming): input "cid<TAB>sx,sy,n" lines sorted by
cid; writes one "cid<TAB>sx,sy,n" line per cid with the partial sums added
(exactly, as decimals). Its output has the same shape as its input.

Needs kmeans_common.py shipped with -file.
"""
import sys
from decimal import Decimal

from kmeans_common import fmt

current, sx, sy, n = None, Decimal(0), Decimal(0), 0
for line in sys.stdin:
    cid, _, value = line.rstrip("\n").partition("\t")
    x, y, count = value.split(",")
    if cid != current:
        if current is not None:
            sys.stdout.write("%s\t%s,%s,%d\n" % (current, fmt(sx), fmt(sy), n))
        current, sx, sy, n = cid, Decimal(0), Decimal(0), 0
    sx += Decimal(x)
    sy += Decimal(y)
    n += int(count)
if current is not None:
    sys.stdout.write("%s\t%s,%s,%d\n" % (current, fmt(sx), fmt(sy), n))
