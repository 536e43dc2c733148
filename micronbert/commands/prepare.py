"""`micronbert prepare`: align the faces of indexed samples into a resumable cache."""
from __future__ import annotations

HELP = "detect, landmark and align the faces of indexed samples into a resumable crop cache"


def configure(parser) -> None:
    parser.add_argument("--samples", nargs="+", required=True, metavar="CSV",
                        help="sample tables written by `micronbert index`")
    parser.add_argument("--out", required=True, metavar="CACHE", help="cache folder (several datasets may share it)")
    parser.add_argument("--size", type=int, default=224, help="side of the square aligned crop in pixels")
    parser.add_argument("--margin", type=float, default=0.15,
                        help="space around the landmark box, as a fraction of the crop on each side")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--keyframes", action="store_true", help="cache only the onset and apex frames")
    parser.add_argument("--already-cropped", action="store_true",
                        help="frames are official face crops (CASME II Cropped, SMIC reg_image): only resize")
    parser.add_argument("--detector", default="dlib",
                        help="face detector backend: dlib, haar, or dlib+haar (Haar when dlib finds nothing)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 3 when any sample had a report entry (the cache and report are "
                             "still written)")


def run(args) -> int:
    import sys

    from micronbert.errors import EXIT_FLAGGED, UsageError
    from micronbert.faces.prepare import run_prepare
    from micronbert.utils.paths import check_output

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    check_output(args.out, "dir", args.samples)  # frame folders are checked once the tables are read
    res = run_prepare(args.samples, args.out, size=args.size, margin=args.margin, workers=args.workers,
                      keyframes=args.keyframes, already_cropped=args.already_cropped, detector=args.detector)
    for line in res.report.lines():
        print(line, file=sys.stderr)
    print(res.summary())
    print(f"report: {res.report_path} ({res.report.summary()})")
    if args.strict and len(res.report):
        print(f"micronbert prepare: {len(res.report)} report entries and --strict given", file=sys.stderr)
        return EXIT_FLAGGED
    return 0
