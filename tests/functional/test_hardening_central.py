"""centralized_db under hostile settings and lost records.

No part of a database password ever reaches a message, whatever it holds;
records lost with a database or a node are rebuilt from the files before
anything is counted against the limit; the test database server runs from
any checkout.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fsstore.cache import central
from fsstore.cache.central import CentralDbDriver
from fsstore.exceptions import BadDriverConfiguration
from fsstore.testing.suite import payload
from tests.databases import PostgresServer
from tests.functional.test_cache_central import (
    NODE,
    central_cache,
    central_conf_file,
)
from tests.functional.test_cli import run
from tests.helpers import is_root

KiB = 1024

# Characters a password may hold: anything printable, '@' included.
PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"))


# -- no part of a password in any message ---------------------------------------


def fragments(secret: str, length: int = 4) -> set[str]:
    return {secret[i : i + length] for i in range(len(secret) - length + 1)}


@pytest.mark.parametrize(
    "password",
    [
        "p@ss-SECRET",  # '@' unescaped: the rest looked up as a host
        "a@b/SECRET?c#d:e@f",  # '@' and what ends an authority elsewhere
        "pw:SECRET@x",
        "hunter2/SECRET?x#y:z",  # no '@': all of it is the password
        "p%40ss-SECRET",  # escaped as it should be
        "pw$SECRETzq",  # '$': oslo.config's error named the rest of it
        "pw${SECRET}",
    ],
)
@pytest.mark.parametrize("output", [[], ["--format", "json"]])
def test_no_part_of_a_password_reaches_the_command_output(tmp_path, password, output):
    url = f"postgresql+psycopg2://glance:{password}@127.0.0.1:1/glance"
    conf = central_conf_file(tmp_path, url)
    done = run("--config-file", str(conf), *output, "cache", "list")
    shown = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, shown
    assert len(done.stderr.decode().splitlines()) == 1, shown
    assert "Traceback" not in shown
    secrets = fragments(password) | fragments(password.replace("%40", "@"))
    assert [s for s in secrets if s in shown] == [], shown


REFUSED = (
    "cache driver 'centralized_db' is misconfigured: [database] connection "
    "has an '@' that does not end its user name and password: write "
    "each '@' in them as %40"
)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://glance:p@ss-SECRET@db/glance",
        "mysql+pymysql://glance:p@ss:SECRET@db:3306/glance",
        "postgresql://glance:a/b@c@db/glance",
    ],
)
def test_an_unescaped_at_in_the_password_is_refused(tmp_path, url):
    with pytest.raises(BadDriverConfiguration) as caught:
        central_cache(tmp_path / "cache", url)
    assert str(caught.value) == REFUSED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=st.text(PRINTABLE, max_size=12),
    password=st.text(PRINTABLE, max_size=40),
    host=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    port=st.sampled_from(["", ":5432"]),
    database=st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True),
    # An '@' in the query would end the hidden part there (hiding more:
    # such a URL is refused anyway); see the test of over-hiding below.
    query=st.one_of(
        st.just(""),
        st.text(PRINTABLE.filter(lambda c: c != "@"), max_size=20).map("?{}".format),
    ),
)
@example(user="/", password="", host="0", port="", database="0", query="")
def test_shown_url_hides_all_of_the_credentials(
    user, password, host, port, database, query
):
    url = f"postgresql+psycopg2://{user}:{password}@{host}{port}/{database}{query}"
    assert (
        central.shown_url(url) == f"postgresql+psycopg2://***@{host}{port}/{database}"
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(password="$A")
@given(password=st.text(PRINTABLE, max_size=30))
def test_a_password_of_any_characters_leaves_the_message_the_same(tmp_path, password):
    # Nothing listens on port 1: the message is the one for an unreachable
    # server whatever the password (or the refusal, for one with an '@').
    # The driver's part of it has any text equal to the password hidden.
    def url(password: str) -> str:
        return f"postgresql+psycopg2://glance:{password}@127.0.0.1:1/glance"

    def message(password: str) -> str:
        # Written as oslo.config wants it ('$$' for '$'); the unescaped '$'
        # has a test of its own.
        with pytest.raises(BadDriverConfiguration) as caught:
            central_cache(tmp_path / "cache", url(password).replace("$", "$$"))
        return str(caught.value)

    if "@" in password:
        assert message(password) == REFUSED
        return
    head = (
        "cache driver 'centralized_db' is misconfigured: database "
        "postgresql+psycopg2://***@127.0.0.1:1/glance: "
    )
    unreachable = message("x")
    assert unreachable.startswith(head)
    reported = unreachable[len(head) :]
    secrets = central.secrets_of(url(password))
    assert message(password) == head + central.hide_secrets(reported, secrets)


def test_an_at_in_the_query_hides_more_never_less():
    url = "postgresql://glance:pw@db/glance?options=a@b"
    assert central.shown_url(url) == "postgresql://***@b"
    assert central.misplaced_at(url)


def test_a_password_a_database_driver_repeats_is_hidden():
    secrets = central.secrets_of(
        "postgresql://glance:s%2Fcr3t-pw@db/glance?password=other-pw"
    )
    text = "auth failed for s/cr3t-pw, s%2Fcr3t-pw and other-pw"
    assert central.hide_secrets(text, secrets) == "auth failed for ***, *** and ***"


def test_a_user_name_a_database_driver_repeats_is_hidden():
    """Nothing from :// to the last @ is shown: a driver's 'password
    authentication failed for user "..."' names the user."""
    secrets = central.secrets_of("postgresql://SECRET%2Duser:pw@db/glance")
    text = 'password authentication failed for user "SECRET-user"'
    assert central.hide_secrets(text, secrets) == (
        'password authentication failed for user "***"'
    )


# -- records lost with the database or the node ----------------------------------


class Database:
    """A database the cache's records live in, which a test can replace by
    a new, empty one of the same name."""

    def __init__(self, url: str, recreate: Callable[[], None]) -> None:
        self.url = url
        self.recreate = recreate


@pytest.fixture(
    params=["sqlite", "postgres", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        path = tmp_path / "glance.sqlite"
        return Database(f"sqlite:///{path}", path.unlink)
    server = request.getfixturevalue(request.param)
    name = f"l{uuid.uuid4().hex[:12]}"

    def recreate() -> None:
        server.drop_database(name)
        server.create_database(name)

    return Database(server.create_database(name), recreate)


LIMIT = 1000 * KiB
IMAGE = 400 * KiB


def image(image_id: str) -> bytes:
    return payload(IMAGE, seed=sum(image_id.encode()))


def cache_images(cache: Any, *image_ids: str) -> None:
    for image_id in image_ids:
        data = image(image_id)
        assert cache.cache_image_iter(image_id, iter([data]), md5_of(data))


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files_size(cache_dir: Path) -> int:
    return sum(
        p.stat().st_size for p in cache_dir.iterdir() if p.name in {"a", "b", "c"}
    )


def assert_rebuilt(cache: Any, cache_dir: Path) -> None:
    """The files cached before are recorded, and the limit holds."""
    listed = sorted((e.image_id, e.size) for e in cache.get_cached_images())
    assert listed == [("a", IMAGE), ("b", IMAGE)]
    assert cache.get_cache_size() == 2 * IMAGE
    cache_images(cache, "c")  # 1200 KiB with the others: one must go
    assert cache.get_cache_size() <= LIMIT
    assert files_size(cache_dir) <= LIMIT
    assert cache.check() == []


def test_a_recreated_database_is_rebuilt_from_the_files(tmp_path, database):
    cache_dir = tmp_path / "cache"
    first = central_cache(cache_dir, database.url, image_cache_max_size=LIMIT)
    cache_images(first, "a", "b")
    del first
    database.recreate()
    again = central_cache(cache_dir, database.url, image_cache_max_size=LIMIT)
    assert_rebuilt(again, cache_dir)


def test_a_new_node_records_the_files_it_finds(tmp_path, database):
    cache_dir = tmp_path / "cache"
    first = central_cache(cache_dir, database.url, image_cache_max_size=LIMIT)
    cache_images(first, "a", "b")
    renamed = central_cache(
        cache_dir,
        database.url,
        "http://renamed.example:9292",
        image_cache_max_size=LIMIT,
    )
    assert_rebuilt(renamed, cache_dir)


def test_a_node_registered_without_records_records_the_files(tmp_path):
    # Glance's own driver registers its node and never looks at the files.
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/glance.sqlite"
    cache_dir = tmp_path / "cache"
    cache_images(central_cache(cache_dir, url, image_cache_max_size=LIMIT), "a", "b")
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("DELETE FROM cached_images"))
    engine.dispose()
    assert_rebuilt(central_cache(cache_dir, url, image_cache_max_size=LIMIT), cache_dir)


def test_records_are_rebuilt_under_the_cache_lock(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/glance.sqlite"
    cache_dir = tmp_path / "cache"
    cache_images(central_cache(cache_dir, url, image_cache_max_size=LIMIT), "a", "b")
    os.unlink(tmp_path / "glance.sqlite")
    adopt = CentralDbDriver.adopt
    locked = []

    def adopt_checking_the_lock(self: Any, files: Any) -> None:
        fd = os.open(cache_dir / ".fsstore-cache.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked.append(False)
        except BlockingIOError:
            locked.append(True)
        finally:
            os.close(fd)
        adopt(self, files)

    monkeypatch.setattr(CentralDbDriver, "adopt", adopt_checking_the_lock)
    again = central_cache(cache_dir, url, image_cache_max_size=LIMIT)
    assert locked == [True]
    assert sorted(e.image_id for e in again.get_cached_images()) == ["a", "b"]


# -- the test database server from any checkout ---------------------------------


@pytest.mark.skipif(not is_root(), reason="the server runs as nobody only as root")
def test_the_database_server_runs_from_a_checkout_nobody_can_enter(
    tmp_path, monkeypatch
):
    # As root the server runs as nobody, who cannot enter a 0700 home or a
    # mktemp -d directory holding the checkout and its venv.
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations
    real = Path(next(iter(spec.submodule_search_locations)))
    hidden = tmp_path / "home"
    hidden.mkdir(mode=0o700)
    site = hidden / "site-packages"
    shutil.copytree(
        real / "pginstall",
        site / "pgserver" / "pginstall",
        symlinks=True,
        ignore=shutil.ignore_patterns("include"),
    )
    (site / "pgserver" / "__init__.py").write_text("")
    if (real.parent / "pgserver.libs").is_dir():
        shutil.copytree(real.parent / "pgserver.libs", site / "pgserver.libs")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "pgserver", raising=False)
    found = importlib.util.find_spec("pgserver")
    assert found is not None and found.submodule_search_locations
    assert list(found.submodule_search_locations) == [str(site / "pgserver")]

    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("hidden")
        cache = central_cache(tmp_path / "cache", url, NODE)
        data = image("a")
        assert cache.cache_image_iter("a", iter([data]), md5_of(data))
        assert [e.image_id for e in cache.get_cached_images()] == ["a"]
        postgres = Path(server._bin("postgres"))
        assert hidden not in postgres.parents
    finally:
        server.stop()
    assert not postgres.exists()  # the copy goes with the last server


def test_a_connection_that_substitutes_itself_is_refused_unshown(tmp_path):
    """oslo.config recurses without end on it; the refusal is the fixed
    line (no part of the URL), not a RecursionError."""
    url = "mysql+pymysql://SECRETuser:Zq${database.connection}@127.0.0.1:1/db"
    done = run("--config-file", str(central_conf_file(tmp_path, url)), "cache", "list")
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "connection cannot be read (not shown" in err, err
    assert "SECRET" not in err and "Zq" not in err
