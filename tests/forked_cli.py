"""`authz ARGS...` as a real process forked from one that has already imported the server.

A fresh `python -m authz.cli serve` spends about two thirds of its start importing (1.2 of 1.8 s of CPU
on this machine), and the suite starts a server, sidecar or replica dozens of times. Here each test
worker keeps one multiprocessing fork server that imported the modules `serve` and `sidecar` use
(`PRELOAD`); a start forks it and runs the CLI's own entry point, so a server is ready after about
0.6 s of CPU. What runs is the real CLI in its own process, on its own port, environment, working
directory and log file, stopped by signals as before; only the interpreter's start and the imports are
shared. Tests about the start itself (an installed script, another directory) still
exec a fresh interpreter (`start_authz(command=...)`, tests/e2e). As with any multiprocessing start
but a plain fork, each child imports the starting script as `__mp_main__`: a script that starts
processes this way (bench/) keeps its work under `if __name__ == "__main__"`.

    process = fork_cli(["serve", "--port", "8123"], env, cwd=tmp_path, log_path=tmp_path / "serve.log")
    process.send_signal(signal.SIGTERM); process.wait(timeout=10)
"""

import atexit
import io
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

# What `authz serve` and `authz sidecar` import before they answer (authz/cli.py); a module missing here
# is imported by the child itself, slower but the same.
PRELOAD = [
    "authz.cli", "authz.settings", "authz.startup_checks", "authz.policy.loader", "authz.policy.suites",
    "authz.logging_setup", "api.app", "api.prefork", "api.sidecar", "uvicorn", "uvicorn.main",
]

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


class StartedProcess(Protocol):
    """What the tests use of a process they started, forked here or a `subprocess.Popen`."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class ForkedProcess:
    """A `subprocess.Popen`'s view of a child of the fork server: exit code, wait, signals."""

    def __init__(self, process: multiprocessing.process.BaseProcess, argv: Sequence[str]) -> None:
        self._process = process
        self.args = ["authz", *argv]

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None  # started in fork_cli
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode  # negative: the signal that ended it, as subprocess says

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            assert timeout is not None
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_cli(argv: Sequence[str], env: Mapping[str, str], *, cwd: Path, log_path: Path,
             stderr_path: Path | None = None) -> ForkedProcess:
    """Start `authz ARGV...` with exactly `env` in `cwd`, stdout (and stderr, unless `stderr_path` is
    given) appended to `log_path`."""
    paths = (str(log_path), str(stderr_path or log_path))
    # Daemonic: the worker's exit stops a child a failed test left running, instead of waiting for it.
    process = _CONTEXT.Process(target=_run_cli, args=(list(argv), dict(env), str(cwd), paths), daemon=True)
    process.start()
    return ForkedProcess(process, argv)


def _run_cli(argv: list[str], env: dict[str, str], cwd: str, output_paths: tuple[str, str]) -> None:
    """In the child: become what `python -m authz.cli ARGV` started in `cwd` with `env` would be."""
    os.setsid()  # like a process of its own: no signal meant for the test run's terminal
    for descriptor, path in zip((1, 2), output_paths, strict=True):
        output = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(output, descriptor)
        os.close(output)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["authz", *argv]
    for stream in (sys.stdout, sys.stderr):  # PYTHONUNBUFFERED, read at an interpreter's start only
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(write_through=True)
    from authz.cli import app

    try:
        app(args=argv, prog_name="authz")
    finally:
        # A multiprocessing child leaves with os._exit; an interpreter's exit runs these (e.g. the
        # removal of a migration's scratch folder, authz/store/migrate.py).
        atexit._run_exitfuncs()
