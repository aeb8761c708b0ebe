"""What an image id and a declared size may be: the checks every store
applies before a call reaches its driver."""

from __future__ import annotations

from fsstore import exceptions

# Image ids with this prefix are reserved for the stores' own files (staging
# files, lock files), so that no image can ever collide with one of them.
RESERVED_PREFIX = ".fsstore-"
MAX_IMAGE_ID_BYTES = 255


def image_id_problem(image_id: object) -> str | None:
    """Why ``image_id`` is not safe as a single file name, or None if it is.

    Refused: non-strings, the empty string, more than 255 bytes of UTF-8,
    ``/`` or NUL, ``.`` and ``..``, and the reserved prefix ``.fsstore-``.

    :param image_id: anything a caller gave as an id
    """
    if not isinstance(image_id, str):
        return f"image id must be a string, not {type(image_id).__name__}"
    if not image_id:
        return "image id must not be empty"
    if "/" in image_id or "\0" in image_id:
        return f"image id {image_id!r} contains '/' or a NUL byte"
    if image_id in (".", ".."):
        return f"image id {image_id!r} is not allowed"
    if image_id.startswith(RESERVED_PREFIX):
        return f"image id {image_id!r} uses the reserved prefix {RESERVED_PREFIX!r}"
    if image_id.isascii():
        size = len(image_id)
    else:
        try:
            size = len(image_id.encode("utf-8"))
        except UnicodeEncodeError:
            return f"image id {image_id!r} is not valid UTF-8"
    if size > MAX_IMAGE_ID_BYTES:
        return f"image id is {size} bytes long; the limit is {MAX_IMAGE_ID_BYTES}"
    return None


def validate_image_id(image_id: object) -> str:
    """``image_id``, if it is safe as a single file name (image_id_problem).

    :raises Invalid: saying why it is not, before anything touches a disk
    """
    problem = image_id_problem(image_id)
    if problem is not None:
        raise exceptions.Invalid(problem)
    return image_id  # type: ignore[return-value]


def validate_size(size: object) -> int:
    """``size``, if an add may declare it (an int >= 0, not a bool); else Invalid."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise exceptions.Invalid(f"image size must be an integer >= 0, not {size!r}")
    return size
