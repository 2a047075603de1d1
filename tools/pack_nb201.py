"""Build the NAS-Bench-201 table shipped inside the package (`common/nb201_200ep.csv.gz`).

    python tools/pack_nb201.py ../shared/data/nb201/nb201_200ep.csv common/nb201_200ep.csv.gz

Input: the compact CSV (``index, arch_str`` and the six 200-epoch accuracy columns, official index
order; `python -m common.nb201 export` writes one from the official .pth). Output: the same rows as
gzip-compressed CSV with every value copied as text (no re-rounding), without the `imagenet16_valid`
column: in ../shared/data that column is reconstructed (about ±0.03 off the official benchmark), the
other five match it. Pass `--keep-imagenet16-valid` when the input comes from the official file.
The output is byte-reproducible (gzip header without a time stamp or file name).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from pathlib import Path

DROPPED = "imagenet16_valid"


def pack(src: str | Path, dst: str | Path, keep_imagenet16_valid: bool = False) -> int:
    """Write `dst` (.csv.gz) from the CSV `src`; returns the number of rows."""
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["index", "arch_str"]:
        raise ValueError(f"{src}: not an NB201 compact CSV (header must start with index,arch_str)")
    keep = [i for i, name in enumerate(rows[0]) if keep_imagenet16_valid or name != DROPPED]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        if row:
            writer.writerow([row[i] for i in keep])
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9,
                                               mtime=0) as gz:
        gz.write(text.getvalue().encode())
    return len(rows) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="compact NB201 CSV")
    parser.add_argument("dst", help="output .csv.gz")
    parser.add_argument("--keep-imagenet16-valid", action="store_true",
                        help="keep the imagenet16_valid column (only for a CSV exported from the official file)")
    ns = parser.parse_args(argv)
    try:
        n = pack(ns.src, ns.dst, ns.keep_imagenet16_valid)
    except (OSError, ValueError) as err:
        print(f"pack_nb201: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {ns.dst}: {n} architectures, {Path(ns.dst).stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
