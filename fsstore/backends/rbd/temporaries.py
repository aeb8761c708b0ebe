"""Temporary images: how an add publishes, and how a crashed add is reaped.

The naming and liveness protocol, in the pool of the store::

    .fsstore-rbd-<32 hex>     an add in progress (or one that crashed)
          |  create (at the declared size, or growing), open: a watch
          |  write ... metadata_set(fsstore.digests) ... snap + protect
          |  create fsstore_claim.<id>, exclusive  <- one winner (see claims)
          |  rename, still open
          v
    <image id>                the published image, its snapshot ``snap``
                              protected, its digests in its metadata

* An image id never starts with the reserved prefix ``.fsstore-``, so no
  image collides with a temporary, and a location naming one is refused.
* A live writer is known by its **watch**: the writer keeps its temporary
  open (an open ``rbd.Image`` watches the image's header object) from just
  after ``create`` until after the ``rename``; the rename happens while it is
  still open, so under its temporary name the image is watched all along.
  When the writer's process dies, the OSD drops its watch after
  ``osd_client_watch_timeout`` (30 s by default).
* The reaper (a store's first connection, then an add every
  ``REAP_INTERVAL`` seconds) removes a temporary only when no client but
  itself watches it and it was created more than ``REAP_AGE``
  seconds ago.

Races, each handled where it can happen:

* *create-to-open*: between ``create`` and the writer's open the temporary
  has no watch; ``REAP_AGE`` (far longer than that step) keeps the reaper off
  it. A writer that loses its temporary anyway fails its add (NotFound on
  open is a BackendException), it never publishes part of an image.
* *two reapers*: both may judge one temporary dead; one removes it, the
  other's removal finds nothing (ImageNotFound) and moves on. A reaper that
  has it open is a watcher, so the other leaves it alone.
* *a dead writer's lingering watch*: its temporary is left until a later
  reap, after the watch expired.
* *two adds of one id*: both write their own temporary; the one that
  creates the claim object wins, the other is Duplicate and removes its
  temporary (the claims section below).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from typing import Any

from fsstore.backends.rbd.config import Bindings
from fsstore.store import RESERVED_PREFIX

LOG = logging.getLogger(__name__)

TEMPORARY_PREFIX = RESERVED_PREFIX + "rbd-"
#: Seconds a temporary is never reaped after it was created (the
#: create-to-open race), far longer than the step it covers.
REAP_AGE = 60
#: Seconds between a store's reaps after its first connection's: a store
#: that runs for weeks still removes what a crashed add left.
REAP_INTERVAL = 600
SNAPSHOT = "snap"


def temporary_name() -> str:
    """A fresh temporary image name, never an image id."""
    return TEMPORARY_PREFIX + uuid.uuid4().hex


def is_temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_PREFIX)


def remove_image(bindings: Bindings, ioctx: Any, name: str) -> None:
    """Remove image ``name``: unprotect and remove its snapshots, then the
    image. Raises what librbd raises (ImageNotFound, ImageBusy ...)."""
    rbd = bindings.rbd
    with rbd.Image(ioctx, name) as image:
        for snap in list(image.list_snaps()):
            if image.is_protected_snap(snap["name"]):
                image.unprotect_snap(snap["name"])
            image.remove_snap(snap["name"])
    rbd.RBD().remove(ioctx, name)


def discard(bindings: Bindings, ioctx: Any, name: str) -> None:
    """Remove an add's own temporary after it failed; logged, never raised
    (the add's own error is what the caller sees)."""
    try:
        remove_image(bindings, ioctx, name)
    except bindings.rbd.ImageNotFound:
        pass
    except Exception as exc:  # the reaper gets it later
        LOG.warning("could not remove temporary RBD image %s: %s", name, exc)


def reap(bindings: Bindings, ioctx: Any, instance_id: int) -> list[str]:
    """Remove the temporaries of crashed writers (see the module doc); the
    names removed.

    :param instance_id: this client's id (rados get_instance_id): its own
        watch, from opening a temporary to look at it, is not a writer's
    """
    rbd = bindings.rbd
    reaped = []
    for name in rbd.RBD().list(ioctx):
        if not is_temporary(name):
            continue
        try:
            with rbd.Image(ioctx, name) as image:
                if not _dead(image, instance_id):
                    continue
            remove_image(bindings, ioctx, name)
        except (rbd.ImageNotFound, rbd.ImageBusy):
            continue  # another reaper, or a writer after all
        except Exception as exc:
            LOG.warning("could not reap temporary RBD image %s: %s", name, exc)
            continue
        reaped.append(name)
    if reaped:
        LOG.info("reaped %d temporary RBD images of crashed adds", len(reaped))
    return reaped


def _dead(image: Any, instance_id: int) -> bool:
    """Whether no other client watches ``image`` and it is older than REAP_AGE."""
    if any(int(w["id"]) != instance_id for w in image.watchers_list()):
        return False
    created = image.create_timestamp()
    now = datetime.datetime.now()
    with contextlib.suppress(TypeError):  # aware vs naive: compare in UTC
        return bool((now - created).total_seconds() > REAP_AGE)
    return False


# -- claims: the one winner of an id ---------------------------------------
#
# librbd's rename is not atomic under concurrency (measured on 16.2.15: two
# concurrent renames of two images onto one free name both succeed, and one
# image is lost from the directory), so it cannot pick the winner. The
# winner is the add that creates the RADOS object ``fsstore_claim.<id>``
# exclusively (the OSD makes that atomic), holding its temporary's name,
# just before its rename; every other add of the id finds the claim and is
# Duplicate. A delete removes the image, then its claim.
#
# Race: a claim outlives a crashed add (between claim and rename) or
# delete (between the two removals). A claim is stale when neither its
# temporary nor the image exists, checked in that order (a rename in
# between is seen as the image); an add that finds a stale claim removes
# it, asserting the version it read (a second remover fails), and claims
# again. A claim whose temporary exists is a live add's, or a crashed one's
# until the reaper removes that temporary.

CLAIM_PREFIX = "fsstore_claim."


def claim_name(image_id: str) -> str:
    return CLAIM_PREFIX + image_id


def take_claim(bindings: Bindings, ioctx: Any, image_id: str, temporary: str) -> bool:
    """Claim ``image_id`` for ``temporary``; False when it is claimed (by a
    live add, or for an image that exists). A stale claim is broken."""
    rados = bindings.rados
    for _ in range(2):
        op = ioctx.create_write_op()
        try:
            op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
            op.write_full(temporary.encode())
            ioctx.operate_write_op(op, claim_name(image_id))
            return True
        except rados.ObjectExists:
            pass
        finally:
            ioctx.release_write_op(op)
        if not _break_stale(bindings, ioctx, image_id):
            return False
    return False


def _break_stale(bindings: Bindings, ioctx: Any, image_id: str) -> bool:
    """Remove the claim of ``image_id`` if it is stale; whether it was."""
    rados, rbd = bindings.rados, bindings.rbd
    try:
        holder = ioctx.read(claim_name(image_id)).decode()
        version = ioctx.get_last_version()
    except rados.ObjectNotFound:
        return True  # released meanwhile: claim again
    names = set(rbd.RBD().list(ioctx))
    if holder in names or image_id in names:
        return False
    op = ioctx.create_write_op()
    try:
        op.assert_version(version)
        op.remove()
        ioctx.operate_write_op(op, claim_name(image_id))
    except rados.Error:
        return False  # changed since read: another add's claim now
    finally:
        ioctx.release_write_op(op)
    return True


def release_claim(bindings: Bindings, ioctx: Any, image_id: str) -> None:
    """Remove the claim of ``image_id``, if any."""
    with contextlib.suppress(bindings.rados.ObjectNotFound):
        ioctx.remove_object(claim_name(image_id))
