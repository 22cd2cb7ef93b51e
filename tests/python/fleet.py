"""Starts a small fleet for the Python tests: emulated Ollama servers, syncd
and the real Envoy with the filter, on ephemeral ports. Binaries come from
the cargo target directory (built by scripts/build.sh)."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
EMU_BIN = Path(os.environ.get("OLLAMA_EMU_BIN", TARGET / "debug" / "ollama-emu"))
SYNCD_BIN = Path(os.environ.get("SYNCD_BIN", TARGET / "debug" / "syncd"))
ENVOY_BIN = Path(os.environ.get("ENVOY_BIN", ROOT / ".venv" / "bin" / "envoy"))
WASM = Path(os.environ.get("FILTER_WASM", TARGET / "wasm32-wasip1" / "wasm" / "filter.wasm"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, proc=None, log=None, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{read(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{read(log)}")


def read(path) -> str:
    try:
        return Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return ""


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except Exception:
        return False


class Fleet:
    """Processes of one test module; `stop()` ends them and returns logs."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ollama-lb-py-"))
        self.procs = []  # (label, Popen, log path)

    def spawn(self, label, args, env=None):
        log = self.dir / f"{label}.log"
        out = open(log, "wb")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append((label, proc, log))
        return proc, log

    def emulator(self, name: str, *args: str) -> str:
        """Starts one emulator; returns its base URL."""
        proc, log = self.spawn(f"emu-{name}", [str(EMU_BIN), "--name", name, "--listen", "127.0.0.1:0", *args])

        def url():
            for line in read(log).splitlines():
                if " listening on " in line:
                    return line.split(" listening on ", 1)[1].strip()
            return None

        return wait_for(url, f"emulator {name}", proc, log)

    def balancer(self, instances: dict, plugin_config: dict | None = None) -> str:
        """Starts syncd and Envoy with the filter for `instances` (name -> URL);
        returns Envoy's base URL."""
        syncd_port = free_port()
        env = dict(os.environ, RUST_LOG="info")
        env.pop("OLLAMA_BASE_URLS", None)
        inst_args = [a for n, u in instances.items() for a in ("--instance", f"{n}={u}")]
        proc, log = self.spawn(
            "syncd",
            [str(SYNCD_BIN), "run", "--listen", f"127.0.0.1:{syncd_port}", "--interval", "200ms", *inst_args],
            env=env,
        )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{syncd_port}/readyz"), "syncd", proc, log)

        port, admin = free_port(), free_port()
        config = self.dir / "envoy.yaml"
        render = [
            str(SYNCD_BIN), "envoy-config", *inst_args,
            "--envoy-listen", f"127.0.0.1:{port}",
            "--admin", f"127.0.0.1:{admin}",
            "--syncd", f"127.0.0.1:{syncd_port}",
            "--wasm", str(WASM),
        ]
        if plugin_config:
            render += ["--plugin-config", json.dumps(plugin_config)]
        config.write_text(subprocess.run(render, check=True, capture_output=True, text=True, env=env).stdout)
        proc, log = self.spawn(
            "envoy",
            [str(ENVOY_BIN), "-c", str(config), "--disable-hot-restart", "--concurrency", "2", "-l", "info"],
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{base}/api/tags"), "envoy", proc, log, timeout=30)
        self.admin = f"http://127.0.0.1:{admin}"
        return base

    def logs(self) -> str:
        return "\n".join(f"===== {label} =====\n{read(log)[-20000:]}" for label, _, log in self.procs)

    def stop(self):
        for _, proc, _ in self.procs:
            proc.terminate()
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
