"""The facade's OpenAPI 3.1 document (``GET /v1/api/openapi.json``), generated from the route
table and the pydantic models of :mod:`smithers_rest.models` by core's builder."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from smithers_core import jsonutil
from smithers_core.gateway import catalog
from smithers_core.http.asgi import respond
from smithers_core.http.openapi import Operation, Reply, build_document
from smithers_core.http.responses import GATEWAY
from smithers_rest import models as m
from smithers_rest.routes import PREFIX, ROUTES, RestRoute

STREAM_PATH = PREFIX + "/stream"
OPENAPI_PATH = PREFIX + "/openapi.json"
WRITE_ERRORS = (400, 401, 403, 404, 409, 413)
READ_ERRORS = (400, 401, 403, 404)


class StreamQuery(BaseModel):
    """Resume after this change id (the ``Last-Event-ID`` header wins when both are sent)."""

    lastEventId: int | None = Field(None, ge=0, description="Resume after this change id.")


def _operation_id(route: RestRoute) -> str:
    words = re.findall(r"[A-Za-z0-9]+", route.path)
    return route.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def route_operation(route: RestRoute) -> Operation:
    """The document's operation of one facade route."""
    scope = catalog.required_scope(route.rpc) if route.rpc else "run:read"
    envelope: Any = m.Mutation[route.data] if route.mutation else m.Ok[route.data]  # type: ignore[name-defined]
    served_by = f"RPC method `{route.rpc}`" if route.rpc else "the persisted event history"
    return Operation(
        method=route.method,
        path=route.full_path,
        operation_id=_operation_id(route),
        summary=route.summary,
        description=f"Calls {served_by}; a method no plugin provides answers 404 METHOD_NOT_FOUND.",
        tags=(route.tag,),
        scope=scope,
        query=route.query,
        body=route.body,
        body_required=route.body_required,
        responses={200: Reply("Success", envelope)},
        errors=(WRITE_ERRORS if route.mutation else READ_ERRORS) + route.errors,
        path_descriptions=route.notes,
    )


def operations() -> list[Operation]:
    """Every facade route, the change stream and this document."""
    ops = [route_operation(route) for route in ROUTES]
    ops.append(
        Operation(
            method="GET",
            path=STREAM_PATH,
            operation_id="getV1ApiStream",
            summary="The change stream (server-sent events)",
            description="Events `change` (`id: <seq>`, data `{seq, collections}`), `heartbeat`"
            " (`{seq}`) and `reset` (`{seq}`: resync). Resume with the `Last-Event-ID` header"
            " or `lastEventId`.",
            tags=("stream",),
            scope="run:read",
            query=StreamQuery,
            responses={
                200: Reply(
                    "An endless event stream",
                    media_type="text/event-stream",
                    schema={"type": "string"},
                )
            },
            errors=(400, 401, 403, 429),
        )
    )
    ops.append(
        Operation(
            method="GET",
            path=OPENAPI_PATH,
            operation_id="getV1ApiOpenapiJson",
            summary="This document",
            tags=("meta",),
            auth="none",
            responses={200: Reply("The OpenAPI 3.1 document", schema={"type": "object"})},
            errors=(),
        )
    )
    return ops


def document() -> dict[str, Any]:
    return build_document(
        title="Smithers gateway REST facade",
        version="v1",
        description="Plain REST over the gateway's RPC methods, with the same auth and"
        " scopes. Reads answer `{ok: true, data}`, writes `{ok: true, data, seq}`, failures"
        " `{ok: false, error: {code, message, details?}}`.",
        operations=operations(),
        error_model=m.Failure,
    )


class OpenApiEndpoint:
    """Serves the document, built and encoded once."""

    def __init__(self) -> None:
        self._body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._body is None:
            self._body = jsonutil.dumps(document()).encode("utf-8")
        await respond(send, 200, self._body, GATEWAY)


__all__ = ["OPENAPI_PATH", "STREAM_PATH", "OpenApiEndpoint", "document", "operations"]
