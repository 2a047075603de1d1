"""Files of a run directory that survive misuse: atomic writes, checksums, strict JSON, one writer.

* `atomic_write` writes a temporary file beside the target and renames it over the target; on any
  failure (a full disk, Ctrl-C) it removes the temporary file and re-raises, so the target keeps its
  last complete version and no `*.tmp` is left behind.
* `DigestFile` keeps the sha256 of the checkpoint in a sidecar (`checkpoint.pt.sha256`, the format of
  `sha256sum`, so `sha256sum -c checkpoint.pt.sha256` checks it by hand). While a new checkpoint
  replaces the old one the sidecar lists both digests, so a kill between the two renames never makes
  a good checkpoint look corrupt.
* `json_safe` turns tensors, named tuples and non-finite floats into plain JSON (NaN/±inf → null):
  `json.dumps(json_safe(x), allow_nan=False)` never writes the non-JSON token `NaN`.
* `RunLock` holds an exclusive `fcntl.flock` on `<run dir>/.lock` for the life of a run; a second
  process that asks for it gets `RunLocked` at once. The (empty) lock file is deleted by its holder
  when the run ends, still locked; a process that locked a file since deleted (the holder ended in
  between) tries again on the new one, so two processes never hold two files of the same name.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

try:  # POSIX only; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DigestFile", "RunLock", "RunLocked", "atomic_write", "json_safe", "sha256_of"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through `write(tmp)` and a rename; on any failure remove `tmp` and re-raise.

    Args:
        path: the file to (re)place.
        write: writes the complete new content to the path it is given.

    Raises:
        Whatever `write` or the rename raises (OSError for a full disk); `path` is then unchanged.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class DigestFile:
    """The sidecar `<file>.sha256` of one file: the digests its content may have (normally one).

    Args:
        target: the file whose digests are kept (the checkpoint).
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.with_name(target.name + ".sha256")

    def read(self) -> set[str] | None:
        """The accepted digests, or None when there is no sidecar (a checkpoint of older code)."""
        if not self.path.exists():
            return None
        return {line.split()[0] for line in self.path.read_text().splitlines() if line.strip()}

    def write(self, digests: Iterable[str]) -> None:
        """Replace the sidecar (atomically) by `digests`, one `sha256sum` line each."""
        text = "".join(f"{d}  {self.target.name}\n" for d in dict.fromkeys(digests))
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def matches(self) -> bool | None:
        """Whether the target's bytes have an accepted digest; None when there is no sidecar."""
        accepted = self.read()
        return None if accepted is None else sha256_of(self.target) in accepted

    def replace_target(self, new: Path) -> None:
        """Rename `new` over the target, keeping the sidecar true at every instant.

        The sidecar first lists the old and the new digest, then (after the rename) only the new one.
        """
        digest = sha256_of(new)
        old = self.read() or set()
        self.write([*sorted(old), digest])
        os.replace(new, self.target)
        self.write([digest])


def json_safe(x: Any) -> Any:
    """`x` as plain JSON values: tensors → numbers/lists, named tuples → dicts, NaN/±inf → None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if hasattr(x, "_asdict"):  # a named tuple (Genotype)
        return json_safe(x._asdict())
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # tensors, numpy arrays and scalars
        return json_safe(x.tolist())
    return x


class RunLocked(Exception):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive, non-blocking `flock` on `<folder>/.lock`, held until `release()` (or exit).

    Within one process a new `RunLock` on a folder takes the lock over from an earlier one that was
    never released (a run abandoned by an exception in a notebook or a test, whose traceback keeps it
    alive); only other processes are refused.

    Args:
        folder: the run directory (must exist).

    Raises:
        RunLocked: another process holds it.
        OSError: the lock file cannot be created.
    """

    NAME = ".lock"
    _held: dict[str, RunLock] = {}  # this process's locks by lock-file path

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.NAME
        key = os.path.realpath(self.path)
        earlier = RunLock._held.get(key)
        if earlier is not None:
            earlier.release(remove=False)
        self.created = not self.path.exists()  # whether this lock made the file (a refused run removes it)
        while True:
            self._file: TextIO | None = open(self.path, "a")  # noqa: SIM115 - held open for the lock's life
            if fcntl is None:
                break
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by another process
                self._file.close()
                self._file = None
                raise RunLocked(str(self.path)) from None
            try:
                if os.path.samestat(os.fstat(self._file.fileno()), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            self._file.close()  # its holder deleted it as we locked it: lock the file now there
        RunLock._held[key] = self

    def release(self, remove: bool = True) -> None:
        """Drop the lock (closing the file drops it), deleting the lock file first if `remove`; idempotent."""
        if self._file is not None:
            if remove:
                self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None
            key = os.path.realpath(self.path)
            if RunLock._held.get(key) is self:
                del RunLock._held[key]

    @property
    def held(self) -> bool:
        return self._file is not None
