"""`micronbert report`: one self-contained HTML page of one or several `evaluate` results folders."""
from __future__ import annotations

HELP = ("a self-contained HTML page (images inlined, no script) of `evaluate` results: metrics with the "
        "sample-list hash, per-dataset, per-class and per-fold tables, confusion matrices; several runs side by side")


def configure(p):
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                   help="`evaluate` results folders (or their metrics.json); several are shown side by side")
    p.add_argument("--out", required=True, metavar="HTML", help="the HTML file to write (e.g. report.html)")
    p.add_argument("--title", default="micronbert evaluation report", help="the page's title and heading")


def run(args):
    from micronbert.infer.report_html import write_evaluation_report
    from micronbert.utils.paths import check_output

    check_output(args.out, "file", args.results)  # never onto, nor inside, a results folder being read
    path = write_evaluation_report(args.results, args.out, args.title)
    print(f"wrote {path} ({len(args.results)} run{'s' if len(args.results) > 1 else ''})")
    return 0
