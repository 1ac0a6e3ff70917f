#!/usr/bin/env python3
"""Top words (mrjob, two steps): the --top N most frequent words of the input,
leaving out the stop words listed in stop_words.txt (shipped with the job
through FILES).

Step 1 counts words (mapper, combiner, reducer); step 2 sends every
(word, count) to one reducer, which writes the N words with the highest counts,
by count descending and then word ascending, as "\"word\"<TAB>count" lines.

    python3 examples/mrjob/mr_top_words.py -r local --top 5 examples/mrjob/input.txt
"""
import re

from mrjob.job import MRJob
from mrjob.step import MRStep

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


class MRTopWords(MRJob):
    # Relative to this script's folder; mrjob (and tormr) put it in each
    # task's working folder.
    FILES = ["stop_words.txt"]

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg(
            "--top", type=int, default=10, help="how many words to keep (default 10)"
        )

    def steps(self):
        return [
            MRStep(
                mapper_init=self.load_stop_words,
                mapper=self.mapper_words,
                combiner=self.sum_counts,
                reducer=self.sum_counts,
            ),
            MRStep(mapper=self.mapper_to_one_key, reducer=self.reducer_top),
        ]

    def load_stop_words(self):
        self.stop_words = set()
        with open("stop_words.txt", encoding="utf-8") as f:
            for line in f:
                word = line.split("#", 1)[0].strip().lower()
                if word:
                    self.stop_words.add(word)

    def mapper_words(self, _, line):
        for word in WORD_RE.findall(line.lower()):
            if word not in self.stop_words:
                yield word, 1

    def sum_counts(self, word, counts):
        yield word, sum(counts)

    def mapper_to_one_key(self, word, count):
        yield None, (count, word)

    def reducer_top(self, _, count_words):
        ranked = sorted(count_words, key=lambda cw: (-cw[0], cw[1]))
        for count, word in ranked[: self.options.top]:
            yield word, count


if __name__ == "__main__":
    MRTopWords.run()
