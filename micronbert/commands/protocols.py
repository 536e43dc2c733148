"""`micronbert protocols`: list the evaluation protocols (class names, datasets)."""
from __future__ import annotations

HELP = "list evaluation protocols (classes, datasets, emotion mappings)"


def configure(parser) -> None:
    parser.add_argument("name", nargs="?", default=None,
                        help="show one protocol's emotion mapping in full (a name or a .yaml path)")


def run(args) -> int:
    from micronbert.data.protocol import list_protocols, load_protocol

    if args.name:
        p = load_protocol(args.name)
        print(p.summary())
        if p.description:
            print(f"  {p.description}")
        for dataset, mapping in p.datasets.items():
            for cls in p.classes:
                emotions = [e for e, c in mapping.items() if c == cls]
                if emotions:
                    print(f"  {dataset}: {p.class_id(cls)} {cls} <- {', '.join(emotions)}")
            if p.exclude.get(dataset):
                print(f"  {dataset}: excluded {', '.join(p.exclude[dataset])}")
            if dataset in p.expected:
                print(f"  {dataset}: expected {p.expected[dataset]} samples")
        return 0
    for name in list_protocols():
        p = load_protocol(name)
        print(f"{p.name:10s} {len(p.classes)} classes: {', '.join(p.classes):48s} datasets: {', '.join(p.datasets)}")
    return 0
