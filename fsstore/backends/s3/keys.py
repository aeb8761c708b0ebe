"""What an object key of the S3 store may be."""

from __future__ import annotations

from fsstore.store import image_id_problem


def key_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot be an object key of this store, or None.

    On top of every store's rules (image_id_problem): no ASCII control
    characters, which S3's XML responses cannot carry and which engines
    handle each their own way (a newline is refused as a missing object).

    :param image_id: the id of an add, or a key listed in the bucket
    """
    problem = image_id_problem(image_id)
    if problem is None and any(ord(c) < 32 or ord(c) == 127 for c in image_id):
        problem = f"image id {image_id!r} contains a control character"
    return problem
