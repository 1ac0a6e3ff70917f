#!/usr/bin/env python3
"""Word count with a Dask bag on 2 processes: the benchmark's Dask peer."""
import os
import sys

import dask
import dask.bag as db

if __name__ == "__main__":
    os.makedirs(sys.argv[2], exist_ok=True)
    with dask.config.set(scheduler="processes", num_workers=2):
        bag = db.read_text(sys.argv[1], blocksize="32MB")
        counts = bag.str.split().flatten().frequencies()
        counts.map(lambda kv: "%s\t%d" % kv).to_textfiles(os.path.join(sys.argv[2], "part-*.txt"))
