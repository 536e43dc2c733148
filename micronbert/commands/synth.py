"""`micronbert synth`: a synthetic micro-expression dataset from real built-in faces, in a real layout."""
from __future__ import annotations

HELP = ("synthesise a micro-expression dataset from real built-in faces (tiny facial actions plus "
        "distractions) in the exact CASME II / SAMM / SMIC-HS layout, with actions.csv ground truth")


def configure(p) -> None:
    from micronbert.synth import FORMATS, Distractions

    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS, help="dataset layout to write")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset root to write (give it to `index --root`)")
    p.add_argument("--subjects", type=int, default=8,
                   help="subjects; the first 8 are distinct real people, further ones reuse them with strong "
                        "appearance changes (see actions.csv: person, distinct_person)")
    p.add_argument("--clips-per-subject", type=int, default=6)
    p.add_argument("--amplitude-px", type=float, default=1.5,
                   help="mean peak displacement of the action in pixels at the 224-px aligned-face scale "
                        "(each sample draws 0.7-1.3 times this)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: 14, SMIC 12)")
    p.add_argument("--classes", default=None,
                   help="comma-separated emotions of the format's vocabulary, repeat one to weigh it "
                        "(default casme2: happiness,disgust,repression,surprise,others; samm: Happiness,Anger,"
                        "Contempt,Surprise,Other; smic: positive,negative,surprise)")
    p.add_argument("--no-distractions", action="store_true",
                   help="no head motion, lighting change, noise, compression or blinks")
    p.add_argument("--background-motion", type=float, default=0.0, metavar="P",
                   help="share of clips (0-1) with a textured object sliding beside the face, outside it in the "
                        "aligned crop (a hand, a passer-by: motion that carries no label)")
    p.add_argument("--background-px", type=float, default=Distractions.background_px,
                   help="that object's largest shift over the clip, px at the 224-px face scale")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from micronbert.synth import Distractions, synthesize

    from dataclasses import replace

    from micronbert.errors import MicronbertError

    if not 0.0 <= args.background_motion <= 1.0 or args.background_px <= 0:
        raise MicronbertError("--background-motion is a share of clips in [0, 1] and --background-px a positive "
                              f"shift, not {args.background_motion} and {args.background_px}")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    dist = replace(Distractions.none() if args.no_distractions else Distractions(),
                   background_p=args.background_motion, background_px=args.background_px)
    summary = synthesize(args.fmt, args.out, args.subjects, args.clips_per_subject, args.amplitude_px, args.seed,
                         classes, args.frames, dist, progress_cb=print)
    people = summary["distinct_people"]
    print(f"{summary['samples']} clips of {summary['frames_per_clip']} frames, {summary['subjects']} subjects "
          f"from {len(people)} distinct real people ({', '.join(people)})")
    print("classes: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["classes"].items())))
    if summary["subjects"] > len(people):
        print(f"note: {summary['subjects'] - len(people)} subjects reuse a person with appearance changes; "
              f"LOSO folds are then not person-independent")
    print(f"wrote {summary['root']} (ground truth: actions.csv, settings: synth.json); "
          f"index it with: micronbert index --dataset {args.fmt} --root {summary['root']} --out samples.csv --strict")
    return 0
