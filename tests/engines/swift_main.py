"""A one-node OpenStack Swift with its S3 API, in one process.

Run by tests/engines/swift_cluster.py with the Swift venv's Python:

    python swift_main.py STATE_DIR LISTEN_FD ACCOUNT USER KEY

The account, container and object servers and the proxy (with the s3api and
tempauth middlewares) are Swift's own WSGI applications, each served by
eventlet on a loopback socket of its own; the rings (one replica, one
device) are built here for the ports those sockets got. The proxy serves on
LISTEN_FD, a listening socket the parent bound and passed on, so that the
parent's first request waits in its backlog until the proxy serves: that
round trip is the readiness check. State (devices with user xattrs, the
configuration, the rings) lives in STATE_DIR. SIGTERM ends the process.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import eventlet

eventlet.monkey_patch(all=False, socket=True, select=True, thread=True, time=True)

import eventlet.wsgi  # noqa: E402
from swift.common import utils  # noqa: E402
from swift.common.ring import RingBuilder  # noqa: E402
from swift.common.storage_policy import reload_storage_policies  # noqa: E402
from swift.common.wsgi import loadapp  # noqa: E402

STORAGE_DOMAIN = "localhost"

SWIFT_CONF = """
[swift-hash]
swift_hash_path_suffix = fsstore-tests
swift_hash_path_prefix = fsstore-tests

[storage-policy:0]
name = one-replica
default = yes
"""

SERVER_CONF = """
[DEFAULT]
devices = {devices}
mount_check = false
swift_dir = {etc}
log_level = WARNING
workers = 0

[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{name}
"""

PROXY_CONF = """
[DEFAULT]
swift_dir = {etc}
log_level = WARNING
workers = 0

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:s3api]
use = egg:swift#s3api
storage_domain = {domain}
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_{account}_{user} = {key} .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
"""


def build_ring(path: Path, port: int) -> None:
    builder = RingBuilder(part_power=6, replicas=1, min_part_hours=0)
    builder.add_dev(
        {
            "id": 0,
            "region": 1,
            "zone": 1,
            "ip": "127.0.0.1",
            "port": port,
            "device": "d0",
            "weight": 100,
        }
    )
    builder.rebalance()
    builder.get_ring().save(str(path))


def main(state: Path, listen_fd: int, account: str, user: str, key: str) -> None:
    etc, devices = state / "etc", state / "devices"
    etc.mkdir(parents=True, exist_ok=True)
    (devices / "d0").mkdir(parents=True, exist_ok=True)
    (etc / "swift.conf").write_text(SWIFT_CONF)
    utils.set_swift_dir(str(etc))
    reload_storage_policies()

    servers = []
    for name in ("account", "container", "object"):
        sock = eventlet.listen(("127.0.0.1", 0))
        build_ring(etc / f"{name}.ring.gz", sock.getsockname()[1])
        conf = etc / f"{name}-server.conf"
        conf.write_text(SERVER_CONF.format(devices=devices, etc=etc, name=name))
        servers.append((sock, conf))
    proxy_conf = etc / "proxy-server.conf"
    proxy_conf.write_text(
        PROXY_CONF.format(
            etc=etc, domain=STORAGE_DOMAIN, account=account, user=user, key=key
        )
    )
    proxy_sock = eventlet.greenio.GreenSocket(socket.socket(fileno=listen_fd))
    servers.append((proxy_sock, proxy_conf))

    pool = eventlet.GreenPool()
    for sock, conf in servers:
        app = loadapp(str(conf))
        pool.spawn(
            eventlet.wsgi.server,
            sock,
            app,
            log_output=False,
            max_size=1000,
            # Swift's servers expect HTTP/1.1 keep-alive and large headers.
            protocol=eventlet.wsgi.HttpProtocol,
        )
    pool.waitall()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6])
