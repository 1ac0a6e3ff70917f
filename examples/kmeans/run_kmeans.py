#!/usr/bin/env python3
"""K-means driver: runs ITERATIONS tormr Streaming jobs, each one shipping the
previous job's output as centroids.txt, and prints the final centroids as
"cid<TAB>x,y,count" lines.

The first K points of INPUT are the initial centroids. A cluster that gets no
points keeps its centroid (with count 0). Every iteration's files are kept in
WORKDIR/iter-NN/ (centroids.txt in, output/ out).

    python3 examples/kmeans/run_kmeans.py --tormr /tmp/tormr-bin/tormr \\
        --workdir /tmp/kmeans examples/kmeans/points.txt

TORMR in the environment also names the tormr binary (default: tormr).
"""
import argparse
import glob
import os
import shlex
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kmeans_common import fmt, read_centroids  # noqa: E402

SCRIPTS = ["mapper.py", "combiner.py", "reducer.py", "kmeans_common.py"]


def first_points(path, k):
    """The first k points of the file, as the initial centroids."""
    lines = []
    with open(path) as f:
        for line in f:
            if line.strip():
                lines.append("%d\t%s,0\n" % (len(lines), line.strip()))
                if len(lines) == k:
                    break
    if len(lines) < k:
        sys.exit("run_kmeans.py: %s has fewer than %d points" % (path, k))
    return lines


def centroid_lines(centroids, counts):
    return [
        "%d\t%s,%s,%d\n" % (cid, fmt(x), fmt(y), counts.get(cid, 0))
        for cid, (x, y) in sorted(centroids.items())
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="points file, one \"x,y\" per line")
    p.add_argument("--k", type=int, default=4, help="number of clusters (default 4)")
    p.add_argument("--iterations", type=int, default=6, help="jobs to run (default 6)")
    p.add_argument("--workdir", help="folder for each iteration's files (default: a new temporary folder)")
    p.add_argument("--cluster", default="local[2]", help="tormr --cluster (default local[2])")
    p.add_argument("--tormr", default=os.environ.get("TORMR", "tormr"), help="the tormr binary")
    p.add_argument("--bucket-size", help="tormr input bucket size, e.g. 4k for several map tasks")
    args = p.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="kmeans-")
    os.makedirs(workdir, exist_ok=True)
    lines = first_points(args.input, args.k)
    for i in range(1, args.iterations + 1):
        it = os.path.join(workdir, "iter-%02d" % i)
        os.makedirs(it, exist_ok=True)
        centroids_file = os.path.join(it, "centroids.txt")
        with open(centroids_file, "w") as f:
            f.writelines(lines)
        output = os.path.join(it, "output")
        if os.path.exists(output):
            sys.exit("run_kmeans.py: %s exists; use a fresh --workdir" % output)
        cmd = [args.tormr, "submit", "--cluster", args.cluster,
               "-input", args.input, "-output", output,
               "-mapper", "python3 mapper.py",
               "-combiner", "python3 combiner.py",
               "-reducer", "python3 reducer.py"]
        for script in SCRIPTS:
            cmd += ["-file", os.path.join(HERE, script)]
        cmd += ["-file", centroids_file]
        if args.bucket_size:
            cmd += ["-D", "tormr.bucket.bytes=" + args.bucket_size]
        sys.stderr.write("iteration %d: %s\n" % (i, shlex.join(cmd)))
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            sys.exit("run_kmeans.py: iteration %d failed (tormr exit status %d)" % (i, result.returncode))
        # Clusters missing from the output got no points: they keep their centroid.
        centroids = read_centroids(lines)
        counts = {}
        for part in sorted(glob.glob(os.path.join(output, "part-*"))):
            with open(part) as f:
                for line in f:
                    if line.strip():
                        cid, _, value = line.rstrip("\n").partition("\t")
                        x, y, n = value.split(",")
                        centroids[int(cid)] = read_centroids(["%s\t%s,%s" % (cid, x, y)])[int(cid)]
                        counts[int(cid)] = int(n)
        new_lines = centroid_lines(centroids, counts)
        moved = [a.split(",")[:2] for a in lines] != [b.split(",")[:2] for b in new_lines]
        sys.stderr.write("iteration %d: %s\n" % (i, "centroids moved" if moved else "no centroid moved"))
        lines = new_lines
    sys.stderr.write("final centroids (also in %s):\n" % os.path.join(workdir, "final.txt"))
    with open(os.path.join(workdir, "final.txt"), "w") as f:
        f.writelines(lines)
    sys.stdout.writelines(lines)


if __name__ == "__main__":
    main()
