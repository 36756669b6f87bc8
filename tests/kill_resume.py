"""
Kill -9 train.py at random moments in every stage, re-run the same command, and check that nothing was lost.

    OMP_NUM_THREADS=1 python tests/kill_resume.py               # 5 rounds x 4 stages + 4 kills inside a write
    OMP_NUM_THREADS=1 python tests/kill_resume.py --rounds 2 --seed 3    # fewer, other random moments

Each round starts a fresh out_dir and, for every stage in turn, starts `python train.py config/micro.py ...`, waits
until that stage is in progress, lets it run for a random time up to the stage's length, and sends SIGKILL. One more
round kills the process in the middle of writing each stage's checkpoint (torch.save patched to write half the bytes
and then SIGKILL its own process). After every kill:
  - every checkpoint on disk loads with weights_only=True and is a complete train.py checkpoint,
  - summary.json and every line of log.jsonl parse (a killed write never leaves half a file in place),
and at the end of every round the same command finishes, leaves no *.tmp file, and every checkpoint equals an
uninterrupted run's bit for bit (weights, EMA, critic, optimizer and RNG state, ODE pairs).
tests/test_reliability.py runs a few of these kills in the default suite and all of them with `pytest -m slow`.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["teacher", "ode_pairs", "ode_init", "self_forcing"]
# one thread: bit-for-bit comparisons need the same float summation order in every run (and the CPU is shared)
ENV = dict(os.environ, OMP_NUM_THREADS="1")
# the micro model with longer stages, so that random kills land inside each of them; a checkpoint every iteration
ARGS = ["config/micro.py", "--eval_videos=0", "--ckpt_interval=1", "--teacher_iters=40", "--ode_pairs=64",
        "--ode_iters=30", "--sf_iters=30"]

# run train.py with torch.save replaced: the nth save of STAGE.pt writes half of its bytes, then the process kills -9
# itself, exactly as if the power went out mid-write
_WRITE_KILLER = """
import io, os, runpy, signal, sys, torch
stage, nth, real_save, count = sys.argv[1], int(sys.argv[2]), torch.save, [0]
def save(obj, f, *a, **k):
    if str(f).endswith(os.sep + stage + ".pt.tmp"):
        count[0] += 1
        if count[0] == nth:
            buf = io.BytesIO()
            real_save(obj, buf)
            with open(f, "wb") as out:
                out.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
torch.save = save
sys.argv = ["train.py"] + sys.argv[3:]
runpy.run_path("train.py", run_name="__main__")
"""


def train_cmd(out, args):
    return [sys.executable, "-u", "train.py", *args, f"--out_dir={out}"]


def run(cmd, timeout=600):
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def stage_in_progress(out):
    """The first stage whose checkpoint is missing or not marked done; 'finished' when all are."""
    for s in STAGES:
        path = os.path.join(out, f"{s}.pt")
        if not os.path.exists(path) or not load(path)["done"]:
            return s
    return "finished"


def check_files(out):
    """What a kill may leave: complete checkpoints, a parseable summary and log, and *.tmp files (returned)."""
    for s in STAGES:
        path = os.path.join(out, f"{s}.pt")
        if os.path.exists(path):
            ck = load(path)  # raises on a half-written file
            assert isinstance(ck, dict) and "done" in ck and ("iter" in ck or s == "ode_pairs"), f"{path}: {list(ck)}"
    if os.path.exists(os.path.join(out, "summary.json")):
        with open(os.path.join(out, "summary.json")) as f:
            json.load(f)
    if os.path.exists(os.path.join(out, "log.jsonl")):
        with open(os.path.join(out, "log.jsonl")) as f:
            for line in f:
                json.loads(line)
    return sorted(name for name in os.listdir(out) if name.endswith(".tmp"))


def kill_at_random(out, args, stage, seconds, rng):
    """Start train.py, wait until `stage` is in progress, let it run up to `seconds` more, kill -9.
    Returns the stage that was in progress when it died, or None if the run had finished its last stage."""
    proc = subprocess.Popen(train_cmd(out, args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    started = threading.Event()
    def watch():  # the first line is printed once the run is set up and about to train
        for line in proc.stdout:
            if line.startswith("out_dir"):
                started.set()
    threading.Thread(target=watch, daemon=True).start()
    while not started.is_set() and proc.poll() is None:
        time.sleep(0.01)
    order = STAGES + ["finished"]
    while proc.poll() is None and order.index(stage_in_progress(out)) < order.index(stage):
        time.sleep(0.01)
    time.sleep(rng.uniform(0, seconds))
    alive = proc.poll() is None
    proc.kill()  # SIGKILL: no handler runs, no file gets closed properly
    proc.wait()
    stage = stage_in_progress(out) if alive else None
    # alive but past its last checkpoint (printing the summary, exiting): the kill interrupted no stage
    return None if stage == "finished" else stage


def kill_mid_write(out, args, stage, nth=1):
    """Run train.py until it is half-way through writing its nth checkpoint of `stage`, then kill -9."""
    r = run([sys.executable, "-c", _WRITE_KILLER, stage, str(nth), *args, f"--out_dir={out}"])
    assert r.returncode == -signal.SIGKILL, f"expected a kill during the write of {stage}.pt:\n{r.stderr[-2000:]}"
    tmp = os.path.join(out, f"{stage}.pt.tmp")
    assert os.path.exists(tmp), "the half-written temp file should be there"
    try:
        load(tmp)
    except Exception:
        pass
    else:
        raise AssertionError("the temp file was meant to be half-written")


def finish(out, args):
    """The same command again: it must resume, finish, and leave no temp file."""
    r = run(train_cmd(out, args))
    assert r.returncode == 0, f"re-run failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    left = [os.path.join(d, n) for d, _, names in os.walk(out) for n in names if n.endswith(".tmp")]
    assert not left, f"temp files left behind: {left}"
    assert stage_in_progress(out) == "finished"
    return r.stdout


def _flat(x, key=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flat(v, f"{key}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _flat(v, f"{key}[{i}]")
    else:
        yield key, x


def assert_same_checkpoints(out, reference):
    """Every stage's checkpoint in `out` equals the one in `reference` bit for bit (all but the stored config)."""
    for s in STAGES:
        a = {k: v for k, v in _flat(load(os.path.join(out, f"{s}.pt"))) if not k.startswith(".config.")}
        b = {k: v for k, v in _flat(load(os.path.join(reference, f"{s}.pt"))) if not k.startswith(".config.")}
        assert a.keys() == b.keys(), f"{s}: entries differ: {sorted(a.keys() ^ b.keys())}"
        for k in a:
            same = torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
            assert same, f"{s}.pt differs from the uninterrupted run at {k}"


def stage_seconds(reference):
    with open(os.path.join(reference, "summary.json")) as f:
        summary = json.load(f)
    return {s: max(0.05, summary[s]["seconds"]) for s in STAGES}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of one random kill per stage (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        reference = os.path.join(tmp, "reference")
        r = run(train_cmd(reference, ARGS))
        assert r.returncode == 0, r.stderr[-2000:]
        seconds = stage_seconds(reference)
        print(f"uninterrupted run: {', '.join(f'{s} {t:.2f} s' for s, t in seconds.items())}")
        landed, in_write = {s: 0 for s in STAGES}, 0
        for i in range(args.rounds):
            out = os.path.join(tmp, f"round{i}")
            for target in STAGES:
                stage = kill_at_random(out, ARGS, target, seconds[target], rng)
                if stage is not None:
                    landed[stage] += 1
                    tmps = check_files(out)
                    in_write += any(t.endswith(".pt.tmp") for t in tmps)
                    print(f"round {i}: killed in {stage}" + (f" during a write ({', '.join(tmps)})" if tmps else ""))
            finish(out, ARGS)
            assert_same_checkpoints(out, reference)
        out = os.path.join(tmp, "writes")
        for stage in STAGES:
            kill_mid_write(out, ARGS, stage)
            check_files(out)
            landed[stage] += 1
            in_write += 1
            print(f"killed half-way through writing {stage}.pt")
        finish(out, ARGS)
        assert_same_checkpoints(out, reference)
    total = sum(landed.values())
    print(f"{total} kills ({', '.join(f'{s} {n}' for s, n in landed.items())}; {in_write} during a checkpoint "
          f"write), every re-run finished with checkpoints identical to the uninterrupted run, in "
          f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
