"""Progress of long work: a tqdm bar on a terminal, plain periodic lines anywhere else.

Every progress bar of the kit comes from :func:`tqdm` here (a drop-in for ``tqdm.tqdm``: the
same arguments). On a terminal it is tqdm's bar. Written to a file or a pipe (a CI log, ``make
demo > log``) a bar would leave hundreds of carriage-return redraws in the log, so there it is a
:class:`PlainProgress`: one ordinary line every ``TTSNN_PROGRESS_INTERVAL`` seconds (default
30), and a last line when a bar that printed anything closes. ``disable=True`` is silent in both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

__all__ = ["tqdm", "PlainProgress", "is_terminal", "say"]

DEFAULT_INTERVAL_S = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def say(message: str) -> None:
    """One line on stderr about a long step that shows no bar (what it does, how long it takes)."""
    print(message, file=sys.stderr, flush=True)


def _interval() -> float:
    text = os.environ.get("TTSNN_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


class PlainProgress:
    """The part of tqdm's interface the kit uses, printing whole lines at most every ``interval``
    seconds: ``iterate``, ``update``, ``set_postfix(_str)``, ``set_description``, ``write``,
    ``close``, a context manager."""

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None,
                 total: float | None = None, leave: bool | None = True, file: TextIO | None = None,
                 unit: str = "it", interval: float | None = None, **_unused: Any):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc or "", unit
        self.file = sys.stderr if file is None else file
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.postfix = ""
        self.disable = False
        self._start = self._last = time.monotonic()
        self._printed = False
        self._closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        done = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        pct = f" ({100.0 * self.n / self.total:.0f} %)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{pct}, {elapsed:.0f} s{tail}"

    def _print(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self._printed = True
        self._last = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    set_description_str = set_description

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        pass

    def write(self, s: str, file: TextIO | None = None, **_unused: Any) -> None:
        print(s, file=self.file if file is None else file, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._printed:  # the log showed it under way: show it finished
            self._print()


def tqdm(iterable: Iterable | None = None, *args: Any, **kwargs: Any):
    """``tqdm.tqdm(...)`` on a terminal (or when disabled); :class:`PlainProgress` otherwise."""
    from tqdm import tqdm as bar

    names = ("desc", "total", "leave", "file")
    kwargs.update(zip(names, args))
    disable = kwargs.get("disable", False)
    if disable or disable is None and not is_terminal(kwargs.get("file")):
        return bar(iterable, **{**kwargs, "disable": True})
    if is_terminal(kwargs.get("file")):
        return bar(iterable, **kwargs)
    return PlainProgress(iterable, **kwargs)
