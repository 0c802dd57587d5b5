"""Load a workflow from a Python file by path (``file.py`` or ``file.py:name``).

Every call reads the file; a changed file (by content hash) is executed again, so edits take
effect on the next run start or resume without restarting the host. Errors are typed
(``WORKFLOW_NOT_FOUND``, ``WORKFLOW_LOAD_FAILED``), never a crash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import traceback
from pathlib import Path

from smithers_core.errors import SmithersError
from smithers_core.workflow.definition import Workflow

_cache: dict[tuple[str, str], list[Workflow]] = {}
_lock = threading.Lock()


def split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``"dir/file.py:name"`` -> ``(Path("dir/file.py"), "name")``."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and not tail.startswith(("\\", "/")) and head.endswith(".py"):
        return Path(head), tail
    return Path(text), None


def _execute(path: Path, digest: str) -> list[Workflow]:
    module_name = f"smithers_workflow_{digest[:16]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SmithersError("WORKFLOW_LOAD_FAILED", f"Cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    parent = str(path.parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SmithersError:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise SmithersError(
            "WORKFLOW_LOAD_FAILED",
            f"Workflow file {path} failed to load: {detail}",
            {"path": str(path), "error": type(exc).__name__},
        ) from exc
    finally:
        if added:
            try:
                sys.path.remove(parent)
            except ValueError:
                pass
    found: list[Workflow] = []
    for value in vars(module).values():
        if isinstance(value, Workflow) and all(value is not f for f in found):
            value.source_path = str(path)
            value.source_hash = digest
            found.append(value)
    return found


def load_workflow(spec: str | Path, name: str | None = None) -> Workflow:
    """The module's single Workflow, or the one named by ``path:name`` (or ``name``)."""
    path, spec_name = split_spec(spec)
    name = name or spec_name
    path = path.resolve()
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SmithersError(
            "WORKFLOW_NOT_FOUND", f"Workflow file not found: {path}", {"path": str(path)}
        ) from exc
    except OSError as exc:
        raise SmithersError("WORKFLOW_LOAD_FAILED", f"Cannot read {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    key = (str(path), digest)
    with _lock:
        workflows = _cache.get(key)
        if workflows is None:
            workflows = _execute(path, digest)
            _cache[key] = workflows
    if name is not None:
        for wf in workflows:
            if wf.name == name:
                return wf
        raise SmithersError(
            "WORKFLOW_NOT_FOUND",
            f"No workflow named {name!r} in {path}; found: {', '.join(w.name for w in workflows)}",
        )
    if len(workflows) != 1:
        raise SmithersError(
            "WORKFLOW_NOT_FOUND",
            f"{path} defines {len(workflows)} workflows; name one with {path.name}:NAME"
            if workflows
            else f"{path} defines no workflow (decorate a render function with @workflow)",
        )
    return workflows[0]
