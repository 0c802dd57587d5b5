"""``listPrompts`` (reference 5.5): the prompt files of the workspace,
``<workspaceRoot>/.smithers/prompts/**/*.md`` and ``*.mdx``.

Each item is ``{id, entryFile: "prompts/<rel>", source, updatedAtMs}`` (``createdAtMs`` too where
the file system records a birth time), sorted by ``id`` (the relative path without its
extension). Dotfiles and dot-folders are skipped. The walk is confined to the workspace root:
a file or folder whose real path (symlinks followed) leaves the root is skipped, as is anything
that is not a regular file. It is bounded: at most :data:`MAX_ENTRIES` directory entries are
looked at, a file over :data:`MAX_PROMPT_BYTES` is skipped, and at most :data:`MAX_PROMPTS`
prompts or :data:`MAX_TOTAL_BYTES` of sources are returned (the first by ``id``).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import anyio.to_thread

from smithers_core.contributions import RpcCall, RpcMethod
from smithers_core.gateway.context import GatewayContext

log = logging.getLogger("smithers.gateway")

EXTENSIONS = (".md", ".mdx")
MAX_ENTRIES = 10_000
MAX_PROMPTS = 1000
MAX_PROMPT_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 16


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _candidates(root: str, prompts: str) -> list[tuple[str, str]]:
    """``(relative posix path, real path)`` of every prompt file under ``prompts``."""
    found: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()
    budget = MAX_ENTRIES
    stack: list[tuple[str, str, int]] = [("", prompts, 0)]
    while stack:
        rel_dir, path, depth = stack.pop()
        real_dir = os.path.realpath(path)
        if not _inside(real_dir, root) or real_dir in seen_dirs or depth > MAX_DEPTH:
            continue
        seen_dirs.add(real_dir)
        try:
            names = sorted(os.listdir(real_dir))
        except OSError:
            continue
        for name in names:
            budget -= 1
            if budget < 0:
                log.warning("listPrompts: stopped after %d entries", MAX_ENTRIES)
                return found
            if name.startswith("."):
                continue
            full = os.path.join(real_dir, name)
            rel = f"{rel_dir}{name}"
            real = os.path.realpath(full)
            if not _inside(real, root):
                log.warning("listPrompts: skipped %s (outside the workspace root)", rel)
                continue
            try:
                mode = os.stat(real).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                stack.append((f"{rel}/", real, depth + 1))
            elif stat.S_ISREG(mode) and os.path.splitext(name)[1].lower() in EXTENSIONS:
                found.append((rel, real))
    return found


def _read(real: str) -> tuple[str, os.stat_result] | None:
    """The file's text and stat, or None when it is unreadable, not regular, too large or
    not UTF-8 (opened without following a last-moment symlink)."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PROMPT_BYTES:
            return None
        data = fh.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        return None
    try:
        return data.decode("utf-8"), st
    except UnicodeDecodeError:
        return None


def list_prompts(workspace_root: str) -> list[dict[str, Any]]:
    """The prompts of ``workspace_root`` (blocking file I/O; call it in a worker thread)."""
    root = os.path.realpath(workspace_root)
    prompts = os.path.join(root, ".smithers", "prompts")
    items: list[dict[str, Any]] = []
    total = 0
    entries = sorted(_candidates(root, prompts), key=lambda c: os.path.splitext(c[0])[0])
    for rel, real in entries:
        if len(items) >= MAX_PROMPTS:
            log.warning("listPrompts: only the first %d prompts are listed", MAX_PROMPTS)
            break
        read = _read(real)
        if read is None:
            log.warning("listPrompts: skipped %s (unreadable, not UTF-8 or too large)", rel)
            continue
        source, st = read
        total += len(source.encode())
        if total > MAX_TOTAL_BYTES:
            log.warning("listPrompts: stopped at %d bytes of sources", MAX_TOTAL_BYTES)
            break
        item: dict[str, Any] = {
            "id": str(Path(rel).with_suffix("")),
            "entryFile": f"prompts/{rel}",
            "source": source,
        }
        birth = getattr(st, "st_birthtime", None)
        if birth is not None:
            item["createdAtMs"] = int(birth * 1000)
        item["updatedAtMs"] = st.st_mtime_ns // 1_000_000
        items.append(item)
    return items


def methods(ctx: GatewayContext) -> list[RpcMethod]:
    async def handler(call: RpcCall, params: dict[str, Any]) -> Any:
        root = ctx.workspace_root or os.getcwd()
        return await anyio.to_thread.run_sync(list_prompts, root)

    return [RpcMethod("listPrompts", handler, "prompt:read")]


__all__ = [
    "MAX_ENTRIES",
    "MAX_PROMPTS",
    "MAX_PROMPT_BYTES",
    "MAX_TOTAL_BYTES",
    "list_prompts",
    "methods",
]
