"""``POST /webhooks/<key>``: a public route authenticated only by the delivery's signature.

The steps follow reference 9.4: find the registration, check its config, read the body (at
most the gateway's ``max_body_bytes``), verify the signature, parse the JSON, then deliver the
configured signal to every run waiting for it, or, when none was delivered and run creation
is on, start a run. Beyond upstream, a delivery id (GitHub's ``x-github-delivery``, Standard
Webhooks' ``webhook-id`` or a configured header) is claimed durably first: a repeat answers
200 with ``duplicate: true`` and does nothing, also across gateways sharing the store.

Every failure is ``{ok: false, error: {code, message}}`` with its status, counted in
``webhooks_rejected`` with a reason; a gateway token is neither needed nor looked at.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from smithers_core.contributions import HostContext
from smithers_core.errors import SmithersError
from smithers_core.gateway.limits import validate_rpc_input
from smithers_core.gateway.wire import status_for_code, translate
from smithers_core.http.body import parse_json, read_body
from smithers_core.http.errors import HttpError
from smithers_core.ids import clip
from smithers_core.registrations import Registration, WebhookOption
from smithers_core.store import webhooks
from smithers_core.workflow.models import RunAuth
from smithers_webhooks.paths import MISSING, at, id_at
from smithers_webhooks.signatures import delivery_header, delivery_path, verify


class Rejected(Exception):
    """A refused delivery: the error to answer and the metric reason."""

    def __init__(self, error: SmithersError, reason: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.reason = reason


def _error(code: str, message: str, reason: str, details: dict[str, Any] | None = None) -> Rejected:
    return Rejected(SmithersError(code, message, details), reason)


class WebhookReceiver:
    """The endpoint over one gateway's host context."""

    def __init__(self, host: HostContext) -> None:
        self.host = host

    async def __call__(self, request: Request) -> JSONResponse:
        host = self.host
        host.count("webhooks_received")
        try:
            body = await self._handle(request)
        except Rejected as exc:
            host.count("webhooks_rejected", reason=exc.reason)
            return self._failure(exc.error)
        except SmithersError as exc:  # the run service's: input or signal payload refused ...
            error = translate(exc)
            client = status_for_code(error.code) < 500
            host.count("webhooks_rejected", reason="invalid_payload" if client else "server_error")
            return self._failure(error)
        except Exception:
            host.count("webhooks_rejected", reason="server_error")
            return self._failure(SmithersError("SERVER_ERROR", "Webhook handling failed"))
        return JSONResponse(body)

    @staticmethod
    def _failure(exc: SmithersError) -> JSONResponse:
        status = exc.status if isinstance(exc, HttpError) else status_for_code(exc.code)
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.details:
            error.update({k: v for k, v in exc.details.items() if k not in error})
        headers = exc.headers if isinstance(exc, HttpError) else None
        return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)

    def _registration(self, key: str) -> tuple[Registration, WebhookOption]:
        reg = self.host.registrations.get(key)
        shown = clip(key)
        if reg is None:
            raise _error("NOT_FOUND", f"Unknown workflow: {shown}", "workflow_not_found")
        option = reg.webhook
        if option is None:
            raise _error(
                "NOT_FOUND", f"Webhook not configured for workflow: {shown}", "not_configured"
            )
        if not [s for s in option.all_secrets() if s.strip()]:
            raise _error("SERVER_ERROR", "Webhook secret is not configured", "misconfigured")
        run_on = option.run is None or option.run.enabled
        if (option.signal is None or not option.signal.name) and not run_on:
            raise _error(
                "INVALID_REQUEST",
                "Webhook config must enable signal delivery or run creation",
                "misconfigured",
            )
        return reg, option

    async def _handle(self, request: Request) -> dict[str, Any]:
        host = self.host
        key = str(request.path_params["key"])
        reg, option = self._registration(key)
        limit = host.options.get("max_body_bytes")
        try:
            raw = await read_body(request.receive, request.headers, limit)
        except HttpError as exc:
            raise Rejected(exc, "invalid_payload") from exc
        now = host.now_ms()
        try:
            verify(option, request.headers, raw, now)
        except SmithersError as exc:
            raise Rejected(exc, "invalid_signature") from exc
        host.count("webhooks_verified")
        try:
            payload = parse_json(raw)
        except HttpError as exc:
            message = f"Invalid JSON body: {exc.message}"
            raise _error("INVALID_INPUT", message, "invalid_payload") from exc
        answer: dict[str, Any] = {"ok": True, "workflow": key, "verified": True}
        if option.scheme == "github" and request.headers.get("x-github-event") == "ping":
            # GitHub's hook check when a webhook is created: verified, nothing to run
            return {**answer, "ping": True, "delivered": [], "matchedRunIds": [], "started": None}
        delivery = self._delivery_id(option, request, payload)
        if delivery is not None:
            retention = option.replay_window_s * 1000
            fresh = await host.store.write(
                lambda tx: webhooks.claim_delivery(tx, key, delivery, now, retention)
            )
            if not fresh:
                return {
                    **answer,
                    "duplicate": True,
                    "delivered": [],
                    "matchedRunIds": [],
                    "started": None,
                }
        try:
            result = await self._act(key, reg, option, payload)
        except BaseException:
            if delivery is not None:  # let the sender's retry be handled
                await host.store.write(lambda tx: webhooks.forget_delivery(tx, key, delivery))
            raise
        return {**answer, "duplicate": False, **result}

    @staticmethod
    def _delivery_id(option: WebhookOption, request: Request, payload: Any) -> str | None:
        header = delivery_header(option)
        path = delivery_path(option)
        if header is not None:
            value: str | None = (request.headers.get(header) or "").strip()
            where = f"header {header}"
        elif path is not None:
            value = id_at(payload, path)
            where = f"field {path}"
        else:
            return None
        if not value or len(value) > 256:
            raise _error(
                "INVALID_REQUEST", f"Missing or invalid delivery id {where}", "invalid_payload"
            )
        return value

    async def _act(
        self, key: str, reg: Registration, option: WebhookOption, payload: Any
    ) -> dict[str, Any]:
        host = self.host
        delivered: list[dict[str, Any]] = []
        matched: list[str] = []
        signal = option.signal
        if signal is not None and signal.name:
            correlation = id_at(payload, signal.correlation_id_path)
            run_id = id_at(payload, signal.run_id_path)
            data = at(payload, signal.payload_path)
            if data is MISSING:
                data = None
            name = signal.name
            matched = host.store.read(
                lambda conn: webhooks.runs_awaiting(conn, name, correlation, run_id)
            )
            for target in matched:
                result = await host.run_service.deliver_signal(
                    target,
                    name,
                    data,
                    correlation_id=correlation,
                    received_by=f"webhook:{key}",
                    workflow=reg.workflow,
                )
                delivered.append(result)
        started = None
        if not delivered and (option.run is None or option.run.enabled):
            started = await self._launch(key, option, payload)
        return {"delivered": delivered, "matchedRunIds": matched, "started": started}

    async def _launch(self, key: str, option: WebhookOption, payload: Any) -> dict[str, Any]:
        value = at(payload, option.run.input_path if option.run else None)
        if value is MISSING:
            value = {}
        run_input = value if isinstance(value, dict) else {"payload": value}
        run_input = validate_rpc_input(run_input)
        return await self.host.launch(key, run_input, RunAuth.for_trigger(f"webhook:{key}"))
