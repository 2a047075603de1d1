"""NAS-Bench-201: the cell search space's arch strings and the 200-epoch accuracy lookup.

The NB201 cell has 4 nodes and 6 edges; node j sums edge(i→j)(x_i) over i < j, and every edge holds
one of the 5 ops in `NB201_OPS`. Arch strings use the official form (edges 1←0, 2←0, 2←1, 3←0, 3←1,
3←2)::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|

`NB201Table` answers "what did the benchmark measure for this cell?" with the 200-epoch accuracies
(percent, mean over seeds; ``hp='200'``, ``is_random=False`` in the official API), read either from
the compact CSV (``index, arch_str`` and the six `COLUMNS`, official index order) or from the
official benchmark file (``NAS-Bench-201-v1_1-096897.pth`` / ``NAS-Bench-201-v1_0-e61699.pth``).

Command line::

    python -m common.nb201 export NAS-Bench-201-v1_1-096897.pth nb201_200ep.csv
    python -m common.nb201 query nb201_200ep.csv '|nor_conv_3x3~0|+|...|'

Official ``(dataset, set)`` behind each column (the same calls ``get_more_info`` makes):
cifar10_valid_valid ← (cifar10-valid, x-valid); cifar10_test ← (cifar10, ori-test);
cifar100_valid/test ← (cifar100, x-valid/x-test); imagenet16_valid/test ← (ImageNet16-120, x-valid/x-test).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import pickle
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to, from) per edge, in arch-string order.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES: int = len(NB201_EDGES)
NUM_OPS: int = len(NB201_OPS)
NUM_CELLS: int = NUM_OPS**NUM_EDGES  # 15,625 cells in the space
COLUMNS: tuple[str, ...] = (
    "cifar10_valid_valid", "cifar10_test", "cifar100_valid", "cifar100_test",
    "imagenet16_valid", "imagenet16_test",
)
CSV_HEADER: tuple[str, ...] = ("index", "arch_str", *COLUMNS)
# Column → (official dataset name, official set name) for ArchResults.get_metrics.
OFFICIAL_SOURCES: dict[str, tuple[str, str]] = {
    "cifar10_valid_valid": ("cifar10-valid", "x-valid"),
    "cifar10_test": ("cifar10", "ori-test"),
    "cifar100_valid": ("cifar100", "x-valid"),
    "cifar100_test": ("cifar100", "x-test"),
    "imagenet16_valid": ("ImageNet16-120", "x-valid"),
    "imagenet16_test": ("ImageNet16-120", "x-test"),
}
ARCH_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
#: The table shipped in the package (`tools/pack_nb201.py`): all 15,625 architectures, five columns;
#: `imagenet16_valid` is left out (NaN) because the copy it was built from has it reconstructed (±0.03).
PACKAGED_TABLE = Path(__file__).with_name("nb201_200ep.csv.gz")
#: Columns a CSV may leave out (read as NaN).
OPTIONAL_COLUMNS = ("imagenet16_valid",)
WHERE_TO_GET = (
    "get the official NAS-Bench-201 file (NAS-Bench-201-v1_1-096897.pth or NAS-Bench-201-v1_0-e61699.pth) "
    "from the NAS-Bench-201 authors (github.com/D-X-Y/NAS-Bench-201), or the compact CSV "
    "made from it by `python -m common.nb201 export OFFICIAL.pth nb201_200ep.csv`"
)

_EDGE_RE = re.compile(r"([^~|+]*)~([0-9]+)")
_ARCH_RE = re.compile(r"\|({0})~0\|\+\|({0})~0\|({0})~1\|\+\|({0})~0\|({0})~1\|({0})~2\|".format("|".join(NB201_OPS)))


# ---------------------------------------------------------------------------------------------
# Arch strings
# ---------------------------------------------------------------------------------------------


def parse_arch_str(arch_str: str) -> list[str]:
    """Parse an official NB201 arch string into its 6 op names.

    Args:
        arch_str: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` with ops from `NB201_OPS`.

    Returns:
        The op names in edge order (1←0, 2←0, 2←1, 3←0, 3←1, 3←2).

    Raises:
        ValueError: if the string is not exactly of the official form; the message names the problem.
        TypeError: if it is not a str.
    """
    if not isinstance(arch_str, str):
        raise TypeError(f"NB201 arch string must be a str, got {type(arch_str).__name__}")
    if match := _ARCH_RE.fullmatch(arch_str):  # the common, valid case in one step (tables: 15,625 rows)
        return list(match.groups())

    def fail(why: str) -> ValueError:
        return ValueError(f"invalid NB201 arch string {arch_str!r}: {why} (expected {ARCH_FORM})")

    nodes = arch_str.split("+")
    if len(nodes) != 3:
        raise fail(f"expected 3 nodes separated by '+', got {len(nodes)}")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or not (node.startswith("|") and node.endswith("|")):
            raise fail(f"node {j} part {node!r} must start and end with '|'")
        edges = node[1:-1].split("|")
        if len(edges) != j:
            raise fail(f"node {j} must have {j} incoming edge(s), got {len(edges)} in {node!r}")
        for i, edge in enumerate(edges):
            match = _EDGE_RE.fullmatch(edge)
            if match is None:
                raise fail(f"node {j} edge {edge!r} is not of the form 'op~input'")
            op = match.group(1)
            if op not in NB201_OPS:
                raise fail(f"unknown op {op!r} on edge {j}<-{i} (known ops: {', '.join(NB201_OPS)})")
            if match.group(2) != str(i):
                raise fail(f"node {j} edge {edge!r} has input index {match.group(2)}, expected {i}")
            ops.append(op)
    return ops


def format_arch_str(ops: Sequence[str]) -> str:
    """Write 6 op names (edge order) as the official NB201 arch string.

    Args:
        ops: op names from `NB201_OPS` for edges 1←0, 2←0, 2←1, 3←0, 3←1, 3←2.

    Returns:
        The arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

    Raises:
        ValueError: if there are not exactly 6 ops or one is unknown.
    """
    ops = list(ops)
    if len(ops) != NUM_EDGES:
        raise ValueError(f"NB201 cell needs {NUM_EDGES} ops (one per edge), got {len(ops)}: {ops}")
    for op in ops:
        if op not in NB201_OPS:
            raise ValueError(f"unknown NB201 op {op!r} (known ops: {', '.join(NB201_OPS)})")
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)  # edges in NB201_EDGES order


def derive_arch_str(weights: torch.Tensor, exclude_none: bool = False) -> str:
    """Discretize architecture weights: argmax op per edge (NB201 protocol, ``none`` included).

    Args:
        weights: (E=6, M=5) α, softmax(α) or any monotone transform of them (same argmax).
        exclude_none: pick the best op among the 4 non-``none`` ops instead.

    Returns:
        The official arch string. Ties go to the op listed first in `NB201_OPS`.

    Raises:
        ValueError: on a shape other than (6, 5) or NaN entries.
    """
    w = torch.as_tensor(weights).detach()
    if tuple(w.shape) != (NUM_EDGES, NUM_OPS):
        raise ValueError(f"NB201 weights must have shape ({NUM_EDGES}, {NUM_OPS}) (edges x ops), "
                         f"got {tuple(w.shape)}")
    if w.is_floating_point() and bool(torch.isnan(w).any()):
        raise ValueError("NB201 weights contain NaN; cannot take the argmax")
    first = 1 if exclude_none else 0
    best = torch.argmax(w[:, first:], dim=1) + first  # (E,)
    return format_arch_str([NB201_OPS[k] for k in best.tolist()])


def arch_str_to_onehot(arch_str: str, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """One-hot (6, 5) weights of an arch string; inverse of `derive_arch_str`.

    Args:
        arch_str: official NB201 arch string.
        dtype: dtype of the result.
        device: device of the result (default: torch's default device).

    Returns:
        (E=6, M=5) tensor with a single 1 per row, at the edge's op.
    """
    ops = parse_arch_str(arch_str)
    onehot = torch.zeros(NUM_EDGES, NUM_OPS, dtype=dtype, device=device)
    onehot[torch.arange(NUM_EDGES), torch.tensor([NB201_OPS.index(op) for op in ops])] = 1
    return onehot


# ---------------------------------------------------------------------------------------------
# The accuracy table
# ---------------------------------------------------------------------------------------------


class NB201Table:
    """200-epoch NB201 accuracies (percent) of every architecture, in official index order.

    Row ``i`` is the architecture with official index ``i``. Build one with `load`, `from_csv` or
    `from_official`; unevaluated architectures (none in the official files) hold NaN.
    """

    def __init__(self, arch_strs: Sequence[str], values: np.ndarray, source: str = "<memory>") -> None:
        """Wrap arrays already in official index order.

        Args:
            arch_strs: N official arch strings; position = official index.
            values: (N, 6) accuracies in the order of `COLUMNS`.
            source: where the data came from (for messages).

        Raises:
            ValueError: on mismatched sizes, malformed or duplicated arch strings.
        """
        self.source = source
        self.arch_strs: tuple[str, ...] = tuple(arch_strs)
        self.values = np.asarray(values, dtype=np.float64)  # (N, 6)
        if self.values.shape != (len(self.arch_strs), len(COLUMNS)):
            raise ValueError(f"{source}: values must have shape ({len(self.arch_strs)}, {len(COLUMNS)}), "
                             f"got {self.values.shape}")
        self._index: dict[str, int] = {}
        for i, arch in enumerate(self.arch_strs):
            parse_arch_str(arch)
            if arch in self._index:
                raise ValueError(f"{source}: arch {arch} appears at indexes {self._index[arch]} and {i}")
            self._index[arch] = i

    def __len__(self) -> int:
        return len(self.arch_strs)

    def __contains__(self, arch_str: object) -> bool:
        return arch_str in self._index

    def __repr__(self) -> str:
        return f"NB201Table({len(self)} archs from {self.source})"

    @property
    def complete(self) -> bool:
        """Whether every one of the `NUM_CELLS` NB201 cells is in the table (rows are distinct and valid)."""
        return len(self) == NUM_CELLS

    def coverage(self) -> str:
        """One line on how much of NB201 the table holds and what a partial table means for a search."""
        if self.complete:
            return f"NB201 table {self.source} holds all {NUM_CELLS:,} cells"
        return (f"NB201 table {self.source} holds {len(self):,} of the {NUM_CELLS:,} NB201 cells (a partial "
                "table): a derived cell outside it gets nb201 null and nb201_missing true in metrics.jsonl "
                "and result.json")

    def index_of(self, arch_str: str) -> int:
        """Official index of an arch string.

        Raises:
            ValueError: if the string is malformed or not in this table.
        """
        parse_arch_str(arch_str)  # clear message for malformed strings
        if arch_str not in self._index:
            raise ValueError(f"arch {arch_str} is a valid NB201 string but is not in {self}")
        return self._index[arch_str]

    def query(self, arch_str: str) -> dict[str, float]:
        """The six 200-epoch accuracies (percent) of one architecture, keyed by `COLUMNS`.

        Raises:
            ValueError: if the string is malformed or not in this table.
        """
        row = self.values[self.index_of(arch_str)]
        return {name: float(v) for name, v in zip(COLUMNS, row)}

    def column(self, column: str) -> np.ndarray:
        """A copy of one column, shape (N,), in official index order."""
        return self.values[:, self._column_id(column)].copy()

    def best(self, column: str) -> tuple[int, str, float]:
        """The architecture with the highest value in `column` (lowest index on ties).

        Returns:
            ``(index, arch_str, value)``.
        """
        col = self.values[:, self._column_id(column)]
        i = int(np.nanargmax(col))
        return i, self.arch_strs[i], float(col[i])

    @staticmethod
    def _column_id(column: str) -> int:
        if column not in COLUMNS:
            raise ValueError(f"unknown NB201 column {column!r} (columns: {', '.join(COLUMNS)})")
        return COLUMNS.index(column)

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> NB201Table:
        """Load by suffix: ``.csv`` / ``.csv.gz`` → `from_csv`, anything else → `from_official`."""
        path = Path(path)
        csv_file = path.name.lower().endswith((".csv", ".csv.gz"))
        return cls.from_csv(path) if csv_file else cls.from_official(path)

    @classmethod
    def from_csv(cls, path: str | Path) -> NB201Table:
        """Read the compact CSV (``index, arch_str`` + `COLUMNS`, rows in official index order), plain or
        gzip-compressed (``.gz``); a column of `OPTIONAL_COLUMNS` may be absent (read as NaN).

        Raises:
            FileNotFoundError: if the file is missing (the message says where to get it).
            ValueError: on missing columns, non-numeric values, bad arch strings or out-of-order
                indexes; the message names the file and line.
        """
        path = _existing(path)
        arch_strs: list[str] = []
        rows: list[list[float]] = []
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", newline="") as f:
            reader = _csv_rows(f, path)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}:1: empty file, expected header {','.join(CSV_HEADER)}")
            missing = [c for c in CSV_HEADER if c not in header and c not in OPTIONAL_COLUMNS]
            if missing:
                raise ValueError(f"{path}:1: missing column(s) {', '.join(missing)} in header {header}")
            absent = [c for c in OPTIONAL_COLUMNS if c not in header]
            pos = [(header + absent).index(c) for c in CSV_HEADER]
            for line, fields in enumerate(reader, start=2):
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise ValueError(f"{path}:{line}: expected {len(header)} fields, got {len(fields)}")
                fields = fields + ["nan"] * len(absent)  # absent optional columns: NaN
                index_s, arch, *nums = (fields[p] for p in pos)
                if index_s.strip() != str(len(arch_strs)):
                    raise ValueError(f"{path}:{line}: index {index_s!r}, expected {len(arch_strs)} "
                                     "(rows must be in official index order from 0)")
                try:
                    parse_arch_str(arch)
                except ValueError as err:
                    raise ValueError(f"{path}:{line}: {err}") from None
                try:
                    rows.append([float(x) for x in nums])
                except ValueError:
                    bad = next(c for c, x in zip(COLUMNS, nums) if not _is_float(x))
                    raise ValueError(f"{path}:{line}: column {bad} value {nums[COLUMNS.index(bad)]!r} "
                                     "is not a number") from None
                arch_strs.append(arch)
        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(COLUMNS))
        return cls(arch_strs, values, source=str(path))

    @classmethod
    def from_official(cls, path_or_dict: str | Path | Mapping[str, Any]) -> NB201Table:
        """Read the official benchmark (``NAS-Bench-201-v1_*.pth``) with the `nas_201_api` classes.

        Each value is ``ArchResults.get_metrics(dataset, set, is_random=False)['accuracy']`` of the
        ``hp='200'`` ('full') results, the mean over seeds; these are the same calls
        ``NASBench201API.get_more_info(index, dataset, hp='200', is_random=False)`` makes. The API object
        itself is not built because its constructor deep-copies the whole multi-GB dict.

        Args:
            path_or_dict: path of the official file (``torch.load`` or plain pickle) or its loaded dict
                (keys ``meta_archs``, ``arch2infos`` {index: {'full', 'less'}}, ``evaluated_indexes``).

        Raises:
            FileNotFoundError: if the file is missing (the message says where to get it).
            ImportError: if the ``nas-bench-201`` package is not installed.
            ValueError: if the file or dict is not in the official format.
        """
        try:
            from nas_201_api import ArchResults
        except ImportError as err:
            raise ImportError("reading the official NB201 file needs `pip install nas-bench-201` "
                              f"(module nas_201_api): {err}") from None
        if isinstance(path_or_dict, Mapping):
            data, source = path_or_dict, "<official dict>"
        else:
            source = str(path_or_dict)
            data = _load_official_file(_existing(path_or_dict))
        missing = [k for k in ("meta_archs", "arch2infos", "evaluated_indexes") if k not in data]
        if missing:
            raise ValueError(f"{source}: not an official NB201 dict, missing key(s) {', '.join(missing)}")
        arch_strs = list(data["meta_archs"])
        values = np.full((len(arch_strs), len(COLUMNS)), np.nan)  # (N, 6)
        for index, infos in data["arch2infos"].items():
            if not 0 <= index < len(arch_strs):
                raise ValueError(f"{source}: arch2infos index {index} outside meta_archs (0..{len(arch_strs) - 1})")
            if not isinstance(infos, Mapping) or "full" not in infos:
                raise ValueError(f"{source}: arch2infos[{index}] has no 'full' (200-epoch) results")
            results = ArchResults.create_from_state_dict(dict(infos["full"]))  # hp='200'
            if results.arch_str != arch_strs[index]:
                raise ValueError(f"{source}: index {index} is {arch_strs[index]} in meta_archs "
                                 f"but {results.arch_str} in arch2infos")
            for c, (dataset, setname) in enumerate(OFFICIAL_SOURCES.values()):
                try:
                    metrics = results.get_metrics(dataset, setname, iepoch=None, is_random=False)
                except (KeyError, AssertionError) as err:
                    raise ValueError(f"{source}: index {index} has no 200-epoch {dataset}/{setname} "
                                     f"result ({type(err).__name__}: {err})") from None
                values[index, c] = float(metrics["accuracy"])
        return cls(arch_strs, values, source=source)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NB201 table not found at {path}: {WHERE_TO_GET}")
    return path


def _csv_rows(f: Any, path: Path) -> Iterator[list[str]]:
    """`csv.reader(f)`, its errors (a NUL byte, a field over the csv module's 131,072-character limit)
    raised as ValueError naming the file and line."""
    reader = csv.reader(f)
    try:
        yield from reader
    except csv.Error as err:
        raise ValueError(f"{path}:{reader.line_num}: not a valid CSV line ({err})") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_official_file(path: Path) -> Mapping[str, Any]:
    """Load the official .pth (a torch-saved dict of plain Python objects), falling back to pickle."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as torch_err:  # noqa: BLE001 - not a torch file: try a plain pickle
        try:
            with path.open("rb") as f:
                data = pickle.load(f)
        except Exception as pickle_err:  # noqa: BLE001
            raise ValueError(f"{path}: cannot read as a torch file ({torch_err}) "
                             f"or a pickle ({pickle_err})") from None
    if not isinstance(data, Mapping):  # a wrong file, not a caller's type error
        raise ValueError(  # noqa: TRY004
            f"{path}: expected the official NB201 dict, got {type(data).__name__}")
    return data


def export_csv(table_or_path: NB201Table | str | Path, out_path: str | Path) -> Path:
    """Write the compact CSV (``index, arch_str`` + `COLUMNS`, 4 decimals, official index order).

    Args:
        table_or_path: a table, or a path for `NB201Table.load`.
        out_path: where to write; parent folders are created.

    Returns:
        The written path.
    """
    table = table_or_path if isinstance(table_or_path, NB201Table) else NB201Table.load(table_or_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)  # "\r\n" rows, as in the shared CSV
        writer.writerow(CSV_HEADER)
        for i, (arch, row) in enumerate(zip(table.arch_strs, table.values)):
            writer.writerow([i, arch, *("nan" if math.isnan(v) else f"{v:.4f}" for v in row)])
    return out


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``export IN OUT`` writes the compact CSV; ``query TABLE ARCH`` prints JSON accuracies."""
    parser = argparse.ArgumentParser(prog="python -m common.nb201", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_export = sub.add_parser("export", help="official .pth (or a CSV) -> compact CSV")
    p_export.add_argument("table", help="official NAS-Bench-201-v1_*.pth, or a compact .csv")
    p_export.add_argument("out", help="CSV to write")
    p_query = sub.add_parser("query", help="print the six 200-epoch accuracies (percent) as JSON")
    p_query.add_argument("table", help="compact .csv or official .pth")
    p_query.add_argument("arch", help=f"official arch string {ARCH_FORM}")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            out = export_csv(args.table, args.out)
            print(f"wrote {out}")
        else:
            table = NB201Table.load(args.table)
            result = {"index": table.index_of(args.arch), **table.query(args.arch)}
            print(json.dumps(result))
    except (OSError, ValueError, ImportError) as err:
        print(f"nb201: error: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
