"""`python -m ml_pipelines_tests.moto_server -H HOST -p PORT`: moto's S3 server, with a create
(a PUT with `If-None-Match: *`) made atomic, as S3 makes it.

moto 5 answers such a PUT by looking the key up and then writing it, with nothing holding other
requests off in between, and its server runs each request in a thread: two racing creates of one
key can both succeed. S3 guarantees that exactly one does, and the registry's alias log relies on
it (core.alias_log: one winner per move number). The racing-alias-moves test in test_registry
failed on this once in CI, with one move lost from the history. Here every object PUT holds one
lock across the lookup and the write.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable


def atomic(put_object: Callable) -> Callable:
    """S3Response.put_object, one request at a time."""
    lock = threading.Lock()

    @functools.wraps(put_object)
    def put_object_atomically(self):
        with lock:
            return put_object(self)

    return put_object_atomically


def main() -> None:
    from moto.s3.responses import S3Response
    from moto.server import main as serve

    S3Response.put_object = atomic(S3Response.put_object)
    serve()


if __name__ == "__main__":
    main()
