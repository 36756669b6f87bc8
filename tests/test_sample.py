"""sample.py: the CLI writes videos and reports speed; the KV cache changes nothing but speed; errors are one line."""
import os
import shutil

import pytest
import torch

from conftest import run_py
import toydata
from sample import SampleError, generate, generate_video, load_model, rolling_cache

PROMPT = "A red circle moving from left to right"


def test_cli_writes_mp4_gif_png_and_reports_speed(micro_run, tmp_path):
    out, _ = micro_run
    r = run_py("sample.py", "--out_dir", out, "--prompt", PROMPT, "--save_dir", str(tmp_path), "--num_samples", "2")
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path))
    for ext in (".gif", ".png", ".mp4"):
        assert sum(f.endswith(ext) for f in files) == 2, files
    assert "first chunk after" in r.stdout and "frames/s" in r.stdout


def test_no_kv_cache_reproduces_the_cached_video(micro_run):
    out, _ = micro_run
    a = generate_video(PROMPT, out_dir=out, seed=3)
    b = generate_video(PROMPT, out_dir=out, seed=3, kv_cache=False)
    c = generate_video(PROMPT, out_dir=out, seed=4)
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32
    assert (a - b).abs().max() <= 1e-5, f"KV cache and recompute differ by {(a - b).abs().max():.2e}"
    assert not torch.equal(a, c), "different seeds gave the same video"
    assert a.min() >= -1 and a.max() <= 1


def test_longer_than_training_through_the_rolling_cache(micro_run):
    out, _ = micro_run
    v = generate_video(PROMPT, out_dir=out, num_frames=24, seed=0)   # 4x the micro training length
    assert v.shape[0] == 24 and torch.isfinite(v).all()


def test_rolling_cache_holds_the_context_training_showed():
    """Past the training length the cache keeps num_frames - K frames: the last ones, or the sink frames and then as
    many recent ones as fit (at least one chunk of them); an older run's config (no sink key) keeps the last F - K."""
    tiny = dict(num_frames=12, chunk=3, window=0, sink=0)
    assert rolling_cache(tiny) == (9, 0) and rolling_cache(dict(num_frames=12, chunk=3)) == (9, 0)
    assert rolling_cache(dict(tiny, sink=3)) == (6, 3), "config/orbits_long.py: the first chunk and the last 6"
    assert rolling_cache(dict(tiny, num_frames=6, sink=3)) == (3, 3), "at least one chunk of recent frames"
    assert rolling_cache(dict(tiny, window=4)) == (4, 0) and rolling_cache(tiny, window=5, sink=2) == (5, 2)
    assert rolling_cache(tiny, sink=3) == (6, 3), "--sink alone: the window shrinks to fit"
    with pytest.raises(SampleError, match="--sink must be >= 0, got -1"):
        rolling_cache(tiny, sink=-1)


def test_the_sink_changes_nothing_within_the_training_length(micro_run):
    out, _ = micro_run
    model, config = load_model(out, "self_forcing")
    assert rolling_cache(config) == (3, 0), "the micro run (6 frames, chunk 3) keeps the last 3 frames"
    video = lambda F, **cache: generate(model, config, [PROMPT], F, [0], progress=False, **cache)[0]
    assert torch.equal(video(6), video(6, sink=3))      # nothing is evicted yet
    plain, kept = video(24), video(24, sink=3)
    assert torch.equal(plain[:, :6], kept[:, :6])
    assert not torch.equal(plain[:, 6:9], kept[:, 6:9]), "frames 6-8 see frames 0-2 too with the sink"


def test_teacher_and_ode_models_sample(micro_run):
    out, _ = micro_run
    for which in ("teacher", "ode"):
        v = generate_video(PROMPT, out_dir=out, model=which, seed=0)
        assert v.shape == (6, 3, 16, 16), which


def test_teacher_videos_do_not_depend_on_their_batch(micro_run):
    """generate() makes teacher videos a few at a time (model.videos_per_call): 18 in one call are those made alone."""
    import toydata
    from model import videos_per_call
    from sample import generate, load_model
    out, _ = micro_run
    model, config = load_model(out, "teacher")
    prompts, seeds = toydata.ALL_PROMPTS[:18], list(range(100, 118))
    together, _ = generate(model, config, prompts, 6, seeds, "teacher", progress=False)
    n = videos_per_call("cpu")
    assert n < 18, "the test needs a split inside its 18 videos"
    for i in (0, n - 1, n, 17):   # either side of the first split
        alone, _ = generate(model, config, prompts[i:i + 1], 6, seeds[i:i + 1], "teacher", progress=False)
        assert (together[i] - alone[0]).abs().max() <= 1e-6, f"video {i} changed with its batch"
    assert not torch.equal(together[16], together[17])


def test_errors_are_one_clear_line(micro_run, tmp_path):
    out, _ = micro_run
    cases = [
        (["--out_dir", str(tmp_path), "--prompt", PROMPT], "no checkpoint"),
        (["--out_dir", out, "--prompt", "A red circel moving from left to right"], "circel"),
        (["--out_dir", out, "--prompt", PROMPT, "--num_frames", "7"], "multiple of the chunk"),
        (["--out_dir", out], "--prompt"),
        (["--out_dir", out, "--prompts_file", str(tmp_path / "none.txt")], "prompts file not found"),
    ]
    for args, needle in cases:
        r = run_py("sample.py", *args)
        assert r.returncode != 0, args
        assert needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_teacher_order_reads_the_checkpoint_config():
    from sample import teacher_order
    assert teacher_order({"chunk": 3, "teacher_chunk": 0, "teacher_first_frame": True}) == dict(chunk=3, first_frame=True)
    assert teacher_order({"chunk": 1, "teacher_chunk": 3}) == dict(chunk=3, first_frame=False)   # saved before the key


def test_loading_a_run_restores_its_world(micro_run, tmp_path):
    """A run trained with orbit_start_deg draws its ground truth from that world in evaluate.py and plot.py:
    load_model sets toydata.ORBIT_START_DEG from the checkpoint, and back to 180 for a default-world run."""
    out, _ = micro_run
    path = os.path.join(tmp_path, "self_forcing.pt")
    shutil.copy(os.path.join(out, "self_forcing.pt"), path)
    ck = torch.load(path, weights_only=True)
    ck["config"]["orbit_start_deg"] = 30.0
    torch.save(ck, path)
    try:
        load_model(str(tmp_path))
        assert toydata.ORBIT_START_DEG == 30.0
        load_model(out)
        assert toydata.ORBIT_START_DEG == 180.0
        ck["config"]["orbit_start_deg"] = 200.0                                  # not a world train.py makes
        torch.save(ck, path)
        with pytest.raises(SampleError, match="orbit_start_deg 200.0"):
            load_model(str(tmp_path))
    finally:
        toydata.ORBIT_START_DEG = 180.0
