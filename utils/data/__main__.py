"""``python -m utils.data prepare``: generate and verify every dataset once (used by make)."""

from __future__ import annotations

import sys

from . import data_dir, dataset_status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["prepare"]:
        print("usage: python -m utils.data prepare", file=sys.stderr)
        return 2
    print(f"data folder: {data_dir()}")
    status = dataset_status(download=True)
    for name, text in status.items():
        print(f"  {name:14s} {text}")
    missing = [n for n, t in status.items() if t.startswith("MISSING")]
    if missing:
        print(f"missing datasets: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
