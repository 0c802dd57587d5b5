"""``@workflow``: a named render function of ``ctx`` with a validated input model."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from smithers_core.errors import SmithersError
from smithers_core.workflow.nodes import Node


class AnyInput(BaseModel):
    """The input model of a workflow that declares none: any JSON object."""

    model_config = ConfigDict(extra="allow")


class Workflow:
    """A workflow definition: ``build(ctx) -> Node`` plus its input model and settings."""

    def __init__(
        self,
        name: str,
        build: Callable[[Any], Node | None],
        *,
        input: type[BaseModel] | None = None,
        max_concurrency: int = 4,
        source_path: str | None = None,
        source_hash: str | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise SmithersError("INVALID_WORKFLOW", "A workflow needs a non-empty name")
        self.name = name
        self.build = build
        self.input_model: type[BaseModel] = input or AnyInput
        self.max_concurrency = max_concurrency
        self.source_path = source_path
        self.source_hash = source_hash or _hash_of_callable(build)

    def validate_input(self, data: Any) -> BaseModel:
        """The input validated by the input model, or ``INVALID_INPUT`` with the errors."""
        if data is None:
            data = {}
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json", by_alias=True)
        try:
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            raise SmithersError(
                "INVALID_INPUT",
                f"Input does not match {self.input_model.__name__}",
                {"issues": exc.errors(include_url=False, include_context=False)},
            ) from exc

    def __repr__(self) -> str:
        return f"Workflow({self.name!r})"


def _hash_of_callable(fn: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(fn)
        data = Path(path).read_bytes() if path else inspect.getsource(fn).encode()
    except (OSError, TypeError):
        data = repr(fn).encode()
    return hashlib.sha256(data).hexdigest()


def workflow(
    name: str, *, input: type[BaseModel] | None = None, max_concurrency: int = 4
) -> Callable[[Callable[[Any], Node | None]], Workflow]:
    """Decorate a render function ``build(ctx)`` to make it a :class:`Workflow`."""

    def wrap(build: Callable[[Any], Node | None]) -> Workflow:
        return Workflow(name, build, input=input, max_concurrency=max_concurrency)

    return wrap
