"""OpenAPI 3.1 documents built from pydantic models, never written by hand.

A host describes each route as an :class:`Operation`: its method and path template, the
pydantic models of its query, body and responses, and the scope a bearer must hold. The
document's schemas are the models' JSON Schemas (pydantic's, in the 3.1 dialect, which is JSON
Schema 2020-12), gathered under ``components.schemas``; ``{name}`` path segments become string
path parameters. The scope is the bearer requirement's role list (OpenAPI 3.1 allows roles for
non-OAuth schemes) and ``x-smithers-scope``. Query and header parameters come from pydantic
models too (one parameter per field, named by its alias); a path parameter's schema may be
given in ``path_schemas`` (a pattern, a length).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

OPENAPI_VERSION = "3.1.0"
BEARER = "bearerAuth"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
REF = "#/components/schemas/{model}"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented response: a model, or a raw ``schema`` for ``media_type``."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of a document.

    ``auth`` is ``"bearer"`` (the caller needs a bearer token, and ``scope`` when given),
    ``"optional"`` (a bearer is needed only when the host has one configured) or ``"none"``.
    ``responses`` maps status codes to :class:`Reply`; ``errors`` lists the statuses that answer
    the host's error envelope (``error_model`` of :func:`build_document`). ``query`` and
    ``header_params`` are models whose fields are the query and header parameters;
    ``path_schemas`` gives a path parameter a schema other than a non-empty string.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    tags: tuple[str, ...] = ()
    scope: str | None = None
    auth: str = "bearer"
    query: type[BaseModel] | None = None
    header_params: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    responses: Mapping[int, Reply] = field(default_factory=dict)
    errors: Sequence[int] = (400, 401, 403, 404)
    description: str | None = None
    path_descriptions: Mapping[str, str] = field(default_factory=dict)
    path_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class _Schemas:
    """Every model's schema under ``components.schemas``, referenced by name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        # a generic model's name (``Ok[RunRow]``) is not a valid component name
        name = _UNSAFE.sub("_", model.__name__).strip("_")
        if name not in self.components:
            schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
            for sub, definition in schema.pop("$defs", {}).items():
                self.components.setdefault(sub, definition)
            self.components[name] = schema
        return {"$ref": REF.format(model=name)}

    def properties(self, model: type[BaseModel]) -> tuple[dict[str, Any], set[str]]:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        for sub, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(sub, definition)
        return schema.get("properties", {}), set(schema.get("required", []))


def _parameters(op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in _PARAM.findall(op.path):
        param: dict[str, Any] = {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(op.path_schemas.get(name, {"type": "string", "minLength": 1})),
        }
        if name in op.path_descriptions:
            param["description"] = op.path_descriptions[name]
        out.append(param)
    for where, model in (("query", op.query), ("header", op.header_params)):
        if model is None:
            continue
        props, required = schemas.properties(model)
        for name, schema in props.items():
            param = {"name": name, "in": where, "required": name in required}
            if "description" in schema:
                param["description"] = schema.pop("description")
            schema.pop("title", None)
            param["schema"] = schema
            out.append(param)
    return out


def _phrase(status: int) -> str:
    """``Not Found`` for 404: an error response's description."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _operation(op: Operation, schemas: _Schemas, error_ref: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    if op.tags:
        doc["tags"] = list(op.tags)
    params = _parameters(op, schemas)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, reply in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": reply.description}
        schema = schemas.ref(reply.model) if reply.model is not None else reply.schema
        if schema is not None:
            entry["content"] = {reply.media_type: {"schema": dict(schema)}}
        if reply.headers:
            entry["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in reply.headers.items()
            }
        responses[str(status)] = entry
    for status in op.errors:
        responses.setdefault(
            str(status),
            {
                "description": _phrase(status),
                "content": {"application/json": {"schema": error_ref}},
            },
        )
    doc["responses"] = responses
    if op.auth == "bearer":
        doc["security"] = [{BEARER: [op.scope] if op.scope else []}]
    elif op.auth == "optional":
        doc["security"] = [{BEARER: []}, {}]
    else:
        doc["security"] = []
    if op.scope:
        doc["x-smithers-scope"] = op.scope
    return doc


def build_document(
    *,
    title: str,
    version: str,
    operations: Iterable[Operation],
    error_model: type[BaseModel],
    description: str | None = None,
    servers: Sequence[str] = (),
    auth_description: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``, errors answering ``error_model``;
    ``auth_description`` replaces the bearer scheme's default description."""
    schemas = _Schemas()
    error_ref = schemas.ref(error_model)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas, error_ref)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": auth_description
                    or "Authorization: Bearer <token>; the scope each operation"
                    " needs is in its security requirement and x-smithers-scope.",
                }
            },
        },
    }
    if servers:
        document["servers"] = [{"url": url} for url in servers]
    return document


__all__ = ["BEARER", "OPENAPI_VERSION", "Operation", "Reply", "build_document"]
