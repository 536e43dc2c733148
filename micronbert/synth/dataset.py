"""Writing a synthetic dataset in a real dataset's layout, with actions.csv and synth.json beside it."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from micronbert.synth.clips import LAYOUTS, Distractions, Person, SynthClip, make_clips

ACTIONS_NAME = "actions.csv"
SETTINGS_NAME = "synth.json"


def write_dataset(fmt: str, out, clips: Sequence[SynthClip]) -> Path:
    """Write the clips in the format's exact layout, then actions.csv and synth.json beside them.
    Returns the dataset root to give `micronbert index --root`."""
    import pandas as pd

    from micronbert.data.layouts import ClipSpec
    from micronbert.data.readers import WRITERS, index_dataset
    from micronbert.utils.io import atomic_save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for c in clips:
        aus = "+".join(a if a[0] not in "LR" else a for a in c.aus)
        spec = ClipSpec(c.subject, c.clip, c.numbers, c.numbers[0], c.numbers[c.apex_pos], c.numbers[-1],
                                c.emotion, aus, frames=c.frame)
        specs.append(spec)
    WRITERS[fmt](out, specs)
    rows = [c.row(fmt) for c in clips]
    # The sample ids exactly as the reader makes them (subject and clip normalisation live there).
    df, _ = index_dataset(fmt, out, check_images=False)
    ids = {Path(r.frames_dir).resolve().as_posix(): r.sample_id for r in df.itertuples()}
    for r, c in zip(rows, clips):
        r["sample_id"] = ids.get((out / _clip_dir(fmt, c)).resolve().as_posix(), "")
    table = pd.DataFrame(rows)
    table = table[["dataset", "sample_id"] + [c for c in table.columns if c not in ("dataset", "sample_id")]]
    atomic_save(out / ACTIONS_NAME, lambda tmp: table.to_csv(tmp, index=False))
    return out


def _clip_dir(fmt: str, c: SynthClip) -> str:
    """Where the dataset's writer put a clip's frames, relative to the dataset root."""
    from micronbert.data.readers import casme2, samm, smic

    if fmt == "casme2":
        return casme2.clip_folder(c.subject, c.clip)
    if fmt == "samm":
        return samm.clip_folder(c.subject, c.clip)
    return smic.clip_folder(c.subject, c.clip, c.emotion)


def people_summary(clips: Sequence[SynthClip]) -> dict:
    persons = {}
    for c in clips:
        persons.setdefault(str(c.subject), c.person)
    distinct = sorted({p.split("~")[0] for p in persons.values()})
    return {"subjects": persons, "distinct_people": distinct}


def synthesize(fmt: str, out, subjects: int = 8, clips_per_subject: int = 6, amplitude_px: float = 1.5,
               seed: int = 0, classes: Sequence[str] | None = None, n_frames: int | None = None,
               distractions: Distractions | None = None, progress_cb=None, people: list[Person] | None = None) -> dict:
    """Make and write a synthetic dataset; returns a summary (root, counts, people)."""
    from micronbert.utils.io import atomic_write_json

    clips = make_clips(fmt, subjects, clips_per_subject, amplitude_px, seed, classes, n_frames, distractions,
                       people=people, progress_cb=progress_cb)
    root = write_dataset(fmt, out, clips)
    people = people_summary(clips)
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.emotion] = counts.get(c.emotion, 0) + 1
    summary = {"format": fmt, "root": str(root), "samples": len(clips), "subjects": subjects,
               "clips_per_subject": clips_per_subject, "amplitude_px224": amplitude_px, "seed": seed,
               "frames_per_clip": len(clips[0].numbers), "fps": LAYOUTS[fmt].fps,
               "classes": counts, "distinct_people": people["distinct_people"],
               "subject_people": people["subjects"],
               "distractions": asdict(distractions or Distractions())}
    atomic_write_json(Path(out) / SETTINGS_NAME, summary)
    return summary


def read_actions(root) -> "pd.DataFrame":
    """actions.csv of a synthetic dataset, with `bumps` parsed into lists of dicts."""
    import pandas as pd

    df = pd.read_csv(Path(root) / ACTIONS_NAME, dtype={"subject": str, "sample_id": str, "clip": str},
                     keep_default_na=False)
    df["bumps"] = df["bumps"].map(json.loads)
    df["to_crop"] = df["to_crop"].map(lambda t: np.array(json.loads(t)))
    return df
