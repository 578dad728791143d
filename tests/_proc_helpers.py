"""Run a callable in a forked child with root's privileges dropped (uid/gid 65534).

Forking keeps the already-imported interpreter, so /root/.pyenv being mode 700 does not
matter. The child reports the name of the exception its callable raised (or "ok").
"""
from __future__ import annotations

import os
from typing import Callable


def run_unprivileged(func: Callable[[], object]) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            func()
            result = "ok"
        except BaseException as exc:  # noqa: BLE001 - report everything to the parent
            result = type(exc).__name__ + ":" + ",".join(c.__name__ for c in type(exc).__mro__)
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out
