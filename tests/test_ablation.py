"""The ablation: its baselines differ from Self Forcing only where the paper says, and ablation.py runs every row."""
import json
import os
import sys

import torch

from conftest import ROOT, run_py

sys.path.insert(0, ROOT)
import train  # noqa: E402
from model import CausalDiT, ModelConfig  # noqa: E402

MICRO = ["config/micro.py", "--eval_interval=2", "--eval_videos=4", "--diffusion_iters=4", "--sf_iters=4"]


def test_ground_truth_rollout_sees_the_truth_before_each_chunk_and_nothing_after(one_thread, monkeypatch):
    """TF+DMD: chunk i is made from noise with the TRUE chunks < i in view. So changing the truth's last chunk
    changes nothing, changing its first chunk changes the later chunks' outputs but not the first chunk's.
    DF+DMD: the same, with that context noised (a different clip for the same random draws)."""
    for k, v in dict(num_frames=6, chunk=3, resolution=16, shift=3.0, method="tf_dmd").items():
        monkeypatch.setattr(train, k, v)  # train.py's config globals; other tests run train.main() in this process
    torch.manual_seed(0)
    net = CausalDiT(ModelConfig(vocab_size=40, resolution=16, patch=8, chunk=3, width=32, depth=1, heads=2,
                                text_depth=1, max_text_len=12)).eval()
    with torch.no_grad():
        for p in net.parameters():
            if (p == 0).all():  # adaLN-Zero: give the untrained model a non-trivial output
                p.copy_(0.1 * torch.randn(p.shape))
    tokens = torch.randint(1, 40, (2, 12))
    truth = torch.rand(2, 6, 3, 16, 16) * 2 - 1

    def clip(method, x0):
        monkeypatch.setattr(train, "method", method)
        with torch.no_grad():
            return train.ground_truth_rollout(net, tokens, x0, torch.Generator().manual_seed(3), torch.device("cpu"))

    tf = clip("tf_dmd", truth)
    late, early = truth.clone(), truth.clone()
    late[:, 3:] = 0
    early[:, :3] = 0
    assert torch.allclose(clip("tf_dmd", late), tf, atol=1e-6)
    moved = clip("tf_dmd", early)
    assert torch.allclose(moved[:, :3], tf[:, :3], atol=1e-6) and (moved[:, 3:] - tf[:, 3:]).abs().max() > 1e-3
    df = clip("df_dmd", truth)
    assert (df[:, 3:] - tf[:, 3:]).abs().max() > 1e-3, "DF+DMD's context should be the noised truth"
    assert torch.allclose(clip("df_dmd", late), df, atol=1e-6)


def test_self_forcing_rollout_makes_the_blocks_the_student_streams(one_thread, monkeypatch):
    """The rollout makes the clip in the student's blocks: frame 0 alone, then frames 1-2, then chunks of 3, when
    ModelConfig.first_frame is set (the paper's equal chunks when not), and each block sees the cache of the blocks
    before it: the re-fill follows every block but the last."""
    for k, v in dict(num_frames=9, chunk=3, resolution=16, shift=3.0).items():
        monkeypatch.setattr(train, k, v)
    for first_frame, blocks in ((True, [(0, 1), (1, 2), (3, 3), (6, 3)]), (False, [(0, 3), (3, 3), (6, 3)])):
        torch.manual_seed(0)
        net = CausalDiT(ModelConfig(vocab_size=40, resolution=16, patch=8, chunk=3, width=32, depth=1, heads=2,
                                    text_depth=1, max_text_len=12, first_frame=first_frame)).eval()
        made, filled = [], []
        run, fill = net.forward_chunk, net.append_to_cache
        monkeypatch.setattr(net, "forward_chunk", lambda x, t, c, s: made.append((s, len(x[0]))) or run(x, t, c, s))
        monkeypatch.setattr(net, "append_to_cache", lambda x, c, s: filled.append((s, len(x[0]))) or fill(x, c, s))
        with torch.no_grad():
            clip = train.self_forcing_rollout(net, torch.randint(1, 40, (2, 12)), torch.Generator().manual_seed(1),
                                              torch.device("cpu"), grad=False)
        steps = len(made) // len(blocks)                                 # the shared exit step: 1 to 4 steps
        assert clip.shape == (2, 9, 3, 16, 16) and 1 <= steps <= 4
        assert made == [b for b in blocks for _ in range(steps)] and filled == blocks[:-1]


def test_ablation_runs_every_row_and_writes_the_table(tmp_path):
    out = str(tmp_path / "ablation")
    r = run_py("ablation.py", f"--out_dir={out}", "--settings=chunk-wise", "--seeds=1", "--videos=4",
               "--repeats=1", "--clip_steps=5", "--", *MICRO, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(os.path.join(out, "results.md")) as f:
        table = f.read()
    for name in ("teacher forcing", "diffusion forcing", "TF + DMD", "DF + DMD", "Self Forcing"):
        assert f"| chunk-wise | {name} | 1 |" in table, table
    rows = {m: os.path.join(out, f"chunk-wise_{m}_seed0") for m in
            ("self_forcing", "tf_dmd", "df_dmd", "teacher_forcing", "diffusion_forcing")}
    load = lambda m, f: torch.load(os.path.join(rows[m], f), weights_only=True)
    # the DMD rows start from one ODE init (the Self Forcing row's) and then train apart
    init = load("self_forcing", "ode_init.pt")["model"]
    for m in ("tf_dmd", "df_dmd"):
        assert all(torch.equal(init[k], v) for k, v in load(m, "ode_init.pt")["model"].items())
        assert load(m, "self_forcing.pt")["config"]["method"] == m
        w, sf = load(m, "self_forcing.pt")["model"], load("self_forcing", "self_forcing.pt")["model"]
        assert any(not torch.equal(w[k], sf[k]) for k in w), f"{m} trained exactly as Self Forcing"
    # the diffusion baselines have no ODE init or DMD stage, and learn different things
    for m in ("teacher_forcing", "diffusion_forcing"):
        assert not os.path.exists(os.path.join(rows[m], "ode_init.pt")) and load(m, "diffusion.pt")["done"]
    a, b = load("teacher_forcing", "diffusion.pt")["model"], load("diffusion_forcing", "diffusion.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)["results"]["chunk-wise"]
    assert len(res["teacher forcing"][0]["curve"]) >= 2 and len(res["Self Forcing"][0]["curve"]) >= 2
    assert len(res["Self Forcing"][0]["drift"]["all"]) == 4 * 6 - 2          # 3-frame windows of a 24-frame rollout
    assert os.path.getsize(os.path.join(out, "ablation.png")) > 10_000
    # re-running trains nothing again
    with open(os.path.join(out, "train_log.txt")) as f:
        trained = f.read().count(" iterations in ")
    r = run_py("ablation.py", f"--out_dir={out}", "--settings=chunk-wise", "--seeds=1", "--videos=4",
               "--repeats=1", "--clip_steps=5", "--", *MICRO, timeout=600)
    assert r.returncode == 0
    with open(os.path.join(out, "train_log.txt")) as f:
        assert f.read().count(" iterations in ") == trained > 0


def test_ablation_bad_arguments_are_one_line(tmp_path):
    r = run_py("ablation.py", "--settings=sideways")
    assert r.returncode != 0 and "unknown setting 'sideways'" in r.stderr and "Traceback" not in r.stderr
    r = run_py("ablation.py", f"--teacher={tmp_path}")
    assert r.returncode != 0 and "has no teacher.pt" in r.stderr and "Traceback" not in r.stderr
