"""Driving `wrk` (Debian's package, installed on first use) with POST bodies, and reading its figures."""

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors and non-2xx responses

    def as_json(self) -> dict[str, float]:
        return {"requests_per_s": self.requests_per_s, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "requests": self.requests, "errors": self.errors}


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when it is missing (the bench runs as root here)."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed with apt-get")
    return found


def write_script(path: Path, bodies: list[bytes], headers: dict[str, str]) -> Path:
    """A Lua script that POSTs the bodies in turn with the headers."""
    lines = ['wrk.method = "POST"']
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    lines.append("local bodies = {")
    lines += [f"  {_lua_string(body)}," for body in bodies]
    lines.append("}")
    lines.append("local i = 0")
    lines.append("request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lua_string(body: bytes) -> str:
    text = body.decode()
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(url: str, script: Path, *, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """One wrk run; one thread by default so the load generator takes as little CPU as it can."""
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "-s", str(script), url]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return parse(output)


def parse(output: str) -> WrkResult:
    rps = float(_found(r"Requests/sec:\s+([\d.]+)", output)[0])
    distribution = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    requests = int(_found(r"(\d+) requests in", output)[0])
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(rps, _ms(distribution["50"]), _ms(distribution["99"]), requests, errors)


def _found(pattern: str, text: str, *, whole: bool = False) -> tuple[str, ...]:
    """The groups of `pattern` in wrk's output; a format wrk no longer prints is an error that says so."""
    match = re.fullmatch(pattern, text) if whole else re.search(pattern, text)
    if match is None:
        raise ValueError(f"wrk's output has no {pattern!r}:\n{text}")
    return match.groups()


def _ms(value: str) -> float:
    number, unit = _found(r"([\d.]+)(\w+)", value, whole=True)
    return float(number) * _UNITS[unit]
