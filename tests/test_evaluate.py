"""evaluate.py: the oracle scores have known answers on ground truth, and the CLI prints its table."""
import json
import os

import toydata
from conftest import run_py
from evaluate import late_window_adherence, oracle_scores


def test_oracle_scores_ceiling_and_floor_on_ground_truth():
    prompts, seeds = toydata.eval_set(40, 12, 32)
    truth = toydata.render_batch(prompts, seeds, 12, 32)
    assert oracle_scores(truth, prompts)["all"] == 100.0
    floor = oracle_scores(truth, prompts[1:] + prompts[:1])["all"]
    assert floor < 25.0, f"a shuffled prompt should rarely match, got {floor}%"


def test_late_windows_of_long_ground_truth_match():
    prompts = [p for p in toydata.eval_set(12, 12, 32)[0] if "gradient" not in p]
    long = toydata.render_batch(prompts, list(range(len(prompts))), 48, 32)
    assert late_window_adherence(long, prompts) == 100.0
    assert late_window_adherence(long, prompts[1:] + prompts[:1]) < 50.0


def test_cli_on_the_micro_run(micro_run):
    out, _ = micro_run
    r = run_py("evaluate.py", "--out_dir", out, "--videos", "4", "--repeats", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    for needle in ("ground truth (ceiling)", "shuffled prompts (floor)", "self_forcing", "faster", "KV cache"):
        assert needle in r.stdout, (needle, r.stdout)
    with open(os.path.join(out, "eval.json")) as f:
        assert set(json.load(f)["rows"]) >= {"teacher", "ode", "self_forcing"}


def test_cli_errors_are_one_line(tmp_path):
    r = run_py("evaluate.py", "--out_dir", str(tmp_path))
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
