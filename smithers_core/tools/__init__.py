"""Built-in tools for tasks: ``from smithers_core.tools import bash``."""

from __future__ import annotations

from smithers_core.tools.bash import BashResult, bash, bash_async

__all__ = ["BashResult", "bash", "bash_async"]
