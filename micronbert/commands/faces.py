"""`micronbert faces`: aligned face crops of every frame of one video or frame folder."""
from __future__ import annotations

HELP = "align the face in every frame of a video or frame folder (numbered images + faces.csv)"
from micronbert.errors import EXIT_FLAGGED as NO_FACE_EXIT


def configure(parser) -> None:
    parser.epilog = (f"Exit status: 0 when a face was found, {NO_FACE_EXIT} when no frame has a face "
                     f"(faces.csv is still written, with present=0), 1 for other errors.")
    parser.add_argument("source", metavar="VIDEO_OR_FOLDER", help="a video file or a folder of numbered frames")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for the crops and faces.csv (not inside the source folder)")
    parser.add_argument("--size", type=int, default=224, help="side of the square crop in pixels")
    parser.add_argument("--margin", type=float, default=0.15, help="fraction of the crop left around the landmarks")
    parser.add_argument("--mode", choices=["clip", "frame"], default="clip",
                        help="clip: one transform from the first frame with a face (no jitter); "
                        "frame: per-frame landmarks, smoothed over time (head motion)")
    parser.add_argument("--smooth", type=int, default=5, help="frame mode: moving-average window in frames")
    parser.add_argument("--detector", default="dlib",
                        help="face detector backend: dlib, haar, or dlib+haar (Haar when dlib finds nothing)")
    parser.add_argument("--format", dest="fmt", choices=["png", "jpg"], default="png", help="image format")


def run(args) -> int:
    import sys

    from micronbert.faces.extract import extract_faces
    from micronbert.utils.paths import check_output

    check_output(args.out, "dir", [args.source])

    res = extract_faces(args.source, args.out, size=args.size, margin=args.margin, mode=args.mode,
                        detector=args.detector, fmt=args.fmt, smooth=args.smooth)
    for n in res.notes:
        print(n, file=sys.stderr)
    if not res.face_found:
        print(f"micronbert faces: no face found in {args.source}; nothing aligned (see {res.csv})", file=sys.stderr)
        return NO_FACE_EXIT
    print(f"{res.n_frames} frames aligned into {res.out}, face present in {res.n_present}; table {res.csv}")
    return 0
