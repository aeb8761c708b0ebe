"""How the command speaks: one emitter for results and one for errors.

Every subcommand returns a :class:`Result`: the record (what ``--format
json`` prints, one JSON document on stdout) and the text a person reads.
Errors take the same two shapes on stderr: ``fsstore: <message>`` as text,
``{"error": <message>, "type": <kind>}`` as JSON, always one line. The
progress bar, on stderr, is set up here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from types import TracebackType
from typing import Any, Protocol

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

JsonValue = Any  # what json.dumps takes: dicts, lists, str, int, bool, None


@dataclasses.dataclass(frozen=True)
class Failure:
    """An outcome that is not an exception but still fails the command (a
    digest that differs): one line on stderr, exit status 1."""

    message: str
    kind: str


@dataclasses.dataclass(frozen=True)
class Result:
    """What a subcommand did.

    ``text`` is printed as it is; ``status`` is the exit status;
    ``failure``, when set, is also reported as an error. A command whose
    output is the data itself (``get``) has neither record nor text.
    """

    record: JsonValue
    text: str | None = None
    status: int = EXIT_OK
    failure: Failure | None = None


def emit(result: Result, output_format: str) -> int:
    """Print ``result`` in ``output_format`` and return its exit status."""
    if output_format == "json" and result.record is not None:
        print(json.dumps(result.record, sort_keys=True))
    elif result.text is not None:
        print(result.text)
    if result.failure is not None:
        emit_error(result.failure.message, result.failure.kind, output_format)
        return result.status or EXIT_FAILED
    return result.status


def emit_error(message: str, kind: str, output_format: str) -> None:
    """One line on stderr: ``fsstore: message``, or a JSON object."""
    message = " ".join(message.split("\n")).strip()
    if output_format == "json":
        line = json.dumps({"error": message, "type": kind}, sort_keys=True)
    else:
        # A usage error already names the (sub)command: "fsstore get: ...".
        line = message if message.startswith("fsstore") else f"fsstore: {message}"
    print(line, file=sys.stderr)


class Bar(Protocol):
    """What the command uses of a progress bar."""

    def update(self, n: float | None = 1) -> bool | None: ...

    def reset(self, total: float | None = None) -> None: ...

    def __enter__(self) -> Bar: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def progress(shown: bool | None, total: int | None, desc: str, unit: str = "B") -> Bar:
    """The progress bar on stderr: shown when asked, or on a terminal.

    A total of 0 or None is an unknown total (the bar counts without an ETA).
    """
    from tqdm import tqdm  # only when a command reads or writes data

    enabled = shown if shown is not None else sys.stderr.isatty()
    in_bytes = unit == "B"
    bar: Bar = tqdm(
        total=total or None,
        desc=desc,
        unit=unit,
        unit_scale=in_bytes,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )
    return bar


class _BinaryFile(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...

    def readinto(self, buffer: Any, /) -> int | None: ...


class CountingReader:
    """A file wrapper that reports each read to a progress bar."""

    def __init__(self, f: _BinaryFile, bar: Bar) -> None:
        self._f = f
        self._bar = bar

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._bar.update(len(chunk))
        return chunk

    def readinto(self, buffer: Any) -> int:
        # Lets the store read large images straight into its buffers.
        n = self._f.readinto(buffer) or 0
        self._bar.update(n)
        return n


def confirm(question: str) -> bool:
    """Ask ``question`` on stderr and read the answer from stdin: yes only
    for "y" or "yes"."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def when(epoch: float) -> str:
    """A time as the command shows it: in UTC, saying so."""
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def table(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> str:
    """Rows as aligned columns; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell
            if i == len(row) - 1
            else f"{cell:>{widths[i]}}"
            if i in right
            else f"{cell:<{widths[i]}}"
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)
