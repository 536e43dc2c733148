"""benchmarks/motion.py's label-shuffled control scores the very samples the other rows score: labels are
permuted within each layout among the rows MEGC2019 keeps (across layouts, a SAMM emotion landed in a
CASME II row, MEGC2019 dropped it, and the control scored 174 of 300 samples)."""
import os
import sys

import pandas as pd

from micronbert.data.protocol import load_protocol
from micronbert.data.samples import COLUMNS, read_samples, write_samples

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import motion  # noqa: E402

EMOTIONS = {"casme2": ["happiness", "disgust", "repression", "surprise", "others", "happiness"] * 3,
            "samm": ["Happiness", "Anger", "Contempt", "Surprise", "Other", "Fear"] * 3}


def table(dataset, emotions):
    rows = [{c: "" for c in COLUMNS} | {"dataset": dataset, "subject": f"s{i % 3}", "sample_id": f"s{i % 3}/c{i}",
                                         "clip": f"c{i}", "onset": 1, "apex": 2, "offset": 3, "emotion": e,
                                         "n_frames": 3, "frames_dir": f"/x/c{i}"} for i, e in enumerate(emotions)]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_shuffled_tables_keep_the_samples_and_each_layouts_class_counts(tmp_path):
    megc = load_protocol("megc2019")
    paths = []
    for dataset, emotions in EMOTIONS.items():
        paths.append(str(tmp_path / f"{dataset}.csv"))
        write_samples(table(dataset, emotions), paths[-1])
    out = motion._shuffled(paths, tmp_path)
    moved = 0
    for before, after in zip(paths, out):
        a, b = megc.apply(read_samples(before)), megc.apply(read_samples(after))
        assert list(a["sample_id"]) == list(b["sample_id"])  # the same samples, in the same order
        assert sorted(a["label"]) == sorted(b["label"])       # the layout's class counts
        moved += int((a["label"] != b["label"]).sum())
    assert moved > 0  # and the labels did move
