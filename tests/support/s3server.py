"""A real S3-compatible HTTP server on 127.0.0.1 for the object-store tests: moto's S3 (the
``ThreadedMotoServer`` app) behind werkzeug's threaded server, with a switch that answers the
next requests of a method with a 5xx, as S3 does when it is busy (``503 SlowDown``).

It speaks the S3 wire protocol (SigV4, path-style addressing), so the code under test is the
production client. It is in memory and moto's state is per Python process: give each test its
own bucket (``new_bucket``).

    with s3_server() as s3:
        bucket = s3.new_bucket()
        s3.fail_next("PUT", 2)   # the next two PUTs answer 503
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

ACCESS_KEY = "chorus-test-access-key"
SECRET_KEY = "chorus-test-secret-never-shown"
REGION = "us-east-1"

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class S3Server:
    def __init__(self) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)
        self._lock = threading.Lock()
        self._fail: dict[str, tuple[int, int]] = {}  # method -> (how many more, status)
        #: (method, path, status) of every request, in order
        self.requests: list[tuple[str, str, int]] = []
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=MotoRequestHandler
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail_next(self, method: str, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests of ``method`` with ``status`` (before moto)."""
        with self._lock:
            self._fail[method] = (count, status)

    def count(self, method: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for m, _, s in self.requests
                       if m == method and (status is None or s == status))

    def new_bucket(self) -> str:
        name = f"chorus-{uuid.uuid4().hex[:12]}"
        r = httpx.put(f"{self.url}/{name}", timeout=10)  # moto takes an unsigned create
        r.raise_for_status()
        return name

    def _wsgi(self, environ, start_response):  # type: ignore[no-untyped-def]
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        with self._lock:
            left, status = self._fail.get(method, (0, 0))
            if left:
                self._fail[method] = (left - 1, status)
        if left:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                environ["wsgi.input"].read(length)  # keep the connection usable
            with self._lock:
                self.requests.append((method, path, status))
            start_response(f"{status} SlowDown", [
                ("Content-Type", "application/xml"), ("Content-Length", str(len(_SLOW_DOWN))),
            ])
            return [_SLOW_DOWN]

        def recording_start(status_line, headers, exc_info=None):  # type: ignore[no-untyped-def]
            with self._lock:
                self.requests.append((method, path, int(status_line.split()[0])))
            return start_response(status_line, headers, exc_info)

        return self._app(environ, recording_start)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3_env(server: S3Server, bucket: str, prefix: str = "audio") -> dict[str, str]:
    """The environment a Chorus process needs to keep its audio in ``bucket``."""
    return {
        "CHORUS_BLOB_URL": f"s3://{bucket}/{prefix}",
        "CHORUS_S3_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
