#!/usr/bin/env python3
"""Word count with PySpark local[2]: the benchmark's Spark peer."""
import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.master("local[2]").appName("wc").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
counts = (spark.sparkContext.textFile(sys.argv[1])
          .flatMap(lambda line: line.split())
          .map(lambda w: (w, 1))
          .reduceByKey(lambda a, b: a + b))
counts.map(lambda kv: "%s\t%d" % kv).saveAsTextFile(sys.argv[2])
spark.stop()
