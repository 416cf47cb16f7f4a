"""Helpers for tests that talk to a running server: the bioquant binary, a
synthetic checkpoint, `bioquant serve` (or any command that prints its URL)
started on 127.0.0.1 and always stopped, and a free port."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bioquant_bin():
    b = os.environ.get("BIOQUANT_BINARY")  # set by run.sh
    if b:
        return b
    build = os.environ.get("BIOQUANT_BUILD_DIR", str(REPO / "build"))
    return str(Path(build) / "bioquant")


def bq(*args, check=True, timeout=600):
    """Runs bioquant; returns CompletedProcess (text)."""
    p = subprocess.run([bioquant_bin(), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"bioquant {' '.join(map(str, args))}: "
                             f"exit {p.returncode}: {p.stderr.strip()}")
    return p


def bq_json(*args, **kw):
    return json.loads(bq(*args, **kw).stdout)


def synth(out_dir, preset="tiny"):
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").exists():
        bq("synth", "--preset", preset, "--out", out_dir)
    return out_dir


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model_dir, *extra, precision="bf16", env=None, timeout=120):
    """`bioquant serve` on a free port; yields the base URL (…/v1). Stops it
    with SIGTERM on exit and checks that it drained and exited 0."""
    log = Path(model_dir).parent / f"serve-{os.getpid()}-{time.time_ns()}.log"
    with open(log, "w") as err:
        p = subprocess.Popen(
            [bioquant_bin(), "serve", "--model", str(model_dir), "--precision",
             precision, "--port", "0", "--threads", "2", *map(str, extra)],
            stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, **(env or {})})
    try:
        url = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"http://127\.0\.0\.1:\d+", log.read_text())
            if m:
                url = m.group(0) + "/v1"
                break
            if p.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text()}")
            time.sleep(0.2)
        if not url:
            raise AssertionError(f"serve did not start: {log.read_text()}")
        yield url
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("serve did not stop after SIGTERM")
            assert rc == 0, f"serve exited {rc}: {log.read_text()[-2000:]}"


@contextlib.contextmanager
def process(args, ready, env=None, timeout=180, log_path=None):
    """Any server process; `ready()` returns True once it answers. Killed on
    exit (SIGTERM, then SIGKILL)."""
    log = open(log_path or os.devnull, "w")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                         env={**os.environ, **(env or {})})
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise AssertionError(f"{args[0]} exited with {p.returncode}")
            if ready():
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{args[0]} did not become ready in {timeout} s")
        yield p
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
