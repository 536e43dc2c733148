"""`micronbert predict`: a video or frame folder -> faces -> onset/apex (given or spotted) -> classes + maps."""
from __future__ import annotations

HELP = "predict micro-expressions in a video or frame folder (faces aligned, apex spotted, heat-maps drawn)"


def configure(p):
    p.epilog = ("Exit status 3 when no face is found, or no interval has a face in its onset and apex frames "
                "(outputs are still written). A spotted interval below --min-score is written with "
                "below_threshold=true and is not a detection.")
    p.add_argument("input", help="a video file or a folder of numbered frames")
    p.add_argument("--weights", required=True, help="fine-tuned model folder (model.safetensors + config.json)")
    p.add_argument("--out", required=True,
                   help="output folder: predictions.csv/.json, timeline.png, one PNG per interval")
    p.add_argument("--onset", type=int, default=None, help="onset frame (0-based for videos, file number for folders)")
    p.add_argument("--apex", type=int, default=None, help="apex frame (same numbering); without both, spot them")
    p.add_argument("--offset", type=int, default=None, help="offset frame (optional, with --onset/--apex)")
    p.add_argument("--video", action="store_true", help="also write an annotated MP4 of the aligned face")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's; frame folders 30)")
    p.add_argument("--detector", default="dlib", help="face detector (dlib, dlib+haar, haar)")
    p.add_argument("--max-intervals", type=int, default=5, help="most intervals the spotter proposes")
    p.add_argument("--max-duration", type=float, default=0.5, help="longest micro-expression in seconds (spotter)")
    p.add_argument("--min-score", type=float, default=3.0, help="spotter threshold (robust z-score of the peak)")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames (default: all)")


def run(args):
    from micronbert.errors import EXIT_FLAGGED, UsageError
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip
    from micronbert.utils.paths import check_output

    if (args.onset is None) != (args.apex is None):
        raise UsageError("give both --onset and --apex, or neither (then the apex spotter proposes them)")
    if args.offset is not None and args.onset is None:
        raise UsageError("--offset needs --onset and --apex")
    check_output(args.out, "dir", [args.input, args.weights])
    mb = MicronBert.from_pretrained(args.weights)
    res = predict_clip(mb, args.input, onset=args.onset, apex=args.apex, offset=args.offset, out_dir=args.out,
                       video=args.video, detector=args.detector, fps=args.fps, max_intervals=args.max_intervals,
                       max_duration_s=args.max_duration, min_score=args.min_score, max_frames=args.max_frames)
    for note in res.notes:
        print(f"note: {note}")
    if not res.face_found:
        print(f"no face found in {args.input}; wrote an empty table to {args.out}/predictions.csv")
        return EXIT_FLAGGED
    reliable = 0
    for _, row in res.table.iterrows():
        where = (f"interval {row['interval']}: onset {row['onset']} apex {row['apex']} offset {row['offset']} "
                 f"({row['source']}, score {row['score']:.2f})")
        if not (row["onset_face"] and row["apex_face"]):
            print(f"{where}: no face in its onset/apex frame, no label  {row['image']}")
        elif row["below_threshold"]:
            print(f"{where}: below the spotting threshold {args.min_score:g}, not a detection "
                  f"(the model would say {row['label']} {row['confidence']:.2f})  {row['image']}")
            reliable += 1
        else:
            print(f"{where} -> {row['label']} ({row['confidence']:.2f})  {row['image']}")
            reliable += 1
    t = res.timings
    print(f"wrote {args.out}/predictions.csv, predictions.json"
          + (", timeline.png" if "timeline" in res.files else "")
          + (", predictions.mp4" if "video" in res.files else "")
          + f" (decode {t.get('decode_s', 0):.2f}s, face {t.get('face_s', 0):.2f}s, model {t.get('model_s', 0):.2f}s)")
    if not reliable:
        print(f"micronbert predict: no interval has a face in its onset and apex frames", flush=True)
        return EXIT_FLAGGED
    return 0
