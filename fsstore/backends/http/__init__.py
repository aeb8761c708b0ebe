"""The HTTP store: read-only access to images that web servers serve.

``store`` holds :class:`HttpStore` and its options; ``connection`` the
requests it makes, bounded in time, and the bodies they return.
"""

from fsstore.backends.http.store import OPTIONS, HttpStore

__all__ = ["OPTIONS", "HttpStore"]
