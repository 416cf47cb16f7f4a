"""Shared fixtures of the cross-check suite (tests/crosscheck).

Each test_*.py compares what bioquant computes with what a reference library
computes on the same input. run.sh sets the environment:
  BIOQUANT_BINARY        the bioquant program under test
  BIOQUANT_SOURCE_DIR    the source tree (../shared is found beside it)
  BIOQUANT_CROSSCHECK_OUT  where summary lines go (<test file>.summary)

Fixtures:
  bq            path of the bioquant binary
  run_bq        run_bq(*args) -> stdout; run_bq.json(*args) -> parsed JSON
  shared        ../shared (skips the test when it is absent)
  workdir       a per-test temporary directory (pytest's tmp_path)
  synth         synth(preset, dtype="f32", seed=0) -> a cached checkpoint dir
  summary       summary.add(group, cases, **diffs): one line per group
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("BIOQUANT_SOURCE_DIR",
                                 Path(__file__).resolve().parents[2]))
BINARY = Path(os.environ.get("BIOQUANT_BINARY", SOURCE_DIR / "build" / "bioquant"))
OUT_DIR = Path(os.environ.get("BIOQUANT_CROSSCHECK_OUT",
                              BINARY.parent / "crosscheck"))
SHARED = SOURCE_DIR.parent / "shared"
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))


class BioquantError(RuntimeError):
    pass


def run_bioquant(*args, check=True, stdin=None) -> str:
    """Runs bioquant with str()-converted args; returns stdout."""
    cmd = [str(BINARY)] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if check and p.returncode != 0:
        raise BioquantError(
            f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def run_bioquant_json(*args, **kw):
    return json.loads(run_bioquant(*args, **kw))


run_bioquant.json = run_bioquant_json


class Summary:
    """Collects, per group, the number of cases compared and what differed:
    int values are counts (summed), float values differences (the largest
    kept); writes one line per group when the session ends."""

    def __init__(self):
        self.groups: dict[str, dict] = {}

    def add(self, group: str, cases: int = 1, **diffs):
        g = self.groups.setdefault(group, {"cases": 0, "diffs": {}})
        g["cases"] += cases
        for k, v in diffs.items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                g["diffs"][k] = v
            elif isinstance(v, int):  # counts add up
                g["diffs"][k] = g["diffs"].get(k, 0) + v
            else:  # differences: the largest
                g["diffs"][k] = max(g["diffs"].get(k, v), v)

    def lines(self) -> list[str]:
        out = []
        for name, g in self.groups.items():
            parts = [f"{g['cases']} cases"]
            for k, v in g["diffs"].items():
                parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
            out.append(f"{name}: " + ", ".join(parts))
        return out


_SUMMARY = Summary()


@pytest.fixture(scope="session")
def summary():
    return _SUMMARY


def pytest_sessionfinish(session, exitstatus):
    if not _SUMMARY.groups:
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    files = {Path(str(i.fspath)).stem for i in session.items} or {"crosscheck"}
    name = sorted(files)[0] if len(files) == 1 else "crosscheck"
    status = "passed" if exitstatus == 0 else f"FAILED (pytest exit {exitstatus})"
    with open(OUT_DIR / f"{name}.summary", "w") as f:
        for line in _SUMMARY.lines():
            f.write(f"{line} [{status}]\n")
    for line in _SUMMARY.lines():
        sys.stdout.write(f"\nsummary: {line}")


@pytest.fixture(scope="session")
def bq() -> Path:
    if not BINARY.exists():
        pytest.fail(f"bioquant binary not found at {BINARY} (build it first)")
    return BINARY


@pytest.fixture(scope="session")
def run_bq(bq):
    return run_bioquant


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the oracles and data live there")
    return SHARED


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def synth(bq, tmp_path_factory):
    """synth(preset, dtype='f32', seed=0) -> Path of a `bioquant synth`
    checkpoint, made once per session."""
    made: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("synth")

    def make(preset: str, dtype: str = "f32", seed: int = 0, std: float | None = None):
        key = (preset, dtype, seed, std)
        if key not in made:
            out = root / f"{preset}-{dtype}-{seed}-{std}"
            args = ["synth", "--preset", preset, "--out", out, "--dtype", dtype,
                    "--seed", seed]
            if std is not None:
                args += ["--std", std]
            run_bioquant(*args)
            made[key] = out
        return made[key]

    return make
