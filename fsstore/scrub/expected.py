"""Expected digests for a scrub, from a file: JSON (a list of objects) or
CSV (a header row), with the columns of Glance's ``images`` table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from fsstore import exceptions
from fsstore.hashing import DEFAULT_HASHING_ALGO, Expected, InvalidExpected, shown
from fsstore.store import image_id_problem


class _BadRow(Exception):
    """Why one row of an expected-digests file is not usable."""


def load_expected(path: Path) -> dict[str, Expected]:
    """Expected digests by image id, with the columns of Glance's ``images``
    table: ``id``, ``checksum``, ``multihash`` or ``os_hash_value``,
    ``hashing_algo`` or ``os_hash_algo`` (default sha512). The whole file
    is checked before it is returned, so that a scrub never stops at the
    image of a bad row after reading the ones before it: anything
    unusable is Invalid, in one line naming the file and the row.

    :param path: UTF-8 text: CSV with a header row when its name ends in
        ``.csv`` (in any case), else JSON (a list of objects).
    """
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise exceptions.Invalid(f"cannot read {path}: {exc.strerror}") from None

    def unusable(why: str) -> exceptions.Invalid:
        return exceptions.Invalid(f"expected digests in {path} are not usable: {why}")

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise unusable(f"byte {exc.start} is not UTF-8 text") from None
    if path.suffix.lower() == ".csv":
        rows: Iterable[object] = _csv_rows(text)
    else:
        try:
            rows = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except _BadRow as exc:
            raise unusable(str(exc)) from None
        except RecursionError:
            raise unusable("JSON nested too deeply") from None
        except ValueError as exc:
            raise unusable(f"not JSON ({exc})") from None
        if not isinstance(rows, list):
            raise unusable("not a list of images")
    found: dict[str, Expected] = {}
    numbered = enumerate(rows, 1)
    n = 1
    try:
        for n, row in numbered:
            image_id, wanted = _expected(row)
            if found.setdefault(image_id, wanted) != wanted:
                raise _BadRow(
                    f"image {shown(image_id)} is listed before with other digests"
                )
            n += 1  # a CSV row that does not parse is the next one
    except (_BadRow, csv.Error) as exc:
        raise unusable(f"row {n}: {exc}") from None
    return found


def _csv_rows(text: str) -> Iterator[dict[str | None, object]]:
    # The header is not a row: rows count from the first below it.
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = reader.fieldnames or []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # DictReader keeps the last of two columns of one name.
        raise _BadRow(f"the header has column {shown(repeated[0])} twice")
    yield from reader


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a key given twice (json keeps the last)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _BadRow(f"field {shown(repeated[0])} is given twice in one object")
    return dict(pairs)


def _field(row: dict[Any, object], *names: str) -> tuple[str, object]:
    """The first of ``names`` that ``row`` gives a value (an empty CSV cell
    gives none), with that value; two that differ are a bad row."""
    given = [(name, row[name]) for name in names if row.get(name) not in (None, "")]
    if len({json.dumps(value, sort_keys=True) for _, value in given}) > 1:
        (first, _), (second, _) = given[:2]
        raise _BadRow(f"{first} and {second} differ")
    return given[0] if given else (names[0], None)


#: The fields a row of expected digests may have: a misspelt one would
#: otherwise drop its digest silently, and the image be called ok unchecked.
EXPECTED_FIELDS = frozenset(
    {"id", "checksum", "multihash", "os_hash_value", "hashing_algo", "os_hash_algo"}
)
#: The other columns of Glance's ``images`` table, so that a whole row of it
#: (``SELECT * FROM images``) loads; they are not read.
GLANCE_IMAGE_COLUMNS = frozenset(
    {
        "name", "size", "status", "created_at", "updated_at", "deleted_at",
        "deleted", "disk_format", "container_format", "owner", "min_disk",
        "min_ram", "protected", "virtual_size", "visibility", "os_hidden",
    }
)  # fmt: skip


def _expected(row: object) -> tuple[str, Expected]:
    if not isinstance(row, dict):
        raise _BadRow(f"{shown(row)} is not an object with an id")
    if None in row:  # csv.DictReader's key for cells beyond the header
        raise _BadRow("it has more cells than the header has columns")
    if any(value is None for value in row.values()):
        # DictReader's value for columns a short row lacks (an empty cell
        # is ""): its digests would be dropped and the image called ok.
        raise _BadRow("it has fewer cells than the header has columns")
    unknown = sorted(
        str(k)
        for k in row
        if k not in EXPECTED_FIELDS and k not in GLANCE_IMAGE_COLUMNS
    )
    if unknown:
        raise _BadRow(
            f"unknown field {shown(unknown[0])} (known: "
            f"{', '.join(sorted(EXPECTED_FIELDS))})"
        )
    image_id = row.get("id")
    if image_id is None or image_id == "":
        raise _BadRow("it has no id")
    problem = image_id_problem(image_id)
    if problem is not None:
        raise _BadRow(f"id {shown(image_id)}: {problem}")
    assert isinstance(image_id, str)
    algo_name, algo = _field(row, "hashing_algo", "os_hash_algo")
    checksum_name, checksum = _field(row, "checksum")
    multihash_name, multihash = _field(row, "multihash", "os_hash_value")
    try:
        # Expected checks each value, whatever the file gave: cast, not assert.
        wanted = Expected(
            cast("str | None", checksum),
            cast("str | None", multihash),
            DEFAULT_HASHING_ALGO if algo is None else cast(str, algo),
        )
    except InvalidExpected as exc:
        named = {
            "hashing_algo": algo_name,
            "checksum": checksum_name,
            "multihash": multihash_name,
        }.get(exc.field, exc.field)
        raise _BadRow(f"image {shown(image_id)}: {named} {exc.problem}") from None
    return image_id, wanted
