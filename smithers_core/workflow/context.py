"""What a render function and a task function see: ``Ctx`` and ``TaskContext``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from smithers_core.errors import SmithersError, validation_issues
from smithers_core.workflow.models import RunAuth

M = TypeVar("M", bound=BaseModel)


class Ctx:
    """The render context: input, run id, auth, and the run's persisted outputs (D4)."""

    __slots__ = ("_iterations", "_loop_iterations", "_outputs", "auth", "input", "run_id")

    def __init__(
        self,
        *,
        input: Any,
        run_id: str,
        auth: RunAuth | None,
        outputs: Mapping[tuple[str, int], Any],
        loop_iterations: Mapping[str, int] | None = None,
    ) -> None:
        self.input = input
        self.run_id = run_id
        self.auth = auth
        self._outputs = outputs
        self._loop_iterations = dict(loop_iterations or {})
        iterations: dict[str, list[int]] = {}
        for node_id, iteration in outputs:
            iterations.setdefault(node_id, []).append(iteration)
        self._iterations = iterations

    @overload
    def output(self, node_id: str, model: None = None, *, iteration: int = 0) -> Any: ...
    @overload
    def output(self, node_id: str, model: type[M], *, iteration: int = 0) -> M: ...
    def output(
        self, node_id: str, model: type[BaseModel] | None = None, *, iteration: int = 0
    ) -> Any:
        """The output of ``node_id`` (validated into ``model``) or ``MISSING_OUTPUT``."""
        key = (node_id, iteration)
        if key not in self._outputs:
            raise SmithersError(
                "MISSING_OUTPUT",
                f"No output for node {node_id!r} iteration {iteration}",
                {"nodeId": node_id, "iteration": iteration},
            )
        return _as_model(self._outputs[key], model, node_id)

    def output_maybe(
        self, node_id: str, model: type[BaseModel] | None = None, *, iteration: int = 0
    ) -> Any:
        """Like :meth:`output`, but None when there is no output yet."""
        key = (node_id, iteration)
        if key not in self._outputs:
            return None
        return _as_model(self._outputs[key], model, node_id)

    def latest(self, node_id: str, model: type[BaseModel] | None = None) -> Any:
        """The output of the highest iteration of ``node_id``, or None."""
        its = self._iterations.get(node_id)
        if not its:
            return None
        return _as_model(self._outputs[(node_id, max(its))], model, node_id)

    def iteration_count(self, node_id: str) -> int:
        """Iterations started by loop ``node_id``, or outputs written by node ``node_id``."""
        if node_id in self._loop_iterations:
            return self._loop_iterations[node_id]
        return len(self._iterations.get(node_id, ()))


def _as_model(value: Any, model: type[BaseModel] | None, node_id: str) -> Any:
    if model is None or value is None:
        return value
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise SmithersError(
            "INVALID_OUTPUT",
            f"Output of {node_id!r} does not match {model.__name__}",
            {"nodeId": node_id, "issues": validation_issues(exc)},
        ) from exc


class TaskContext:
    """What a task function receives as its first argument.

    ``allow_network``, ``tool_timeout_ms`` and ``max_output_bytes`` are the run's limits for
    tools such as :func:`smithers_core.tools.bash` (None: the tool's own default);
    ``unconfined_tools`` is the operator's opt-out of the tool's filesystem confinement.
    """

    def __init__(
        self,
        *,
        input: Any,
        run_id: str,
        node_id: str,
        iteration: int,
        attempt: int,
        auth: RunAuth | None,
        last_heartbeat: Any,
        allow_network: bool,
        on_heartbeat: Callable[[Any], None],
        on_log: Callable[[str, str], None],
        root_dir: str | None = None,
        tool_timeout_ms: int | None = None,
        max_output_bytes: int | None = None,
        unconfined_tools: bool = False,
        on_usage: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.input = input
        self.run_id = run_id
        self.node_id = node_id
        self.iteration = iteration
        self.attempt = attempt
        self.auth = auth
        self.last_heartbeat = last_heartbeat
        self.allow_network = allow_network
        self.root_dir = root_dir
        self.tool_timeout_ms = tool_timeout_ms
        self.max_output_bytes = max_output_bytes
        self.unconfined_tools = unconfined_tools
        self._on_heartbeat = on_heartbeat
        self._on_log = on_log
        self._on_usage = on_usage
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the attempt was cancelled or timed out (threads should stop)."""
        return self._cancelled.is_set()

    def mark_cancelled(self) -> None:
        """Tell the task its attempt was cancelled or timed out (sets :attr:`cancelled`)."""
        self._cancelled.set()

    def heartbeat(self, data: Any = None) -> None:
        """Record liveness (and a JSON checkpoint handed to the next attempt)."""
        self._on_heartbeat(data)

    def log(self, text: str, stream: str = "stdout") -> None:
        """Emit a ``NodeOutput`` line (``stream`` is ``stdout`` or ``stderr``)."""
        if stream not in ("stdout", "stderr"):
            raise SmithersError("INVALID_INPUT", "stream must be 'stdout' or 'stderr'")
        self._on_log(str(text), stream)

    def report_usage(
        self,
        *,
        model: str | None = None,
        agent: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        """Record the tokens a model call of this attempt used: a ``TokenUsageReported`` event
        (``token.usage`` on the gateway, listed by ``listRunTokenUsage``). Counts must be
        integers >= 0 (``INVALID_INPUT``)."""
        counts = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "cacheReadTokens": cache_read_tokens,
            "cacheWriteTokens": cache_write_tokens,
            "reasoningTokens": reasoning_tokens,
        }
        for name, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SmithersError("INVALID_INPUT", f"{name} must be an integer >= 0")
        for name, text in (("model", model), ("agent", agent)):
            if text is not None and not isinstance(text, str):
                raise SmithersError("INVALID_INPUT", f"{name} must be a string")
        fields: dict[str, Any] = {"model": model or "unknown", "agent": agent or "unknown"}
        fields.update(counts)
        if self._on_usage is not None:
            self._on_usage(fields)
