"""The S3 store's bucket: found once before the first add, or created when
``s3_store_create_bucket_on_put`` allows it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fsstore import exceptions
from fsstore.backends.s3.errors import ErrorMapper, error_code, error_status

LOG = logging.getLogger(__name__)


class Bucket:
    """One bucket of one client; ``ensure()`` is cheap once it succeeded."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        store_name: str,
        host: str,
        create: bool,
        error: ErrorMapper,
    ) -> None:
        self.client, self.name = client, name
        self.store_name, self.host = store_name, host
        self.create = create
        self._error = error
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Raise BadStoreConfiguration when the bucket is missing and may
        not be created."""
        if self._ready:
            return
        with self._lock:  # Race: the first adds of several threads at once.
            if self._ready:
                return
            try:
                self.client.head_bucket(Bucket=self.name)
            except Exception as exc:
                if error_status(exc) != 404:
                    raise self._error(exc, f"bucket {self.name!r}") from None
                if not self.create:
                    raise exceptions.BadStoreConfiguration(
                        self.store_name,
                        f"bucket {self.name!r} does not exist on {self.host} "
                        "(create it, or set s3_store_create_bucket_on_put)",
                    ) from None
                self._create()
            self._ready = True

    def _create(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.name}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except Exception as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou",):
                raise self._error(exc, f"creating bucket {self.name!r}") from None
        LOG.info("created bucket %s on %s", self.name, self.host)
