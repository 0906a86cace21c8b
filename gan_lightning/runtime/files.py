"""Files that are whole or absent: checkpoints, metrics files, cache entries and the commands' outputs are
written to a temporary name in the target's folder and renamed onto the target only once they are complete and
on disk, so a reader, or a process killed at any moment of the write, finds the previous file or the new one and
never a partial one.

- :func:`atomic_write` yields the open temporary file (``"w"`` or ``"wb"``);
- :func:`atomic_path` yields the temporary file's name, with the target's suffix, for writers that take a file
  name and read the format from it (PIL, matplotlib);
- :func:`replace_folder` yields a temporary sibling folder that takes the target folder's place.

The temporary name is ``.<name>.<random>.tmp`` (``.<name>.<random>.tmp<suffix>`` for :func:`atomic_path`), new
for every write, so that two processes writing the same target never write into one file. On success the file
is flushed and fsynced, renamed onto the target with ``os.replace``, and the folder is fsynced (where the
platform and file system allow it); a failed write removes the temporary file and re-raises, leaving the target
as it was. A process killed mid-write leaves the target as it was and the temporary file, which may be deleted.
Folders are not created here: the caller makes the target's folder.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def temporary_name(path: PathLike, keep_suffix: bool = False) -> Path:
    """A new name beside ``path``: ``.<name>.<random>.tmp``, plus the target's suffix with ``keep_suffix``."""
    path = Path(path)
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix if keep_suffix else ''}"


def fsync_dir(folder: PathLike) -> None:
    """Makes a rename in ``folder`` durable (where the platform and file system allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path, tmp: Path) -> Iterator[None]:
    """``os.replace(tmp, path)`` when the block succeeds, then the folder fsynced; ``tmp`` removed when it fails."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_write(path, "wb") as f: torch.save(obj, f)``: ``f`` is a new temporary file beside ``path``
    (opened with ``open_kwargs``, e.g. ``newline=""``), which replaces ``path`` once the block has succeeded and
    the data is on disk."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = temporary_name(path)
    with _replacing(path, tmp):
        # "x": a new file with the usual permissions (umask), never an existing one.
        with open(tmp, "x" + mode[1:], **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """``with atomic_path("grid.png") as tmp: image.save(tmp)``: ``tmp`` is a new name beside ``path`` with the
    same suffix; the file written there replaces ``path`` once the block has succeeded (and is fsynced first)."""
    path = Path(path)
    tmp = temporary_name(path, keep_suffix=True)
    with _replacing(path, tmp):
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())


@contextmanager
def replace_folder(folder: PathLike) -> Iterator[Path]:
    """``with replace_folder("pngs") as tmp: <fill tmp>``: ``tmp`` is a new, empty folder beside ``folder`` that
    takes its place once the block has succeeded. An existing ``folder`` is renamed aside first, put back if the
    new one cannot be renamed into place, and deleted only once the new one is there; a failed block deletes
    ``tmp`` and leaves ``folder`` as it was. (The two renames are not one atomic step: a process killed between
    them leaves ``folder`` missing and the earlier one beside it as ``.<name>.<random>.old``.)"""
    folder = Path(os.path.abspath(folder))
    token = uuid.uuid4().hex[:12]
    tmp = folder.parent / f".{folder.name}.{token}.tmp"
    old = folder.parent / f".{folder.name}.{token}.old"
    tmp.mkdir()
    try:
        yield tmp
        if folder.is_dir():
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except OSError:
                os.rename(old, folder)
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, folder)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
    fsync_dir(folder.parent)
