"""Where a route's blocking work (Kubernetes, DynamoDB) runs.

The local server answers many requests at once, so blocking work goes to the thread pool. A Lambda
instance answers one request at a time: there nothing else waits on the event loop, and each hop to
a thread and back costs about a millisecond of GIL hand-offs, so the work runs inline. The Lambda
handler marks its invocations with `inline_blocking_calls()` (a context variable: every task of the
invocation sees it, nothing else does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")

_inline: ContextVar[bool] = ContextVar("kubilitics_inline_blocking_calls", default=False)


@contextmanager
def inline_blocking_calls() -> Iterator[None]:
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


async def run_blocking(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    if _inline.get():
        return func(*args, **kwargs)
    return await run_in_threadpool(func, *args, **kwargs)
