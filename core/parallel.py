"""Deadlines and the one deadline-aware parallel helper, shared by scoring and explaining."""
from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from llm.errors import DeadlineExceeded

T = TypeVar("T")
R = TypeVar("R")

# Time past the deadline we allow worker threads to report before giving up on
# them: the backend stops its own calls at the deadline, this covers the rest.
DEADLINE_GRACE = 0.25


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed before the simulation finished")


def run_parallel(
    fn: Callable[[T], R], items: Sequence[T], concurrency: int, deadline: float | None
) -> list[R]:
    """`fn` over `items` on at most `concurrency` threads, results in order.

    The first exception a job raises is raised here (BackendUnavailable,
    DeadlineExceeded: no point going on), and jobs not yet started are dropped.
    """
    if not items:
        return []
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(int(concurrency), len(items))), thread_name_prefix="simulate"
    )
    try:
        futures = [pool.submit(fn, item) for item in items]
        pending = set(futures)
        while pending:
            timeout = None
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic()) + DEADLINE_GRACE
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
            if not done:
                raise DeadlineExceeded("the request's deadline passed before the simulation finished")
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
        return [future.result() for future in futures]
    finally:
        # Threads still waiting on the backend end at the backend's own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
