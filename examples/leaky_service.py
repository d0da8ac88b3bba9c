"""A small service with one honest-looking leak of each common kind.

It reads its config files, starts a local TCP echo server and talks to it,
stores rows in sqlite3, runs a background worker thread and a helper
subprocess, then exits. Everything it touches is on 127.0.0.1 or in a
temporary directory. Run it under reclaim to see what it leaked::

    reclaim run examples/leaky_service.py

``examples/clean_service.py`` is the same program with every resource
handled right; ``reclaim run`` reports nothing for it.
"""

from __future__ import annotations

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

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.config: dict[str, object] = {}
        self.audit = None
        self.conn: socket.socket | None = None
        self.db: sqlite3.Connection | None = None
        self.jobs: queue.Queue[str] = queue.Queue()

    def load_config(self, paths: list[str]) -> None:
        for path in paths:
            # LEAK (file): opened without `with`, never closed.
            f = open(path, encoding="utf-8")  # noqa: SIM115 (the leak on purpose)
            self.config.update(json.load(f))
        # LEAK (file): the audit log stays open for the life of the service, and is never closed.
        self.audit = open(os.path.join(self.workdir, "audit.log"), "a", encoding="utf-8")  # noqa: SIM115
        self.audit.write("service started\n")

    def ping(self, address: tuple[str, int]) -> str:
        # LEAK (socket): the client connection is kept "for reuse" and never closed.
        self.conn = socket.create_connection(address, timeout=5)
        self.conn.sendall(b"ping\n")
        return self.conn.makefile("rb").readline().decode().strip()

    def store_orders(self, rows: list[tuple[int, str]]) -> int:
        # LEAK (sqlite3): the connection is never closed.
        self.db = sqlite3.connect(os.path.join(self.workdir, "orders.db"))
        self.db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        with self.db:
            self.db.executemany("INSERT INTO orders VALUES (?, ?)", rows)
        return int(self.db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def start_worker(self) -> None:
        # LEAK (thread): started and never stopped or joined (daemon, so the program still exits).
        threading.Thread(target=self._work, name="audit-flusher", daemon=True).start()

    def _work(self) -> None:
        while True:
            self.jobs.get()

    def warm_cache(self) -> None:
        # LEAK (subprocess): started and never waited for.
        subprocess.Popen([sys.executable, "-c", "pass"])


def main() -> int:
    # LEAK (tempdir): created and never cleaned up (the interpreter removes it at exit, silently).
    workdir = tempfile.TemporaryDirectory(prefix="orders-")
    service = Service(workdir.name)
    service.load_config(write_sample_config(workdir.name))
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
    service.jobs.put("flush")
    service.warm_cache()
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
