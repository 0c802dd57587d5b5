"""The bash tool's filesystem confinement (issue 13 item 4): each escape from ``root_dir`` is
refused, ordinary commands in the root work."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from smithers_core.errors import SmithersError
from smithers_core.tools import bash

pytestmark = pytest.mark.timeout(30)

SECRET = "top-secret-value"


@pytest.fixture(params=["tmp", "var-tmp"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The folder holding the root: pytest's (under /tmp, which the sandbox replaces with a
    read-only view) or one under /var/tmp (next to a private writable /tmp)."""
    if request.param == "tmp":
        yield tmp_path
        return
    made = Path(tempfile.mkdtemp(prefix="smithers-sandbox-test-", dir="/var/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def box(base: Path) -> SimpleNamespace:
    """``outside/secret.txt`` next to the root ``root/`` (which holds ``data.txt``)."""
    tmp_path = base
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.txt").write_text("inside\n")
    ctx = SimpleNamespace(allow_network=False, root_dir=str(root))
    return SimpleNamespace(tmp=tmp_path, root=root, outside=outside, ctx=ctx)


def run(box: SimpleNamespace, cmd: str, *, network: bool = False) -> tuple[int | None, str]:
    box.ctx.allow_network = network
    result = bash(cmd, 10_000, ctx=box.ctx)
    return result.exit_code, result.stdout + result.stderr


def test_reading_the_root_works_the_parent_does_not(box: SimpleNamespace) -> None:
    code, out = run(box, "cat data.txt")
    assert code == 0 and out == "inside\n"
    code, out = run(box, "cat ../secret.txt")
    assert code != 0 and SECRET not in out
    code, out = run(box, f"cat {box.outside}/secret.txt")
    assert code != 0 and SECRET not in out
    code, out = run(box, f"ls {box.tmp}")  # only the path to the root is there
    assert code == 0 and out == "root\n"


@pytest.mark.parametrize("network", [False, True])
def test_etc_passwd_is_not_readable(box: SimpleNamespace, network: bool) -> None:
    code, out = run(box, "cat /etc/passwd", network=network)
    assert code != 0 and "root:" not in out
    code, out = run(box, "cat /etc/shadow; ls /root /home /work", network=network)
    assert code != 0 and "root:" not in out


def test_symlinks_out_of_the_root_lead_nowhere(box: SimpleNamespace) -> None:
    (box.root / "abs-link").symlink_to(box.outside / "secret.txt")
    (box.root / "rel-link").symlink_to(Path("..") / "secret.txt")
    (box.root / "dir-link").symlink_to(box.outside)
    (box.root / "in-link").symlink_to(box.root / "data.txt")  # inside the root: fine
    code, out = run(box, "cat in-link")
    assert code == 0 and out == "inside\n"
    for cmd in ("cat abs-link", "cat rel-link", "cat dir-link/secret.txt"):
        code, out = run(box, cmd)
        assert code != 0 and SECRET not in out, cmd
    result = bash("ls dir-link/", 10_000, ctx=box.ctx)
    assert result.exit_code != 0 and result.stdout == ""
    code, _ = run(box, "echo planted > dir-link/planted.txt")
    assert code != 0 and not (box.outside / "planted.txt").exists()


def test_writes_outside_the_root_are_refused(box: SimpleNamespace) -> None:
    code, _ = run(box, "echo in > written.txt && mkdir -p sub/deeper && echo x > sub/deeper/f")
    assert code == 0 and (box.root / "written.txt").read_text() == "in\n"
    assert (box.root / "sub" / "deeper" / "f").read_text() == "x\n"
    targets = [
        box.tmp / "escape.txt",
        box.outside / "escape.txt",
        Path("/usr") / f"escape-{uuid.uuid4().hex}",
        Path("/etc") / f"escape-{uuid.uuid4().hex}",
        Path(f"/escape-{uuid.uuid4().hex}"),
    ]
    for target in targets:
        code, _ = run(box, f"echo x > {target}")
        assert code != 0 and not target.exists(), target
    code, _ = run(box, "echo x > ../escape2.txt; touch ../escape3.txt")
    assert code != 0
    assert not (box.tmp / "escape2.txt").exists() and not (box.tmp / "escape3.txt").exists()
    name = f"/tmp/smithers-escape-{uuid.uuid4().hex}"
    code, out = run(box, f"echo t > {name} && cat {name}")
    if box.tmp.is_relative_to("/tmp"):  # a root under /tmp: the rest of /tmp is read-only
        assert code != 0
    else:  # a private tmpfs: usable, and nothing written there reaches the host
        assert code == 0 and out == "t\n"
    assert not os.path.exists(name)


def test_ordinary_commands_work(box: SimpleNamespace) -> None:
    code, out = run(box, "ls")
    assert code == 0 and out == "data.txt\n"
    code, out = run(box, "printf 'b\\na\\nb\\n' | sort | uniq -c | awk '{print $2 $1}' | head -2")
    assert code == 0 and out == "a1\nb2\n"
    code, out = run(box, "pwd; echo $((6 * 7)); wc -l < data.txt; head -c 4 /dev/zero | wc -c")
    assert code == 0 and out == f"{box.root}\n42\n1\n4\n"
    code, out = run(box, "env -i /usr/bin/env bash -c 'echo clean'; date +%Y >/dev/null")
    assert code == 0 and out == "clean\n"


def test_cwd_must_be_inside_the_root(box: SimpleNamespace) -> None:
    (box.root / "sub").mkdir()
    result = bash("pwd", 5000, ctx=box.ctx, cwd="sub")
    assert result.exit_code == 0 and result.stdout == f"{box.root}/sub\n"
    for cwd in (str(box.outside), "..", "/"):
        with pytest.raises(SmithersError) as info:
            bash("pwd", 5000, ctx=box.ctx, cwd=cwd)
        assert info.value.code == "INVALID_INPUT"
    with pytest.raises(SmithersError) as info:
        bash("pwd", 5000, ctx=SimpleNamespace(allow_network=False, root_dir="/"))
    assert info.value.code == "INVALID_INPUT"
