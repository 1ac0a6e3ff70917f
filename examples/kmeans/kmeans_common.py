"""Arithmetic shared by the k-means mapper, combiner, reducer, driver and
reference.py, so that all of them compute exactly the same numbers.

Coordinates are decimal strings and every sum is exact (decimal.Decimal), so
the result does not depend on how the points were split among map tasks or in
which order partial sums were added. Means are rounded to 6 decimal places,
half to even.
"""
import decimal
from decimal import Decimal

decimal.getcontext().prec = 60  # far more digits than any sum here needs
PLACES = Decimal("0.000001")


def parse_point(text):
    """"x,y" -> (Decimal x, Decimal y)."""
    x, y = text.split(",")[:2]
    return Decimal(x), Decimal(y)


def fmt(d):
    """A Decimal as plain fixed-point text, with no "-0"."""
    s = format(d, "f")
    return s[1:] if s.startswith("-") and d == 0 else s


def read_centroids(lines):
    """"cid<TAB>x,y[,count]" lines -> {cid: (x, y)}."""
    centroids = {}
    for line in lines:
        line = line.strip()
        if line:
            cid, _, rest = line.partition("\t")
            centroids[int(cid)] = parse_point(rest)
    return centroids


def nearest(centroids, point):
    """The id of the centroid nearest to point (exact squared distance; ties
    go to the lowest id)."""
    x, y = point
    best = None
    for cid in sorted(centroids):
        cx, cy = centroids[cid]
        d = (x - cx) * (x - cx) + (y - cy) * (y - cy)
        if best is None or d < best[0]:
            best = (d, cid)
    return best[1]


def mean(sx, sy, n):
    """The centroid of n points whose coordinates sum to (sx, sy), rounded."""
    return (sx / n).quantize(PLACES), (sy / n).quantize(PLACES)


def centroid_line(cid, sx, sy, n):
    """The reducer's output line for cluster cid."""
    mx, my = mean(sx, sy, n)
    return "%d\t%s,%s,%d\n" % (cid, fmt(mx), fmt(my), n)
