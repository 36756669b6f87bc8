"""Shared fixtures: one micro training run (every stage, a few iterations) reused by the CLI tests."""
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(*args, timeout=300):
    """Run a repo script as a user would; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: bit-for-bit comparisons need one float summation order, tiny tensors are as
    fast on one thread, and one thread is immune to slow-downs when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("micro"))
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}")
    assert r.returncode == 0, f"micro training failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out, r
