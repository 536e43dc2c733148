"""`micronbert index`: read a dataset as it ships into a sample table plus a validation report."""
from __future__ import annotations

HELP = "index a micro-expression dataset (CASME II, SAMM, SMIC-HS, CAS(ME)^3, MMEW, folder) into samples.csv"

DATASETS = ("casme2", "samm", "smic", "casme3", "mmew", "folder")


def configure(parser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="which reader to use: %(choices)s")
    parser.add_argument("--root", required=True, help="dataset folder as it ships (e.g. the CASME2 folder)")
    parser.add_argument("--annotations", default=None,
                        help="annotation sheet (.xlsx/.xls/.csv); when not given it is found in --root by "
                             "its usual name")
    parser.add_argument("--out", required=True, help="sample table to write (CSV; never the sheet or another file "
                        "of the dataset); the report goes beside it as <name>.report.csv")
    parser.add_argument("--variant", choices=("auto", "raw", "cropped"), default="auto",
                        help="casme2/smic/folder: raw frames or the official reg_ crops (auto: raw if "
                             "present)")
    parser.add_argument("--missing-apex", "--apex-policy", dest="apex_policy", choices=("exclude", "spot", "middle"),
                        default="exclude",
                        help="rows with a missing or out-of-range apex (e.g. '/' in CASME II sheets): report and "
                             "exclude them; spot the apex between onset and offset with the apex spotter "
                             "(apex_source 'spotted'); or use the middle frame (apex_source 'repaired'). The report "
                             "says which frame each row got")
    parser.add_argument("--no-image-check", action="store_true",
                        help="skip decoding each sample's onset and apex images")
    parser.add_argument("--name", default="folder", help="dataset name for --dataset folder")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 3 if the report has any entry (excluded, repaired or warning); the "
                             "table and report are still written")


def report_path(out) -> "Path":
    from pathlib import Path

    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.report.csv")


def summarize(df) -> list[str]:
    lines = [f"{len(df)} samples, {df['subject'].nunique()} subjects"]
    for emotion, n in df["emotion"].value_counts().sort_index().items():
        lines.append(f"  {emotion}: {n}")
    return lines


def run(args) -> int:
    import sys

    from micronbert.data.readers import index_dataset
    from micronbert.data.samples import write_samples
    from micronbert.errors import MicronbertError

    from micronbert.errors import EXIT_FLAGGED, UsageError
    from micronbert.data.samples import COLUMNS
    from micronbert.utils.paths import check_not_clobbering, check_outputs

    if args.name != "folder" and args.dataset != "folder":
        raise UsageError("--name only applies to --dataset folder")
    rpath = report_path(args.out)
    # before any work: the table and its report must not land on the sheet or inside the dataset
    outputs = [(args.out, "file", "--out"), (rpath, "file", "--out (its report)")]
    check_outputs(outputs, [args.annotations])
    for path, _, flag in outputs:
        check_not_clobbering(path, args.root, COLUMNS[0] if path == args.out else "file,", flag)
    # Only options that differ from the defaults are passed, so a reader that has no such option
    # (e.g. --variant for samm) rejects it instead of ignoring it.
    opts = {"variant": None if args.variant == "auto" else args.variant,
            # spot: the reader keeps such rows at the middle frame, then the spotter replaces it
            "apex_policy": {"exclude": None, "spot": "middle"}.get(args.apex_policy, args.apex_policy),
            "dataset_name": args.name if args.dataset == "folder" else None}
    if args.no_image_check:
        opts["check_images"] = False
    df, report = index_dataset(args.dataset, args.root, args.annotations, **opts)
    if args.apex_policy == "spot":
        from micronbert.infer.apex import spot_repaired_apexes

        df = spot_repaired_apexes(df, report)
    write_samples(df, args.out)
    report.write(rpath)
    for line in report.lines():
        print(line)
    info = ", ".join(f"{k} {v}" for k, v in df.attrs.items())
    if info:
        print(f"read: {info}")
    for line in summarize(df):
        print(line)
    print(f"report: {report.summary()} -> {rpath}")
    print(f"wrote {args.out}")
    if df.empty:
        raise MicronbertError(f"no samples indexed from {args.root} (see {rpath})")
    if args.strict and len(report):
        print(f"micronbert index: --strict: {len(report)} report entries (see {rpath})", file=sys.stderr)
        return EXIT_FLAGGED
    return 0
