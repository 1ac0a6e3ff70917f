#!/usr/bin/env python3
"""K-means reducer (Hadoop Streaming): input "cid<TAB>sx,sy,n" lines (from the
mapper or the combiner) sorted by cid; writes the new centroid of each cluster
as "cid<TAB>x,y,count", x and y rounded to 6 decimals. That is the format of
centroids.txt, so the output feeds the next iteration.

Needs kmeans_common.py shipped with -file.
"""
import sys
from decimal import Decimal

from kmeans_common import centroid_line

current, sx, sy, n = None, Decimal(0), Decimal(0), 0
for line in sys.stdin:
    cid, _, value = line.rstrip("\n").partition("\t")
    x, y, count = value.split(",")
    if cid != current:
        if current is not None:
            sys.stdout.write(centroid_line(int(current), sx, sy, n))
        current, sx, sy, n = cid, Decimal(0), Decimal(0), 0
    sx += Decimal(x)
    sy += Decimal(y)
    n += int(count)
if current is not None:
    sys.stdout.write(centroid_line(int(current), sx, sy, n))
