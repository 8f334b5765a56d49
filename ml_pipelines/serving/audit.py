"""The audit trail: one JSON line per prediction, durable before the response.

Each process appends to its own file per day (<root>/<pipeline>/<day>/<host>-<pid>.jsonl),
so processes never contend. Within a process a writer thread group-commits: it
drains every record queued so far, writes them, fsyncs once and then releases
the waiting requests, so the hot path never waits behind a per-request lock.
A caller that waits for the fsync anyway (the gateway scoring an idle request, in its
scoring thread or on its event loop) writes its records itself (`write_here`), sparing
the two thread switches of the queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("ml_pipelines.serving")


class AuditWriter:
    def __init__(self, root: Path, pipeline: str):
        self.root = Path(root)
        self.pipeline = pipeline
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._handles: dict[str, Any] = {}  # day -> open file
        self._lock = threading.Lock()  # one writer at a time: the group-commit thread or write_here
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _path(self, day: str) -> Path:
        directory = self.root / self.pipeline / day
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{self.writer_id}.jsonl"

    def _append(self, batches: list[list[dict[str, Any]]]) -> None:
        """Write and fsync records (one write per day), one writer at a time."""
        lines: dict[str, list[str]] = {}
        for records in batches:
            for record in records:
                lines.setdefault(record["timestamp"][:10], []).append(_dumps(record) + "\n")
        with self._lock:
            for day, day_lines in lines.items():
                if day not in self._handles:
                    self._handles[day] = open(self._path(day), "a", encoding="utf-8")  # noqa: SIM115
                self._handles[day].write("".join(day_lines))
                self._handles[day].flush()
                os.fsync(self._handles[day].fileno())

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            error: BaseException | None = None
            try:
                self._append([records for records, _, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                error = exc
            # one wake-up per event loop for the whole batch, not one per request
            waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
            for _, loop, future in batch:
                if future is None:  # write_nowait: nobody waits
                    if error is not None:
                        log.error("audit records not written: %s", error)
                    continue
                waiting.setdefault(loop, []).append(future)
            for loop, futures in waiting.items():
                loop.call_soon_threadsafe(_settle_all, futures, error)

    async def write(self, records: list[dict[str, Any]]) -> None:
        """Returns once the records are on disk (fsynced)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((records, loop, future))
        await future

    def write_here(self, records: list[dict[str, Any]]) -> None:
        """Returns once the records are on disk (fsynced), written by the calling thread. On an event
        loop it blocks the loop meanwhile: only where that is meant (InlineRoute.quick)."""
        self._append([records])

    def write_nowait(self, records: list[dict[str, Any]]) -> None:
        """Queue records for the next group commit without waiting for it (shadow scores: off the reply path)."""
        self._queue.put((records, None, None))


_dumps = json.JSONEncoder(default=str).encode


def _settle_all(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat()
