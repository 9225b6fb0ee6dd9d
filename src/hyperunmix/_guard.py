"""Guards of a run's outputs: one run at a time on an output, and only its own files replaced.

- :func:`output_lock`: an exclusive lock file held while a run writes an output, so that
  two runs into one output fail instead of mixing.
- :func:`recorded_files`, :func:`claim` and :func:`remove_stale`: an output's run record
  lists the files its run wrote. A new run may replace those, removes the ones it no
  longer writes, and replaces no other existing file unless told to overwrite, and never
  an input of its own.
- :func:`writable_directory`: the output location checked before a long fit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError
from .io.envi import output_paths as envi_paths

#: Suffixes of an ENVI pair: a map written as ENVI is its header and its data file.
_ENVI_SUFFIXES = (".hdr", ".img")


# -- lock ----------------------------------------------------------------------------------
@contextlib.contextmanager
def output_lock(lock: str | os.PathLike, output: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock file ``lock`` on ``output`` for the duration of the block.

    The lock file is created atomically (``O_CREAT | O_EXCL``) and holds the owner's pid
    and host. Another run finding it fails at once with an InputError naming the lock file
    and its owner; a lock whose owner is no longer running on this host (a killed run) is
    taken over with a warning. The lock is removed when the block ends, however it ends.
    """
    lock = Path(lock)
    token = _acquire(lock, Path(output))
    try:
        yield lock
    finally:
        # Removed only while it is still ours (a user may have removed it and another
        # run taken the output since).
        if _holder(lock).get("token") == token:
            lock.unlink(missing_ok=True)


def _acquire(lock: Path, output: Path) -> str:
    """Create ``lock`` for this process and return its token; see :func:`output_lock`."""
    token = uuid.uuid4().hex
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": token}
    # Three tries: the lock may be released or taken over between two steps of another run.
    for _ in range(3):
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder and not _is_stale(holder):
                raise _busy(lock, output, holder) from None
            if holder:
                _take_over(lock, holder)
            continue
        except OSError as exc:
            raise InputError(f"cannot create the lock file {lock}: {exc.strerror or exc}") from exc
        with os.fdopen(descriptor, "w") as stream:
            json.dump(owner, stream)
        return token
    raise _busy(lock, output, _holder(lock))


def _holder(lock: Path) -> dict:
    """The owner recorded in ``lock``; ``{}`` when it is gone, and ``{"pid": None}`` while
    it is unreadable (just created, its owner not yet written), which counts as alive."""
    try:
        holder = json.loads(lock.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"pid": None}
    return holder if isinstance(holder, dict) else {"pid": None}


def _is_stale(holder: dict) -> bool:
    """Whether the lock's owner is a process of this host that is no longer running (an
    owner on another host cannot be checked, so its lock stands)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        pass
    return False


def _take_over(lock: Path, holder: dict) -> None:
    """Remove the stale ``lock`` of ``holder``. Several runs may find it stale at once:
    each renames it aside, an atomic step only one of them wins, and removes it only when
    it moved the stale lock itself; a lock another run created since is put back."""
    aside = lock.with_name(f"{lock.name}.{uuid.uuid4().hex}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another run took it over first
    if _holder(aside).get("token") != holder.get("token"):
        os.replace(aside, lock)
        return
    aside.unlink()
    warnings.warn(
        f"took over the lock {lock} of pid {holder['pid']} on {holder['host']}, "
        "which is no longer running (an interrupted run)",
        stacklevel=2,
    )


def _busy(lock: Path, output: Path, holder: dict) -> InputError:
    pid = holder.get("pid") or "unknown"
    host = holder.get("host") or "an unknown host"
    return InputError(
        f"{output} is being written by another hyperunmix run (pid {pid} on "
        f"{host}, lock file {lock}); wait for it to end or choose another "
        f"output (remove {lock} if that run is no longer running)"
    )


# -- which files a run may replace ---------------------------------------------------------
def with_companions(paths: Iterable[Path]) -> set[Path]:
    """``paths`` with the other file of each ENVI pair among them (``x.hdr`` <-> ``x.img``)."""
    found: set[Path] = set()
    for path in map(Path, paths):
        found.update(envi_paths(path) if path.suffix.lower() in _ENVI_SUFFIXES else (path,))
    return found


def recorded_files(record: Path, fingerprint: str | None = None) -> set[Path]:
    """The files the run record ``record`` (a JSON object with a ``files`` list of names
    beside it) lists, and the record itself; none when there is no such record or, given
    ``fingerprint``, when it records another run."""
    try:
        run = json.loads(record.read_text())
        names = run["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    if not isinstance(names, list) or (
        fingerprint is not None and run.get("fingerprint") != fingerprint
    ):
        return set()
    # Plain names only: a record never points outside its directory.
    names = [
        name
        for name in names
        if isinstance(name, str) and Path(name).name == name and name not in (".", "..")
    ]
    return with_companions([record, *(record.parent / name for name in names)])


def claim(
    planned: Iterable[Path],
    owned: set[Path],
    *,
    overwrite: bool,
    rule: str,
    inputs: Iterable[Path] = (),
) -> None:
    """Refuse, before anything is written, to write the ``planned`` files over an input
    of the run (ever) or over an existing file not in ``owned`` (unless ``overwrite``).

    ``rule`` says, for the message, why such a file is not the run's to replace.
    """
    planned = sorted(with_companions(planned))
    sources = {path.resolve() for path in inputs}
    for path in planned:
        if path.resolve() in sources:
            raise InputError(
                f"{path} is an input of this run: writing the output there "
                "would destroy it, which even --overwrite does not allow; "
                "choose another output path"
            )
    if overwrite:
        return
    for path in planned:
        if path.exists() and path not in owned:
            raise InputError(
                f"{path} exists and this run may not replace it ({rule}); "
                "remove it, choose another output path, or overwrite it "
                "(overwrite=True, --overwrite)"
            )


def remove_stale(previous: set[Path], planned: Iterable[Path]) -> None:
    """Remove the files an earlier run wrote (``previous``) that this one does not write,
    so that the output never mixes maps of two runs."""
    for path in previous - with_companions(planned):
        if path.is_file():
            path.unlink()


def writable_directory(directory: str | os.PathLike) -> Path:
    """``directory``, created if needed, once a file was created in it and removed; an
    InputError naming it otherwise. Checked before a long fit, not found out after it."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"output path {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".hyperunmix-check."):
            pass
    except OSError as exc:
        raise InputError(f"cannot write the output to {directory}: {exc.strerror or exc}") from exc
    return directory
