"""Unix-socket listeners (``listen(path=...)``): owner-only, never stealing a live socket,
replacing a stale one, and removed on stop only while the file is still ours.

The socket is bound under a temporary name in the same folder, made mode 0600, then renamed
into place, so no other user can connect between bind and chmod.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat

from smithers_core.errors import SmithersError

SOCKET_MODE = 0o600


def _bind_failed(path: str, why: str) -> SmithersError:
    return SmithersError("SERVER_BIND_FAILED", f"Cannot bind {path}: {why}", {"path": path})


def _someone_listens(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise _bind_failed(path, f"cannot tell whether it is in use ({exc.strerror})") from exc
    finally:
        probe.close()
    return True


def clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on; refuse a live socket or any other file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise _bind_failed(path, "the path exists and is not a socket")
    if _someone_listens(path):
        raise _bind_failed(path, "another server is listening on it")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def bind_unix(path: str) -> socket.socket:
    """A bound Unix socket at ``path`` with mode 0600 (``SERVER_BIND_FAILED`` otherwise)."""
    clear_stale(path)
    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f".sm-{secrets.token_hex(4)}")  # short: sun_path is small
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(temp)
        try:
            os.chmod(temp, SOCKET_MODE)
            os.rename(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        sock.close()
        raise _bind_failed(path, exc.strerror or str(exc)) from exc
    return sock


def remove_if_ours(path: str, inode: int) -> None:
    """Unlink ``path`` if it is still the socket file we bound (not a successor's)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


__all__ = ["SOCKET_MODE", "bind_unix", "clear_stale", "remove_if_ours"]
