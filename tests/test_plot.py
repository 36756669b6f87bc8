"""plot.py: the CLI writes every figure of a run, the pictures say what the code does, errors are one line."""
import os
import shutil

import imageio.v3 as iio
import pytest
import torch

import plot
import toydata
from conftest import run_py
from model import frame_visibility, make_attention_mask
from sample import generate, load_model

FIGURES = ["curves.png", "masks.png", "grid.png", "grid.gif", "compare.png", "compare.gif", "trajectory.png",
           "drift.png"]


def check_image(path):
    assert os.path.getsize(path) < 1_000_000, f"{path} is {os.path.getsize(path)} bytes: too big for a README"
    with open(path, "rb") as f:
        magic = f.read(8)
    assert magic == b"\x89PNG\r\n\x1a\n" if path.endswith(".png") else magic[:4] == b"GIF8", f"{path}: bad header"
    image = iio.imread(path, index=0)                                          # (h, w, 3 or 4), first GIF frame
    assert 300 <= image.shape[1] <= 800 and 100 <= image.shape[0] <= 2000, f"{path}: odd size {image.shape}"
    assert image.std() > 5, f"{path} is blank"


def test_cli_writes_every_figure(micro_run):
    out, _ = micro_run
    r = run_py("plot.py", out, "--prompts", "2", "--drift_videos", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    for name in FIGURES:
        check_image(os.path.join(out, "plots", name))
    assert "skipped" not in r.stdout, r.stdout


def test_partial_run_plots_what_exists(micro_run, tmp_path, capsys):
    out, _ = micro_run     # only the teacher finished: no student, so no drift, and the rest without it
    for name in ("log.jsonl", "teacher.pt"):
        shutil.copy(os.path.join(out, name), tmp_path / name)
    assert plot.main(["--out_dir", str(tmp_path), "--prompts", "1"]) == 0
    stdout = capsys.readouterr().out
    for needle in ("ode_init.pt missing", "self_forcing.pt missing", "skipped: drift.png"):
        assert needle in stdout, (needle, stdout)
    written = sorted(os.listdir(tmp_path / "plots"))
    assert written == sorted(set(FIGURES) - {"drift.png"}), written


def test_errors_are_one_line(tmp_path, capsys):
    r = run_py("plot.py", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "no folder" in r.stderr, r.stderr
    (tmp_path / "run").mkdir()
    cases = [([], "name the training run folder"), ([str(tmp_path / "run")], "no training log")]
    for args, needle in cases:
        assert plot.main(args) == 2, args
        assert needle in capsys.readouterr().err
    (tmp_path / "run" / "log.jsonl").write_text('{"stage": "teacher", "iter": 0, "time": 0, "loss": 1.0}\n')
    assert plot.main(["--out_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint in" in err and len(err.strip().splitlines()) == 1, err


def test_mask_picture_is_make_attention_mask(tmp_path):
    F, K, N, W, S = 12, 3, 4, 6, 3
    drawn = plot.plot_masks(str(tmp_path / "masks.png"), F, K, window=W, sink=S, long_frames=24)
    check_image(str(tmp_path / "masks.png"))
    frames = lambda mode, n=F, **kw: make_attention_mask(n, N, K, mode, **kw)[::N, ::N].numpy()   # token -> frame
    assert ((drawn["bidirectional"] > 0) == frames("bidirectional")).all()
    assert ((drawn["block-causal"] > 0) == frames("causal")).all()
    assert ((drawn["teacher forcing"] > 0) == frames("teacher_forcing")).all()
    assert ((drawn["streaming"] > 0) == frames("causal", 24, window=W, sink=S)).all()
    assert ((drawn["streaming"] > 0) == frame_visibility(24, K, W, S).numpy()).all()
    # the colours mean what the legend says: own chunk on the block diagonal, sink frames in the first columns
    own = (torch.arange(F)[:, None] // K == torch.arange(F)[None, :] // K).numpy()
    assert ((drawn["block-causal"] == 2) == own).all()
    assert (drawn["streaming"][K:, :S] == 3).all() and not (drawn["streaming"][:, S:] == 3).any()
    assert set(drawn["bidirectional"].ravel()) == {1}, "the bidirectional picture has no chunks to mark"


def test_trajectories_end_where_the_samplers_end(micro_run):
    out, _ = micro_run     # the figure shows the very chunk sample.py streams, not a look-alike
    prompt = "A red circle moving from left to right"
    student, config = load_model(out, "self_forcing")
    K = config["chunk"]
    steps = plot.student_trajectory(student, config, prompt, seed=5, chunk_index=1)
    assert len(steps) == 4 and [s for s, _, _ in steps] == sorted((s for s, _, _ in steps), reverse=True)
    video = generate(student, config, [prompt], config["num_frames"], [5], progress=False)[0][0]
    assert torch.allclose(steps[-1][2], video[K:2 * K], atol=1e-5)
    teacher, _ = load_model(out, "teacher")
    t_steps, end = plot.teacher_trajectory(teacher, config, prompt, seed=5, frames=slice(K, 2 * K))
    assert [s for s, _, _ in t_steps] == pytest.approx([s for s, _, _ in steps]), "teacher shown at other sigmas"
    video = generate(teacher, config, [prompt], config["num_frames"], [5], which="teacher", progress=False)[0][0]
    assert torch.allclose(end, video[K:2 * K], atol=1e-5)
    # the first chunk, which the teacher makes in two windows (frame 0 alone, then the rest)
    assert config["teacher_first_frame"]
    t_steps, end = plot.teacher_trajectory(teacher, config, prompt, seed=5, frames=slice(0, K))
    assert torch.allclose(end, video[:K], atol=1e-5) and all(x0.shape == end.shape for _, _, x0 in t_steps)
    with pytest.raises(AssertionError, match="whole windows"):
        plot.teacher_trajectory(teacher, config, prompt, seed=5, frames=slice(1, K + 1))


def test_drift_curves_agree_with_window_adherence():
    prompts = ["A red circle moving from left to right", "A blue square moving clockwise"]
    videos = toydata.render_batch(prompts, [0, 1], 24, 32)
    curves = plot.drift_curves(videos, prompts)
    assert (curves["all"] == 100).all() and len(curves["all"]) == 22
    wrong = plot.drift_curves(videos, prompts[::-1])["all"]
    expected = [100 * sum(x) / 2 for x in zip(*(toydata.window_adherence(v, p) for v, p in zip(videos, prompts[::-1])))]
    assert wrong.tolist() == pytest.approx(expected)


def test_display_video_writes_a_gif_outside_notebooks(tmp_path, capsys, monkeypatch):
    video = toydata.make_video("A red circle moving from left to right", num_frames=6, resolution=16)
    path = plot.display_video(video, str(tmp_path / "v.gif"))
    assert path in capsys.readouterr().out
    assert iio.imread(path, index=None).shape[:3] == (6, 64, 64)               # all frames, scaled 4x
    assert os.path.exists(plot.display_video(video))                          # default: a fresh temporary file
    shown = []
    monkeypatch.setattr(plot, "in_notebook", lambda: True)
    ipd = pytest.importorskip("IPython.display")
    monkeypatch.setattr(ipd, "display", shown.append)
    assert plot.display_video(video) is None and shown[0].data[:4] == b"GIF8"
