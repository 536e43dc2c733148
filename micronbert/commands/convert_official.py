"""`micronbert convert-official`: the authors' released .pth -> a micronbert model folder."""
from __future__ import annotations

HELP = "convert the authors' released μ-BERT checkpoint (.pth) into a model folder (safetensors + config.json)"


def configure(p):
    p.add_argument("checkpoint", help="the release's .pth (e.g. CASME2-is224-p8-b16-ep200.pth)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--allow-missing", action="store_true",
                   help="convert even if tensors are missing (they keep a fresh initialisation; listed in the report)")


def run(args):
    from micronbert.model.official import REPORT_NAME, convert_official

    report = convert_official(args.checkpoint, args.out, allow_missing=args.allow_missing)
    print(f"mapped {report.mapped} tensors from {args.checkpoint} (epoch {report.epoch})")
    for key, diff in report.checks.items():
        print(f"  check {key}: {diff if diff is None else f'{diff:.3g}'}")
    if report.unknown:
        print(f"  unknown keys ({len(report.unknown)}), not converted: " + ", ".join(report.unknown[:20])
              + (" ..." if len(report.unknown) > 20 else ""))
    if report.missing:
        print(f"  missing keys ({len(report.missing)}), left at initialisation: " + ", ".join(report.missing[:20])
              + (" ..." if len(report.missing) > 20 else ""))
    if report.other_entries:
        print(f"  other container entries ignored: {', '.join(report.other_entries)}")
    for w in report.warnings:
        print(f"  warning: {w}")
    print(f"wrote {args.out} (report: {args.out}/{REPORT_NAME})")
    return 0
