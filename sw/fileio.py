"""Atomic file writes shared by every package: nothing half-written is ever left under a name.

A file is written to a temporary file in the same directory, then renamed over the target
(``os.replace`` is atomic on POSIX), so an interrupted run keeps the previous version intact.
The temporary file is named ``.<name>.<pid>.<random>.tmp``; one left behind by a process that
was killed mid-write (SIGKILL, power loss) is removed by the next write of the same target,
once its process is gone. A failed write raises ``OSError`` naming the target (never the
temporary file) and saying what to do. Light on purpose (no torch): gen/, cosim/ and model/
use it too.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable
from ttsnn.sw.cli_util import UserError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_write_json",
           "remove_stale_temps", "check_output_path", "check_outputs", "check_output_dir", "add_force_argument",
           "os_error"]

# a temp file of the old naming (no pid) is treated as abandoned once it is this old
_LEGACY_TEMP_AGE_S = 60.0

_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted; free some space or write elsewhere",
    errno.EFBIG: "the file is larger than this file system or process allows; write elsewhere",
    errno.EACCES: "no permission to write there; choose a writable location",
    errno.EPERM: "no permission to write there; choose a writable location",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.ENOTDIR: "a parent of it is a file, not a directory; choose another path",
    errno.EEXIST: "a parent of it is a file, not a directory; choose another path",
    errno.EISDIR: "it is a directory; give a file name",
}


def os_error(cls: type[OSError], code: int, message: str) -> OSError:
    """``cls(message)`` with ``errno`` set: prints as the bare message (no "[Errno n]")."""
    exc = cls(message)
    exc.errno = code
    return exc


def _temp_owner_alive(name: str, target: str) -> bool | None:
    """Whether the process that created temp file ``name`` (for ``target``) may still write it
    (None: old naming without a pid, owner unknown). A name of another target's temp file
    that the glob also matched (``.a.pt.json.<pid>.<r>.tmp`` for ``a.pt``) counts as alive."""
    parts = name[len(f".{target}."):-len(".tmp")].split(".")
    if len(parts) == 1:
        return None
    if len(parts) != 2 or not parts[0].isdigit():
        return True  # not a temp of this target: leave it
    pid = int(parts[0])
    if pid == os.getpid():
        return True  # ours (another thread of this process may be writing it)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that interrupted writes of ``path`` left behind (their
    process is gone, or, for the old naming without a pid, they are over a minute old).
    Returns what was removed."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        alive = _temp_owner_alive(tmp.name, path.name)
        if alive is None:
            try:
                alive = time.time() - tmp.stat().st_mtime < _LEGACY_TEMP_AGE_S
            except OSError:
                continue
        if not alive:
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _explain(exc: OSError, path: Path) -> OSError:
    """The same kind of OSError, naming ``path`` (not a temp file) and what to do."""
    advice = _ADVICE.get(exc.errno or -1, "check the path and the disk")
    reason = exc.strerror or str(exc)
    return os_error(type(exc), exc.errno or 0, f"cannot write {path}: {reason} ({advice}); "
                                                "an earlier version of the file, if any, is unchanged")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then rename it to ``path``.

    The parent directory is created. On any error the temporary file is removed and the
    previous ``path`` (if any) is untouched; an ``OSError`` names ``path`` and the cause
    (disk full, no permission, ...). Temporary files of earlier interrupted writes of
    ``path`` are removed first.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise os_error(IsADirectoryError, errno.EISDIR, f"cannot write {path}: it is a directory; give a file name")
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        # a writer that reports a full disk in its own words (torch.save to a path: a C++
        # "unexpected pos" trace) is recognised by the free space left while its file is there
        full = not isinstance(exc, (OSError, KeyboardInterrupt)) and _nearly_full(path.parent)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if full:
            raise _explain(os_error(OSError, errno.ENOSPC, os.strerror(errno.ENOSPC)), path) from exc
        if isinstance(exc, OSError) and not str(exc).startswith(f"cannot write {path}"):
            raise _explain(exc, path) from None
        raise
    return path


def _nearly_full(directory: Path, margin: int = 1 << 20) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_bytes(tmp: str, data: bytes | memoryview) -> None:
    with open(tmp, "wb") as f:
        f.write(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda tmp: _write_bytes(tmp, data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kw: Any) -> Path:
    dumps_kw.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **dumps_kw) + "\n")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                      force: bool = False, flag: str = "--out") -> Path:
    """Refuse an output that would destroy something, before any work is done.

    ``out`` equal to one of ``inputs`` is refused (even with ``force``); an existing ``out``
    needs ``force``; ``out`` must be creatable (its nearest existing parent a writable
    directory). Raises ``ValueError``/``OSError`` with one line saying what to do.
    """
    out = Path(out)
    for inp in inputs:
        if inp is not None and _same_file(out, Path(inp)):
            raise UserError(f"{flag} {out} is the input file {inp}; writing it would replace the input. "
                            "Give another output path")
    if out.is_dir():
        raise os_error(IsADirectoryError, errno.EISDIR, f"{flag} {out} is a directory; give a file name")
    if out.exists() and not force:
        raise os_error(FileExistsError, errno.EEXIST, f"{flag} {out} already exists; pass --force to replace it, "
                                            "or choose another path")
    _check_writable_parent(out, out.parent, flag)
    return out


def _check_writable_parent(out: Path, parent: Path, flag: str) -> None:
    """The nearest existing ancestor of ``parent`` must be a writable directory."""
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise os_error(NotADirectoryError, errno.ENOTDIR, f"{flag} {out}: {parent} is a file, not a directory; "
                                                          "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise os_error(PermissionError, errno.EACCES, f"{flag} {out}: no permission to write in {parent}; "
                                                      "choose a writable location")


def check_outputs(outputs: Iterable[tuple[str, str | os.PathLike | None]], *,
                  inputs: Iterable[str | os.PathLike | None] = (), force: bool = False) -> None:
    """:func:`check_output_path` for each ``(flag, path)`` of a command's file outputs (a path
    of None or '' is an output not asked for), before any work is done."""
    inputs = list(inputs)
    for flag, path in outputs:
        if path:
            check_output_path(path, inputs=inputs, force=force, flag=flag)


def check_output_dir(out: str | os.PathLike, names: Iterable[str], *, force: bool = False,
                     inputs: Iterable[str | os.PathLike | None] = (), flag: str = "--out") -> Path:
    """Refuse, before any work, a run that would write the files ``names`` into directory ``out``
    over existing ones (unless ``force``), into a file, or over one of ``inputs``. Returns ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise os_error(NotADirectoryError, errno.ENOTDIR,
                       f"{flag} {out} is a file; give a directory (it will be created if missing)")
    names = list(names)
    for inp in inputs:
        if inp is not None and any(_same_file(out / n, Path(inp)) for n in names):
            raise UserError(f"{flag} {out} would overwrite the input file {inp}; choose another directory")
    present = [n for n in names if (out / n).exists()]
    if present and not force:
        shown = ", ".join(present[:4]) + (f" and {len(present) - 4} more" if len(present) > 4 else "")
        raise os_error(FileExistsError, errno.EEXIST,
                       f"{flag} {out} already holds {shown}; pass --force to replace them, or choose another "
                       "directory")
    _check_writable_parent(out, out if out.exists() else out.parent, flag)
    return out


def add_force_argument(parser, what: str = "the output files") -> None:
    """The ``--force`` flag of every command that writes files: without it, nothing that exists
    is overwritten."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace {what} if they exist (without it an existing output is never overwritten)")
