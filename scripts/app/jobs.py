"""The app's job queue: requests run one at a time, in the order they came, on one worker thread.

A job is ``queued`` (with its position: how many jobs are ahead of it, the running one
included), then ``running``, then ``done`` (its result) or ``failed`` (a one-line reason). A
:class:`~reelm.core.errors.ReelmError` is the user's to fix, so its message is the reason as
it stands; any other exception is logged with its traceback and reported in one line. The
queue knows nothing of what a job does: it calls ``run(job)`` and keeps what comes back.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from reelm.core.errors import ReelmError, one_line_reason

log = logging.getLogger("reelm.app")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(eq=False)
class Job:
    """One request and what became of it; ``result`` is what ``run`` returned, ``message`` the failure's reason."""

    id: str
    request: Any
    state: str = QUEUED
    message: str | None = None
    result: Any = None
    submitted: float = field(default_factory=time.time)
    seconds: float | None = None  # running time, once finished


class JobQueue:
    """A FIFO of jobs and the one thread that runs them (:meth:`start` it, :meth:`close` it)."""

    def __init__(self, run: Callable[[Job], Any]):
        self._run = run
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="reelm-app-worker", daemon=True)

    def start(self) -> JobQueue:
        self._thread.start()
        return self

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop after the running job (the waiting ones are dropped)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, request: Any) -> Job:
        with self._changed:
            if self._closed:
                raise ReelmError("the app is shutting down: no new jobs")
            job = Job(str(next(self._ids)), request)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._changed.notify_all()
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._changed:
            return list(self._jobs.values())

    def position(self, job: Job) -> int | None:
        """Jobs ahead of a queued one (the running job counts), or None once it has started."""
        with self._changed:
            if job.state != QUEUED:
                return None
            return self._waiting.index(job) + (self._running is not None)

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` is done or failed (True), or ``timeout`` seconds have passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: job.state in (DONE, FAILED), timeout)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closed)
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
                job.state = RUNNING
            began = time.perf_counter()
            try:
                result, state, message = self._run(job), DONE, None
            except ReelmError as exc:
                result, state, message = None, FAILED, one_line_reason(exc)
            except Exception as exc:  # a bug or the machine: the traceback goes to the log, one line to the page
                log.exception("job %s failed", job.id)
                result, state, message = None, FAILED, f"generation failed ({type(exc).__name__}: " \
                    f"{' '.join(one_line_reason(exc).split())[:200]}); the server's log has the details"
            with self._changed:
                job.result, job.message, job.seconds = result, message, time.perf_counter() - began
                job.state = state
                self._running = None
                self._changed.notify_all()
            log.info("job %s %s in %.1f s%s", job.id, state, job.seconds, f": {message}" if message else "")
