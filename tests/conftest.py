"""Shared fixtures: one micro training run (every stage, a few iterations) reused by the CLI tests."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(*args, timeout=300):
    """Run a repo script as a user would; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("micro"))
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}")
    assert r.returncode == 0, f"micro training failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out, r
