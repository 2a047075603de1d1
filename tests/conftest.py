"""Shared test fixtures: float64 hypothesis profiles, paths to the real data in ../shared/data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Tiny test networks run 10-40x slower with two intra-op threads on a busy 2-core machine than with one;
# subprocess searches started by the tests inherit the environment variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

_TABLES: dict = {}  # (path, size, mtime) → what common.run._load_table returned for it


@pytest.fixture(scope="module")
def lean_search_setup():
    """In-process searches read the NB201 table once, not at every run (0.3-0.5 s each): a complete table
    file is read once and then shared while its size and time stamp stay the same (a table is only queried,
    never changed). A module opts in: `pytestmark = pytest.mark.usefixtures("lean_search_setup")`."""
    import common.run
    load = common.run._load_table

    def load_once(path):
        try:
            stat = os.stat(path) if path else None
        except OSError:
            return load(path)  # the missing-table error, as ever
        key = (path, stat.st_size, stat.st_mtime_ns) if stat else None
        if key not in _TABLES:
            table = load(path)
            if table is None or not table.complete:  # a partial table prints its note at every load
                return table
            _TABLES[key] = table
        return _TABLES[key]
    with pytest.MonkeyPatch.context() as patch:  # for the whole module (its module-scoped runs too)
        patch.setattr(common.run, "_load_table", load_once)
        yield


settings.register_profile(
    "ci", derandomize=True, max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

SHARED_DATA = Path(os.environ.get("DARTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
NB201_CSV = SHARED_DATA / "nb201" / "nb201_200ep.csv"
CIFAR10_DIR = SHARED_DATA / "cifar-10-batches-py"


@pytest.fixture
def shared_data() -> Path:
    """The real data directory (../shared/data); skips where a fresh clone lacks it."""
    if not CIFAR10_DIR.is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR10_DIR} (place ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture
def nb201_csv() -> Path:
    """The real NAS-Bench-201 compact table; skips where it is absent."""
    if not NB201_CSV.is_file():
        pytest.skip(f"NB201 table not found at {NB201_CSV} (place ../shared/data beside the repo)")
    return NB201_CSV
