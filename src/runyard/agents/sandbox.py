"""The sandboxed ``code_execution`` tool: Python in a fresh, limited process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import tempfile
from typing import Any

from pydantic import BaseModel

__all__ = ["CodeLimits", "run_code"]

# -- code_execution ---------------------------------------------------------------------------

_CHILD = r"""
import sys
def _guard(event, args):
    if event.startswith("socket.") or event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.fork"):
        raise PermissionError(f"{event} is not allowed in code_execution (no network, no processes)")
sys.addaudithook(_guard)
_src = sys.stdin.read()
exec(compile(_src, "<code>", "exec"), {"__name__": "__main__"})
"""


class CodeLimits(BaseModel):
    cpu_s: int = 2
    memory_mb: int = 256
    wall_s: float = 5.0
    output_bytes: int = 64 * 1024


async def run_code(code: str, limits: CodeLimits | None = None) -> dict[str, Any]:
    """Run Python in a fresh process: rlimits on CPU time and memory, a wall-clock kill, a temp
    dir as cwd and home, an audit hook refusing sockets and subprocesses (and no network
    namespace at all where ``unshare -n`` works)."""
    limits = limits or CodeLimits()
    mem = limits.memory_mb * 1024 * 1024

    def preexec() -> None:  # runs in the child, before exec
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
        os.setsid()

    with tempfile.TemporaryDirectory(prefix="runyard-code-") as tmp:
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [sys.executable, "-I", "-S", "-c", _CHILD]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp,
            env=env,
            preexec_fn=preexec,
        )
        killed = None
        try:
            out, err = await asyncio.wait_for(proc.communicate(code.encode()), limits.wall_s)
        except asyncio.TimeoutError:
            killed = "wall_clock"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            out, err = await proc.communicate()
        rc = proc.returncode
    stderr = err[-limits.output_bytes :].decode(errors="replace")
    if killed is None and rc is not None and rc < 0:
        import signal

        sig = -rc
        killed = "cpu_time" if sig in (signal.SIGXCPU, signal.SIGKILL) else f"signal {sig}"
    if killed is None and "MemoryError" in stderr:
        killed = "memory"
    if killed is None and "is not allowed in code_execution" in stderr:
        killed = "network"
    return {
        "stdout": out[: limits.output_bytes].decode(errors="replace"),
        "stderr": stderr,
        "exit_code": rc,
        "killed": killed,
        "ok": rc == 0 and killed is None,
    }
