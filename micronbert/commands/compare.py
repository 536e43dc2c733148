"""`micronbert compare`: one UF1/UAR table from several evaluate results, checked to share a sample list."""
from __future__ import annotations

HELP = "one UF1/UAR table (composite and per dataset) from several `evaluate` results"


def configure(p):
    p.add_argument("results", nargs="+", help="results folders (or their metrics.json)")
    p.add_argument("--out", default=None, help="write the Markdown table here (default: print it)")
    p.add_argument("--allow-different-samples", action="store_true",
                   help="write the table even when the results were computed on different sample lists")


def compare_table(metrics: list[dict], names: list[str]) -> tuple[str, bool]:
    """(Markdown table, same_samples): rows = results, columns = composite and per-dataset UF1/UAR."""
    from micronbert.train.metrics import fmt

    datasets = sorted({ds for m in metrics for ds in m.get("per_dataset", {})})
    head = ["result", "model", "protocol", "n", "UF1", "UAR"]
    for ds in datasets:
        head += [f"{ds} UF1", f"{ds} UAR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for name, m in zip(names, metrics):
        row = [name, str(m.get("model")), str(m.get("protocol")), str(m.get("n_samples")), fmt(m.get("uf1")),
               fmt(m.get("uar"))]
        for ds in datasets:
            d = m.get("per_dataset", {}).get(ds)
            row += [fmt(d["uf1"]), fmt(d["uar"])] if d else ["–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    hashes = [m.get("samples_sha256") for m in metrics]
    protocols = {m.get("protocol") for m in metrics}
    same = len(set(hashes)) == 1 and hashes[0] is not None and len(protocols) == 1
    if same:
        lines += ["", f"All results: protocol {protocols.pop()}, the same {metrics[0].get('n_samples')} samples "
                      f"(samples_sha256 `{hashes[0][:16]}…`), pooled LOSO predictions."]
    else:
        lines += ["", "**WARNING: these results were NOT computed on the same sample list / protocol; "
                      "the rows are not comparable.**", ""]
        lines += [f"- {n}: protocol {m.get('protocol')}, {m.get('n_samples')} samples, sha256 "
                  f"`{str(m.get('samples_sha256'))[:16]}…`" for n, m in zip(names, metrics)]
    return "\n".join(lines) + "\n", same


def run(args):
    from pathlib import Path

    from micronbert.errors import MicronbertError
    from micronbert.train.report import load_metrics
    from micronbert.utils.io import atomic_write_text

    metrics = [load_metrics(r) for r in args.results]
    names = [Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in args.results]
    table, same = compare_table(metrics, names)
    if not same and not args.allow_different_samples:
        detail = "; ".join(f"{n}: {m.get('protocol')}, n={m.get('n_samples')}, {str(m.get('samples_sha256'))[:12]}"
                           for n, m in zip(names, metrics))
        raise MicronbertError(f"the results were computed on different sample lists ({detail}); "
                              f"pass --allow-different-samples to tabulate them anyway")
    if args.out:
        atomic_write_text(args.out, table)
        print(f"wrote {args.out}")
    else:
        print(table, end="")
    return 0
