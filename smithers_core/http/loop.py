"""The event loop a serving process runs on: uvloop when installed, else asyncio's.

``$SMITHERS_LOOP=asyncio`` keeps asyncio's loop. Code inside an already running loop (tests,
``Gateway.listen`` from an application) runs on whatever loop the caller made.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
LOOP_ENV = "SMITHERS_LOOP"


def use_uvloop() -> bool:
    """True when uvloop is installed and ``$SMITHERS_LOOP`` does not ask for asyncio."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run`` on uvloop when :func:`use_uvloop`, else on asyncio's loop."""
    return anyio.run(func, *args, backend_options={"use_uvloop": use_uvloop()})


__all__ = ["LOOP_ENV", "run", "use_uvloop"]
