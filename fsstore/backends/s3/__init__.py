"""The S3 store: images as objects in one bucket of an S3 engine.

``store`` holds :class:`S3Store`; beside it, the helpers only it uses:
``config`` (its options and endpoint parsing), ``bucket`` (the bucket check),
``claim`` (the upload claim that gives one winner of racing adds),
``multipart`` (cutting a stream into parts), ``read`` (a body that resumes
with If-Match), ``digests`` (digest records and object metadata) and
``errors`` (engine errors mapped to fsstore's).
"""

from fsstore.backends.s3.store import OPTIONS, MiB, S3Store, key_problem

__all__ = ["OPTIONS", "MiB", "S3Store", "key_problem"]
