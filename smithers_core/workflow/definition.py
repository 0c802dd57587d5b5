"""``@workflow``: a named render function of ``ctx`` with a validated input model."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from smithers_core.errors import SmithersError, validation_issues
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
        """The input validated by the input model, or ``INVALID_INPUT`` with the field errors.

        ``None`` is ``{}``; anything else must be an object. Unknown top-level fields are
        refused (``extra_forbidden``) unless the model says what to do with them:
        ``extra="allow"`` keeps them, an explicit ``extra="ignore"`` drops them.
        """
        if data is None:
            data = {}
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json", by_alias=True)
        model = self.input_model
        try:
            checker = _forbidding_extras(model)
            if checker is not None:
                checker.model_validate(data)
            return model.model_validate(data)
        except ValidationError as exc:
            issues = validation_issues(exc)
            raise SmithersError(
                "INVALID_INPUT",
                f"Input does not match {model.__name__}: {_summary(issues)}",
                {"issues": issues},
            ) from exc

    def __repr__(self) -> str:
        return f"Workflow({self.name!r})"


@functools.lru_cache(maxsize=256)
def _forbidding_extras(model: type[BaseModel]) -> type[BaseModel] | None:
    """A subclass of ``model`` that refuses unknown fields, or None when ``model`` decides
    about extras itself (``extra`` set in its config) or is a root model."""
    if issubclass(model, RootModel) or model.model_config.get("extra") is not None:
        return None
    config = ConfigDict(**{**model.model_config, "extra": "forbid"})
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})


def _summary(issues: list[Any], limit: int = 5) -> str:
    """``field: message`` for the first ``limit`` issues, ``; ``-separated."""
    parts = []
    for issue in issues[:limit]:
        loc = ".".join(str(p) for p in issue.get("loc", ())) or "input"
        parts.append(f"{loc}: {issue.get('msg', 'invalid')}")
    more = len(issues) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


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
