"""The filesystem store: images as files in prioritized data directories.

``store`` holds :class:`FilesystemStore` and its on-disk layout; beside it,
the helpers only it uses: ``config`` (its options and their parsing),
``datadirs`` (the data directories: choice, publish, the publish lock),
``staging`` (the file an image is written to before it is published),
``digests`` (digests kept as xattrs or record files) and ``timed`` (calls
that may hang on a dead mount, bounded in time).
"""

from fsstore.backends.filesystem.store import (
    OPTIONS,
    PUBLISH_LOCK,
    STAGING_DIR,
    DataDir,
    FilesystemStore,
)

__all__ = ["OPTIONS", "PUBLISH_LOCK", "STAGING_DIR", "DataDir", "FilesystemStore"]
