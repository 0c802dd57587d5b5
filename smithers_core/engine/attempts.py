"""Task attempts of one run: launching, heartbeats, calling the task, validating its output,
and recording the outcome.

:class:`Attempts` starts each attempt in the driver's task group under the task's timeout and
heartbeat watchdog, and commits its outcome in its own transaction (finished with its output,
failed and maybe retried, or cancelled), only while this process still owns the run. A settled
attempt leaves ``inflight`` and wakes the driver.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from pydantic import BaseModel, ValidationError

from smithers_core import jsonutil
from smithers_core.clock import now_ms
from smithers_core.engine.host import RunHost
from smithers_core.engine.render import Key
from smithers_core.engine.steps import Inflight, StartSpec, dump_output, model_name, schema_json
from smithers_core.engine.transitions import error_dict
from smithers_core.errors import SmithersError, validation_issues
from smithers_core.store import nodes, runs
from smithers_core.store.base import Tx
from smithers_core.store.events import node_event
from smithers_core.workflow.context import TaskContext
from smithers_core.workflow.models import RunAuth
from smithers_core.workflow.nodes import Task

log = logging.getLogger("smithers.engine")

Outcome = tuple[str, Any]  # ("ok", output) | ("fail", exception) | ("cancel", reason)


class Attempts:
    """The attempts a run has in flight in this process, and how each one runs."""

    def __init__(
        self,
        host: RunHost,
        run_id: str,
        input_value: BaseModel,
        auth: RunAuth | None,
        *,
        allow_network: bool,
        tool_timeout_ms: int | None,
        max_output_bytes: int | None,
        on_settled: Callable[[], None],
    ) -> None:
        self.host = host
        self.run_id = run_id
        self.input = input_value
        self.auth = auth
        self.allow_network = allow_network
        self.tool_timeout_ms = tool_timeout_ms
        self.max_output_bytes = max_output_bytes
        self.on_settled = on_settled
        self.inflight: dict[Key, Inflight] = {}
        # bumped whenever an attempt settles (leaves ``inflight``); the driver compares it
        # around its state read
        self.settled = 0

    def launch(self, tg: anyio.abc.TaskGroup, spec: StartSpec) -> None:
        """Start the attempt ``spec`` describes (its row is already committed) in ``tg``."""
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task)
        key = spec.pleaf.key
        hb = HeartbeatSink(self.host, self.run_id, key, spec.attempt)
        tctx = TaskContext(
            input=self.input,
            run_id=self.run_id,
            node_id=key[0],
            iteration=key[1],
            attempt=spec.attempt,
            auth=self.auth,
            last_heartbeat=spec.last_heartbeat,
            allow_network=self.allow_network,
            tool_timeout_ms=self.tool_timeout_ms,
            max_output_bytes=self.max_output_bytes,
            on_heartbeat=hb.heartbeat,
            on_log=hb.log,
            on_usage=hb.usage,
            root_dir=self.host.root_dir,
            unconfined_tools=self.host.unconfined_tools,
        )
        infl = Inflight(key, spec.attempt, anyio.CancelScope(), tctx)
        self.inflight[key] = infl
        tg.start_soon(self._attempt, spec, infl, hb)

    async def _attempt(self, spec: StartSpec, infl: Inflight, hb: HeartbeatSink) -> None:
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task)
        outcome: Outcome = ("cancel", None)
        timed_out = {"heartbeat": False}
        try:
            with infl.scope:
                try:
                    if leaf.timeout_ms:
                        with anyio.fail_after(leaf.timeout_ms / 1000):
                            result = await self._call(leaf, spec, infl, hb, timed_out)
                    else:  # no deadline: no cancel scope to enter and leave
                        result = await self._call(leaf, spec, infl, hb, timed_out)
                    if timed_out["heartbeat"]:
                        raise SmithersError(
                            "TASK_HEARTBEAT_TIMEOUT",
                            f"Task {leaf.id!r} sent no heartbeat for"
                            f" {leaf.heartbeat_timeout_ms} ms",
                        )
                    if "error" in result:
                        raise result["error"]
                    outcome = ("ok", validate_output(leaf, result["value"]))
                except TimeoutError:
                    infl.tctx.mark_cancelled()
                    outcome = (
                        "fail",
                        SmithersError(
                            "TASK_TIMEOUT", f"Task {leaf.id!r} timed out after {leaf.timeout_ms} ms"
                        ),
                    )
                except Exception as exc:
                    outcome = ("fail", exc)
            if infl.scope.cancelled_caught or infl.reason is not None:
                outcome = ("cancel", infl.reason or "aborted")
            with anyio.CancelScope(shield=True):
                await self._record_outcome(spec, outcome)
        finally:
            self.inflight.pop(infl.key, None)
            self.settled += 1
            self.on_settled()

    async def _call(
        self,
        leaf: Task,
        spec: StartSpec,
        infl: Inflight,
        hb: HeartbeatSink,
        timed_out: dict[str, bool],
    ) -> dict[str, Any]:
        """The task's ``value`` or ``error``; with a heartbeat timeout, under its watchdog
        (a task group only then: it costs a task and two cancel scopes per attempt)."""
        result: dict[str, Any] = {}
        if not leaf.heartbeat_timeout_ms:
            try:
                result["value"] = await call_task(leaf, infl.tctx, spec.deps)
            except Exception as exc:
                result["error"] = exc
            return result
        async with anyio.create_task_group() as inner:
            inner.start_soon(self._watchdog, leaf, infl, hb, inner, timed_out)
            try:
                result["value"] = await call_task(leaf, infl.tctx, spec.deps)
            except Exception as exc:  # raised here, it would become a group
                result["error"] = exc
            inner.cancel_scope.cancel()
        return result

    async def _watchdog(
        self,
        leaf: Task,
        infl: Inflight,
        hb: HeartbeatSink,
        inner: anyio.abc.TaskGroup,
        flag: dict[str, bool],
    ) -> None:
        limit = int(leaf.heartbeat_timeout_ms or 0)
        while True:
            due = hb.last_beat_ms + limit
            now = now_ms()
            if now >= due:
                break
            await anyio.sleep((due - now) / 1000)
        flag["heartbeat"] = True
        infl.tctx.mark_cancelled()
        run_id, key, attempt, last = self.run_id, infl.key, infl.attempt, hb.last_beat_ms

        def change(tx: Tx) -> None:
            tx.emit(
                run_id,
                "TaskHeartbeatTimeout",
                **node_event(key, attempt=attempt, lastHeartbeatAtMs=last, timeoutMs=limit),
            )

        await self.host.store.write(change)
        inner.cancel_scope.cancel()

    async def _record_outcome(self, spec: StartSpec, outcome: Outcome) -> None:
        kind, value = outcome
        if kind == "cancel" and value == "lost":
            return
        leaf = spec.pleaf.leaf
        assert isinstance(leaf, Task)
        key, attempt, run_id = spec.pleaf.key, spec.attempt, self.run_id
        owner_id = self.host.owner_id
        retries = leaf.retries
        model = leaf.output

        def change(tx: Tx) -> None:
            state = nodes.attempt_state(tx.conn, run_id, key, attempt)
            owner = runs.run_owner(tx.conn, run_id)
            if state != "in-progress" or owner is None or owner[0] != owner_id:
                return
            if kind == "ok":
                nodes.finish_with_output(
                    tx,
                    run_id,
                    key,
                    attempt,
                    value,
                    output_table=model_name(model),
                    schema_json=schema_json(model),
                )
            elif kind == "fail":
                err = error_dict(value)
                nodes.settle_attempt(tx, run_id, key, attempt, "failed", error=err)
                n_failed = nodes.failed_attempt_count(tx.conn, run_id, key)
                details = err.get("details") or {}
                retryable = details.get("failureRetryable", True) is not False
                retry = retryable and n_failed < retries + 1
                nodes.set_node(tx, run_id, key[0], key[1], "pending" if retry else "failed")
                tx.emit(run_id, "NodeFailed", **node_event(key, attempt=attempt, error=err))
                if retry:
                    tx.emit(run_id, "NodeRetrying", **node_event(key, attempt=attempt + 1))
            else:
                reason = str(value)
                nodes.cancel_attempt(tx, run_id, key, attempt, reason)
                # shutdown hands the node back (D6); aborted and unmounted attempts are
                # cancelled (a remounted node still starts again, not counted as a failure)
                state = "pending" if reason == "shutdown" else "cancelled"
                nodes.set_node(tx, run_id, key[0], key[1], state)
                tx.emit(run_id, "NodeCancelled", **node_event(key, attempt=attempt, reason=reason))

        try:
            await self.host.store.write(change)
        except Exception:
            log.exception("run %s: could not record the outcome of %s", run_id, key)


async def call_task(leaf: Task, tctx: TaskContext, deps: dict[str, Any]) -> Any:
    """Call the task function (a coroutine on the loop, anything else in a worker thread)
    with its context and dependency outputs; a task without one returns its ``value``."""
    if leaf.fn is None:
        return leaf.value
    fn = leaf.fn
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    ):
        return await fn(tctx, **deps)
    value = await anyio.to_thread.run_sync(
        functools.partial(fn, tctx, **deps), abandon_on_cancel=True
    )
    if inspect.isawaitable(value):
        value = await value
    return value


def validate_output(leaf: Task, value: Any) -> Any:
    """The task's return value as JSON data, checked against its output model
    (``INVALID_OUTPUT``, not retryable, when it does not fit)."""
    model = leaf.output
    if model is None:
        try:
            jsonutil.dumps(dump_output(value))
        except (TypeError, ValueError) as exc:
            raise SmithersError(
                "INVALID_OUTPUT",
                f"Task {leaf.id!r} returned a value that is not JSON: {exc}",
                {"failureRetryable": False},
            ) from exc
        return dump_output(value)
    if isinstance(value, model):
        return value.model_dump(mode="json", by_alias=True)
    try:
        data = (
            value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else value
        )
        return model.model_validate(data).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        raise SmithersError(
            "INVALID_OUTPUT",
            f"Output of task {leaf.id!r} does not match {model.__name__}",
            {
                "failureRetryable": False,
                "issues": validation_issues(exc),
            },
        ) from exc


class HeartbeatSink:
    """Receives ``heartbeat()`` and ``log()`` calls from a task (any thread) and queues their
    writes; heartbeats are written at most once per ``task_heartbeat_throttle_ms``."""

    def __init__(self, host: RunHost, run_id: str, key: Key, attempt: int) -> None:
        self.host = host
        self.run_id = run_id
        self.key = key
        self.attempt = attempt
        self.last_beat_ms = now_ms()
        self.last_write_ms = 0

    def heartbeat(self, data: Any = None) -> None:
        """Note liveness; store ``data`` (JSON, size-capped) as the attempt's checkpoint."""
        opts = self.host.options
        encoded = None
        if data is not None:
            try:
                encoded = jsonutil.dumps(dump_output(data))
            except (TypeError, ValueError) as exc:
                raise SmithersError(
                    "INVALID_HEARTBEAT",
                    f"Heartbeat data must be JSON: {exc}",
                    {"failureRetryable": False},
                ) from exc
            if len(encoded.encode()) > opts.task_heartbeat_max_bytes:
                raise SmithersError(
                    "INVALID_HEARTBEAT",
                    f"Heartbeat data is larger than {opts.task_heartbeat_max_bytes} bytes",
                    {"failureRetryable": False},
                )
        now = now_ms()
        self.last_beat_ms = now
        if now - self.last_write_ms < opts.task_heartbeat_throttle_ms and self.last_write_ms:
            return
        interval = now - self.last_write_ms if self.last_write_ms else None
        self.last_write_ms = now
        run_id, key, attempt = self.run_id, self.key, self.attempt
        size = len(encoded.encode()) if encoded is not None else 0

        def change(tx: Tx) -> None:
            if nodes.heartbeat_attempt(tx, run_id, key, attempt, encoded):
                fields: dict[str, Any] = {
                    "attempt": attempt,
                    "hasData": encoded is not None,
                    "dataSizeBytes": size,
                }
                if interval is not None:
                    fields["intervalMs"] = interval
                tx.emit(run_id, "TaskHeartbeat", **node_event(key, **fields))

        self.host.store.submit(change)

    def usage(self, fields: dict[str, Any]) -> None:
        """Emit one ``TokenUsageReported`` event of the attempt (``TaskContext.report_usage``)."""
        run_id, key, attempt = self.run_id, self.key, self.attempt

        def change(tx: Tx) -> None:
            tx.emit(run_id, "TokenUsageReported", **node_event(key, attempt=attempt, **fields))

        self.host.store.submit(change)

    def log(self, text: str, stream: str) -> None:
        """Emit one ``NodeOutput`` line of the attempt."""
        run_id, key, attempt = self.run_id, self.key, self.attempt

        def change(tx: Tx) -> None:
            tx.emit(
                run_id, "NodeOutput", **node_event(key, attempt=attempt, text=text, stream=stream)
            )

        self.host.store.submit(change)
