"""The training pipeline end to end on the micro config: every stage runs, checkpoints, logs, and resumes."""
import json
import os

import pytest
import torch

from conftest import ROOT, run_py

STAGES = ["teacher", "ode_pairs", "ode_init", "self_forcing"]


def test_micro_pipeline_runs_every_stage(micro_run):
    out, r = micro_run
    for s in STAGES:
        ck = torch.load(os.path.join(out, f"{s}.pt"), weights_only=True)
        assert ck["done"], f"{s} checkpoint not marked done"
        assert not os.path.exists(os.path.join(out, f"{s}.pt.tmp")), "a temp checkpoint file was left behind"
    with open(os.path.join(out, "log.jsonl")) as f:
        logged = {json.loads(line)["stage"] for line in f}
    assert set(STAGES) <= logged, f"stages missing from the log: {set(STAGES) - logged}"
    assert "oracle on" in r.stdout, "each stage should report its oracle check"


def test_every_stage_checks_along_the_way_without_changing_its_training(micro_run, tmp_path):
    # eval_interval asks each training stage for oracle checks between its iterations; they draw their own noise, so
    # the weights come out as those of the run without them (micro_run), to the last bit
    out = str(tmp_path)
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}", "--eval_interval=1")
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(out, "log.jsonl")) as f:
        checks = [json.loads(line) for line in f if '"oracle"' in line]
    for stage in ("teacher", "ode_init", "self_forcing"):   # the final check logs the stage's last iteration count
        iters = [c["iter"] for c in checks if c["stage"] == stage]
        assert len(iters) > 1 and min(iters) < max(iters), \
            f"{stage}: no oracle check before its last iteration with --eval_interval=1 ({checks})"
    for s in ("teacher", "ode_init", "self_forcing"):
        a, b = (torch.load(os.path.join(d, f"{s}.pt"), weights_only=True)["model"] for d in (micro_run[0], out))
        assert all(torch.equal(a[k], b[k]) for k in a), f"{s}: the checks changed the trained weights"


def test_ode_pairs_hold_the_student_timesteps(micro_run):
    out, _ = micro_run
    ck = torch.load(os.path.join(out, "ode_pairs.pt"), weights_only=True)
    states = ck["states"]
    assert states.shape[:2] == (4, 5) and states.shape[2:] == (6, 3, 16, 16), states.shape
    # the first state is pure noise (sigma = 1) and differs from the final x0
    assert states[:, 0].float().std() > 0.5
    assert not torch.equal(states[:, 0], states[:, 4])


def test_rerun_skips_finished_stages(micro_run):
    out, _ = micro_run
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}", "--eval_videos=0")
    assert r.returncode == 0, r.stderr[-2000:]
    for s in STAGES:
        assert f"[{s}]" in r.stdout and ("skipping" in r.stdout), r.stdout
    assert r.stdout.count("skipping") == 4, r.stdout


def test_interrupted_stage_resumes(tmp_path):
    # stop the teacher half-way by asking for fewer iterations with checkpoints every iteration, mark it unfinished,
    # then the full command picks it up where it stopped
    out = str(tmp_path)
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}", "--ckpt_interval=1", "--stop_after=teacher:2")
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(os.path.join(out, "teacher.pt"), weights_only=True)
    assert ck["iter"] == 2 and not ck["done"]
    r = run_py("train.py", "config/micro.py", f"--out_dir={out}", "--eval_videos=0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[teacher] resuming at iteration 2" in r.stdout, r.stdout


def test_bad_config_is_one_clear_line(tmp_path):
    r = run_py("train.py", "config/micro.py", "--not_a_key=3")
    assert r.returncode != 0 and "unknown config key --not_a_key" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_py("train.py", "config/micro.py", f"--out_dir={tmp_path}", "--num_frames=7")
    assert r.returncode != 0 and "not divisible by chunk" in r.stderr and "Traceback" not in r.stderr
    r = run_py("train.py", "config/micro.py", f"--out_dir={tmp_path}", "--orbit_start_deg=200")
    assert r.returncode != 0 and "orbit_start_deg must lie in [0, 180], got 200" in r.stderr, r.stderr[-500:]
    r = run_py("train.py", "config/nope.py")
    assert r.returncode != 0 and "config file not found" in r.stderr


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "config")) if f.endswith(".py")))
def test_every_shipped_config_passes_the_checks(name):
    # a config is only read when its run starts: a mistyped key or a bad value in one that no test trains would
    # otherwise reach the learner as an error after typing its command (or, worse, minutes into it)
    # (train.py's defaults as a fresh run sees them: other tests configure the imported module's globals)
    import runpy
    from configurator import configure
    train = runpy.run_path(os.path.join(ROOT, "train.py"))
    c = {k: train[k] for k in train["_CONFIG_KEYS"]}
    configure(c, [os.path.join(ROOT, "config", name)])
    train["check_config"](c)  # exits with the problems on one line
    if name not in ("tiny.py", "ablation.py"):  # ablation.py gives every row its own --out_dir
        assert c["out_dir"] != train["out_dir"], f"config/{name} would write into tiny's {train['out_dir']}"


def test_stream_layout_is_what_the_chunkwise_sampler_shows():
    from model import stream_layout  # the teacher's training layout (train.py) and euler_sample(chunk=K)'s
    sigma = torch.full((3, 6), 0.7)
    now = torch.tensor([0, 2, 4])
    got = stream_layout(sigma, now, 2)
    want = torch.tensor([[0.7, 0.7, 1, 1, 1, 1],
                         [0, 0, 0.7, 0.7, 1, 1],
                         [0, 0, 0, 0, 0.7, 0.7]])
    assert torch.allclose(got, want), got
    # per-row window lengths: the teacher trains on frame 0 alone and on frames 1..K-1 after it (sampler_windows)
    got = stream_layout(sigma, torch.tensor([0, 1, 3]), torch.tensor([1, 2, 3]))
    want = torch.tensor([[0.7, 1, 1, 1, 1, 1],
                         [0, 0.7, 0.7, 1, 1, 1],
                         [0, 0, 0, 0.7, 0.7, 0.7]])
    assert torch.allclose(got, want), got


def test_sampler_windows_make_the_first_frame_alone():
    from model import sampler_windows
    assert sampler_windows(12, 3) == [(0, 3), (3, 3), (6, 3), (9, 3)]
    assert sampler_windows(12, 3, first_frame=True) == [(0, 1), (1, 2), (3, 3), (6, 3), (9, 3)]
    assert sampler_windows(12, 3, start=3, first_frame=True) == [(3, 3), (6, 3), (9, 3)]   # after a given prefix
    assert sampler_windows(4, 1, first_frame=True) == [(0, 1), (1, 1), (2, 1), (3, 1)]     # frame-wise: unchanged
    assert sampler_windows(6, 6, first_frame=True) == [(0, 1), (1, 5)]                     # whole clip
    assert sampler_windows(1, 3, first_frame=True) == [(0, 1)]                              # frame 0 alone
    with pytest.raises(AssertionError, match="do not split"):
        sampler_windows(7, 3)


def test_dmd_in_the_teachers_layout_judges_the_window_and_leaves_the_clean_past_alone(one_thread, monkeypatch):
    """dmd_stream: DMD and the critic noise some videos as the teacher samples them (clean past, one window of its
    sampler at the level, pure noise after), and the DMD gradient reaches only the frames the teacher judges there.
    dmd_stream = 0 is the paper's one level per video, every frame weighted."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, ROOT)
    import train
    from model import CausalDiT, ModelConfig, sampler_windows
    for k, v in dict(num_frames=6, chunk=3, resolution=16, shift=3.0, teacher_chunk=0, teacher_first_frame=True,
                     guidance=1.5).items():
        monkeypatch.setattr(train, k, v)  # train.py's config globals; other tests run train.main() in this process
    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "dmd_stream", 0.0)
    sigma, w = train.dmd_levels(16, torch.Generator().manual_seed(0), cpu, clamp=True)
    assert (sigma == sigma[:, :1]).all() and (w == 1).all() and sigma.min() >= 0.02 and sigma.max() <= 0.98
    monkeypatch.setattr(train, "dmd_stream", 1.0)
    sigma, w = train.dmd_levels(64, torch.Generator().manual_seed(0), cpu, clamp=True)
    seen = set()
    for row, wr in zip(sigma, w):
        now = int((row == 0).sum())                                 # the clean past ...
        n = next(n for s, n in sampler_windows(6, 3, first_frame=True) if s == now)   # ... ends where a window starts
        assert (row[now:now + n] == row[now]).all() and 0.02 <= row[now] <= 0.98, row
        assert (row[now + n:] == 1).all() and torch.equal(wr, (row > 0).float()), row
        seen.add(now)
    assert seen == {0, 1, 3}, f"windows drawn: {seen}"

    torch.manual_seed(0)
    nets = [CausalDiT(ModelConfig(vocab_size=40, resolution=16, patch=8, chunk=3, width=32, depth=1, heads=2,
                                  text_depth=1, max_text_len=12)).eval() for _ in range(2)]
    with torch.no_grad():
        for p in [p for net in nets for p in net.parameters()]:
            if (p == 0).all():  # adaLN-Zero: give the untrained models a non-trivial output
                p.copy_(0.1 * torch.randn(p.shape))
    tokens = torch.randint(1, 40, (8, 12))
    x = (torch.rand(8, 6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    train.dmd_loss(x, tokens, nets[0], nets[1], torch.Generator().manual_seed(5), cpu).backward()
    _, w = train.dmd_levels(8, torch.Generator().manual_seed(5), cpu, clamp=True)     # the levels dmd_loss drew
    per_frame = x.grad.abs().amax(dim=(2, 3, 4))                                       # (B, F)
    assert (w == 0).any() and (per_frame[w == 0] == 0).all(), "a clean past frame was pushed"
    assert (per_frame[w == 1] > 0).all(), "a judged frame got no gradient"
