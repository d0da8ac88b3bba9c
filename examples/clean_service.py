"""The twin of ``leaky_service.py`` with every resource handled right.

Same work: read config files, talk to a local TCP echo server, store rows in
sqlite3, run a worker thread and a helper subprocess. Each resource is
released on every path, so ``reclaim run examples/clean_service.py``
reports no leaks.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
from typing import TextIO

_STOP = "stop"


class EchoHandler(socketserver.StreamRequestHandler):
    """Answers one line with the same line."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def write_sample_config(directory: str) -> list[str]:
    """Write the config files a deployment would ship."""
    paths = []
    for name, settings in {
        "service.json": {"name": "orders", "workers": 1},
        "database.json": {"table": "orders"},
    }.items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(settings, f)
        paths.append(path)
    return paths


class Service:
    """Loads config, keeps an audit log, talks to the echo server, stores orders."""

    def __init__(self, workdir: str, audit: TextIO) -> None:
        self.workdir = workdir
        self.audit = audit
        self.config: dict[str, object] = {}
        self.jobs: queue.Queue[str] = queue.Queue()
        self.worker: threading.Thread | None = None

    def load_config(self, paths: list[str]) -> None:
        for path in paths:
            with open(path, encoding="utf-8") as f:
                self.config.update(json.load(f))
        self.audit.write("service started\n")

    def ping(self, address: tuple[str, int]) -> str:
        with (
            socket.create_connection(address, timeout=5) as conn,
            conn.makefile("rb") as reader,
        ):
            conn.sendall(b"ping\n")
            return reader.readline().decode().strip()

    def store_orders(self, rows: list[tuple[int, str]]) -> int:
        # sqlite3's own `with` commits or rolls back but does not close: closing() closes.
        with contextlib.closing(sqlite3.connect(os.path.join(self.workdir, "orders.db"))) as db:
            db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
            with db:
                db.executemany("INSERT INTO orders VALUES (?, ?)", rows)
            return int(db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def start_worker(self) -> None:
        self.worker = threading.Thread(target=self._work, name="audit-flusher")
        self.worker.start()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.jobs.put(_STOP)
            self.worker.join()

    def _work(self) -> None:
        while self.jobs.get() != _STOP:
            pass

    def warm_cache(self) -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="orders-") as workdir,
        open(os.path.join(workdir, "audit.log"), "a", encoding="utf-8") as audit,
    ):
        service = Service(workdir, audit)
        service.load_config(write_sample_config(workdir))
        print(f"loaded config for {service.config['name']!r}")

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
        server_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="echo-server"
        )
        server_thread.start()
        try:
            print(f"echo server says {service.ping(server.server_address[:2])!r}")
        finally:
            server.shutdown()
            server.server_close()
            server_thread.join()

        count = service.store_orders([(1, "coffee"), (2, "tea"), (3, "cake")])
        print(f"stored {count} orders")
        service.start_worker()
        try:
            service.jobs.put("flush")
            service.warm_cache()
        finally:
            service.stop_worker()
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
