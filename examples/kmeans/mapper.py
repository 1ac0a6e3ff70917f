#!/usr/bin/env python3
"""K-means mapper (Hadoop Streaming): reads the current centroids from
centroids.txt in the working folder (shipped with -file) and, for each input
point "x,y", writes "cid<TAB>x,y,1" where cid is the nearest centroid.

Needs kmeans_common.py shipped with -file.
"""
import sys

from kmeans_common import fmt, nearest, parse_point, read_centroids

with open("centroids.txt") as f:
    centroids = read_centroids(f)
if not centroids:
    sys.exit("kmeans mapper: centroids.txt has no centroids")

for line in sys.stdin:
    line = line.strip()
    if line:
        x, y = parse_point(line)
        sys.stdout.write("%d\t%s,%s,1\n" % (nearest(centroids, (x, y)), fmt(x), fmt(y)))
