"""evaluate.py: every metric on cases with known answers, one clear error per kind of bad input, and the CLI."""
import json
import math
import os
import time

import pytest
import torch

import toydata
from conftest import run_py
from evaluate import (MODELS, clip_scores, continue_videos, evaluate_videos, frame_consistency,
                      hard_negative_retrieval, late_window_adherence, oracle_scores, pretrained_clip, psnr, ssim,
                      toy_clip)
from sample import generate, load_model, rolling_cache

RANDOM = torch.Generator().manual_seed(0)


def truth(n, frames=12, resolution=32):
    prompts, seeds = toydata.eval_set(n, frames, resolution)
    return toydata.render_batch(prompts, seeds, frames, resolution), prompts


@pytest.fixture(scope="session")
def judge(tmp_path_factory):
    """A toy CLIP trained briefly (a fraction of the CLI's steps) at the tiny run's size, written and read back."""
    path = str(tmp_path_factory.mktemp("clip") / "toyclip.pt")
    toy_clip(path, 12, 32, progress=False, steps=200)            # trains, then writes the file
    assert os.path.exists(path)
    return toy_clip(path, 12, 32)                                 # reads it back


# -----------------------------------------------------------------------------
# SSIM and PSNR

def test_ssim_and_psnr_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity   # tests only, not a runtime need
    videos, _ = truth(6)
    a = torch.rand(6, 3, 32, 32, generator=RANDOM) * 2 - 1
    pairs = [(a, (a + 0.3 * torch.randn(a.shape, generator=RANDOM)).clamp(-1, 1)),   # random, noisy copy
             (a, torch.rand(6, 3, 32, 32, generator=RANDOM) * 2 - 1),                # two unrelated random images
             (videos[:, 0], videos[:, 6]),                                            # toy frames 6 apart
             (videos[:, 0], videos.roll(1, 0)[:, 0]),                                 # other toy videos
             (a[:, :, :13, :20], a.flip(0)[:, :, :13, :20])]                          # small and not square
    worst_ssim = worst_psnr = 0.0
    for x, y in pairs:
        ours_s, ours_p = ssim(x, y), psnr(x, y)
        for i in range(len(x)):
            xi, yi = x[i].double().numpy(), y[i].double().numpy()
            ref_s = structural_similarity(xi, yi, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=2.0, channel_axis=0)
            ref_p = peak_signal_noise_ratio(xi, yi, data_range=2.0)
            worst_ssim = max(worst_ssim, abs(ours_s[i].item() - ref_s))
            worst_psnr = max(worst_psnr, abs(ours_p[i].item() - ref_p))
    assert worst_ssim < 1e-6 and worst_psnr < 1e-6, (worst_ssim, worst_psnr)


def test_ssim_and_psnr_known_answers():
    x = torch.rand(4, 3, 16, 16, generator=RANDOM) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(4, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    # constant images: variances vanish, SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1), C1 = (0.01 * 2)^2
    c1, c2, C1 = 0.5, -0.25, (0.01 * 2) ** 2
    got = ssim(torch.full((1, 3, 16, 16), c1), torch.full((1, 3, 16, 16), c2)).item()
    assert abs(got - (2 * c1 * c2 + C1) / (c1 ** 2 + c2 ** 2 + C1)) < 1e-12
    # an error of 0.2 everywhere on a range of 2: 10 log10(2^2 / 0.2^2) = 20 dB
    assert abs(psnr(torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.2)).item() - 20.0) < 1e-6
    noise = torch.rand(4, 3, 32, 32, generator=RANDOM) * 2 - 1                     # independent images: no structure
    assert ssim(noise, noise.flip(0)).abs().max() < 0.1 and torch.equal(ssim(x, x.flip(0)), ssim(x.flip(0), x))


@pytest.mark.parametrize("a, b, fn, needle", [
    (torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 15), ssim, "one shape"),
    (torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16), psnr, "one shape"),
    (torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), psnr, "one shape"),
    (torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), ssim, "at least 11x11"),
])
def test_ssim_and_psnr_reject_bad_input(a, b, fn, needle):
    with pytest.raises(ValueError, match=needle):
        fn(a, b)


# -----------------------------------------------------------------------------
# The oracle

def test_oracle_scores_ceiling_and_floor_on_ground_truth():
    videos, prompts = truth(40)
    assert oracle_scores(videos, prompts)["all"] == 100.0
    floor = oracle_scores(videos, prompts[1:] + prompts[:1])["all"]
    assert floor < 25.0, f"a shuffled prompt should rarely match, got {floor}%"


def test_late_windows_of_long_ground_truth_match():
    prompts = [p for p in toydata.eval_set(12, 12, 32)[0] if "gradient" not in p]
    long = toydata.render_batch(prompts, list(range(len(prompts))), 48, 32)
    assert late_window_adherence(long, prompts) == 100.0
    assert late_window_adherence(long, prompts[1:] + prompts[:1]) < 50.0


# -----------------------------------------------------------------------------
# The toy CLIP judge, CLIP score, frame consistency

def test_toy_clip_retrieves_prompts_among_hard_negatives(judge):
    # trained for 200 steps here (the CLI trains 800): colour and direction of time already hold, motion is on its
    # way; chance is 1/8, 1/6 and 1/2
    acc = hard_negative_retrieval(judge, 200, 12, 32)
    assert acc["other colour"] >= 90 and acc["reversed transition"] >= 90 and acc["other motion"] >= 60, acc


def test_toy_clip_sees_time_and_separates_truth_from_shuffled_prompts(judge):
    videos, prompts = truth(48)
    right = clip_scores(judge, videos, prompts).mean().item()
    wrong = clip_scores(judge, videos, prompts[1:] + prompts[:1]).mean().item()
    assert right > 60 and right - wrong > 40, (right, wrong)
    # the same frames in reverse order are a video of the opposite direction. A judge blind to time embeds both
    # orders alike, so it is right on exactly one of the two questions of each pair: 50%
    flip = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    ahead = [p for p in toydata.eval_set(32, 12, 32)[0] if " from " in p and "gradient" not in p]
    back = [" ".join(flip.get(w, w) for w in p.split()) for p in ahead]
    videos = toydata.render_batch(ahead, list(range(len(ahead))), 12, 32)
    right_way = torch.cat([clip_scores(judge, videos, ahead) > clip_scores(judge, videos, back),
                           clip_scores(judge, videos.flip(1), back) > clip_scores(judge, videos.flip(1), ahead)])
    assert right_way.float().mean() >= 0.8, right_way


def test_frame_consistency_known_answers(judge):
    videos, _ = truth(8)
    still = videos[:, :1].expand(-1, 12, -1, -1, -1)                 # the first frame, held for 12 frames
    assert torch.allclose(frame_consistency(judge, still), torch.ones(8), atol=1e-5)
    mixed = torch.where((torch.arange(12) % 2 == 1).view(1, 12, 1, 1, 1), videos.roll(1, 0), videos)
    smooth, jumpy = frame_consistency(judge, videos), frame_consistency(judge, mixed)
    assert smooth.mean() > jumpy.mean() + 0.2 and (smooth <= 1 + 1e-5).all(), (smooth, jumpy)


def test_the_toy_clip_cache_is_read_back_and_checked(tmp_path, capsys):
    path = str(tmp_path / "toyclip.pt")
    trained, read = toy_clip(path, 6, 16, progress=False, steps=2), toy_clip(path, 6, 16)
    assert all(torch.equal(a, b) for a, b in zip(trained["model"].state_dict().values(),
                                                 read["model"].state_dict().values()))
    with pytest.raises(ValueError, match="holds a toy CLIP for 6 frames at 16px, not 12 frames at 32px"):
        toy_clip(path, 12, 32)
    ck = torch.load(path, weights_only=True)
    torch.save(dict(ck, world=[0.0] * len(ck["world"])), path)          # as if toydata had drawn another world
    toy_clip(path, 6, 16, progress=False, steps=3)
    assert "another version of toydata's world" in capsys.readouterr().err
    assert torch.load(path, weights_only=True)["steps"] == 3, "a stale judge was not retrained"
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the toy CLIP"):
        toy_clip(path, 6, 16)


def test_a_pretrained_clip_folder_loads_offline_and_scores(tmp_path):
    # a stand-in for a downloaded CLIP: random tiny weights and a word-level tokenizer, saved the transformers way
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast
    words = {w: i for i, w in enumerate(["[PAD]", "[UNK]"] + sorted({w for p in toydata.ALL_PROMPTS
                                                                     for w in p.lower().split()}))}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(tmp_path)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=dict(vocab_size=len(words), **small), projection_dim=16,
                         vision_config=dict(image_size=32, patch_size=16, **small))).save_pretrained(tmp_path)
    clip = pretrained_clip(str(tmp_path))
    videos, prompts = truth(4)
    r = evaluate_videos(videos, prompts, ["clip_score", "frame_consistency"], judge=clip)
    assert math.isfinite(r["clip_score"]) and -1 <= r["frame_consistency"] <= 1 + 1e-5
    still = videos[:, :1].expand(-1, 12, -1, -1, -1)
    assert abs(evaluate_videos(still, prompts, ["frame_consistency"], judge=clip)["frame_consistency"] - 1) < 1e-5
    with pytest.raises(ValueError, match="no such directory"):
        pretrained_clip(str(tmp_path / "missing"))


# -----------------------------------------------------------------------------
# evaluate_videos: the batch API

def test_evaluate_videos_on_ground_truth(judge):
    videos, prompts = truth(16)
    everything = ["oracle", "clip_score", "frame_consistency", "ssim", "psnr"]
    r = evaluate_videos(videos, prompts, everything, references=videos, judge=judge)
    assert r["oracle"]["all"] == 100.0 and r["oracle_windows"] == [100.0] * 10
    assert abs(r["ssim"] - 1) < 1e-9 and r["ssim_per_frame"] == pytest.approx([1.0] * 12) and r["psnr"] == math.inf
    as_list = evaluate_videos(list(videos), prompts, everything, references=list(videos), judge=judge)
    assert as_list["clip_score"] == pytest.approx(r["clip_score"], abs=1e-4) and as_list["oracle"] == r["oracle"]
    other = evaluate_videos(videos.roll(1, 0), prompts, ["ssim", "psnr"], references=videos)
    assert other["ssim"] < 0.7 and other["psnr"] < 15, other


def test_fps_times_a_generator():
    videos, prompts = truth(4)

    def slow_generator(ps):  # 0.2 s per call, then the truth
        time.sleep(0.2)
        return videos[:len(ps)]
    r = evaluate_videos(slow_generator, prompts, ["fps", "oracle"])
    assert 0.2 <= r["seconds"] < 0.5 and r["fps"] == pytest.approx(4 * 12 / r["seconds"]), r
    assert r["oracle"]["all"] == 100.0


@pytest.mark.parametrize("change, needle", [
    (dict(metrics=["oracle", "fid"]), "unknown metric"),
    (dict(videos=torch.zeros(2, 12, 1, 32, 32)), r"shape \(B, F, 3, H, W\)"),
    (dict(videos=torch.zeros(12, 3, 32, 32)), r"shape \(B, F, 3, H, W\)"),
    (dict(videos=torch.zeros(2, 12, 3, 32, 16)), "square toy frames, got 32x16"),
    (dict(videos=torch.full((2, 12, 3, 32, 32), 255.0)), r"\[-1, 1\]"),
    (dict(videos=torch.full((2, 12, 3, 32, 32), float("nan"))), "NaN"),
    (dict(videos=[torch.zeros(12, 3, 32, 32), torch.zeros(6, 3, 32, 32)]), "share one shape"),
    (dict(videos="video.mp4"), "must be a tensor"),
    (dict(prompts=["A red circle moving clockwise"]), "2 videos but 1 prompts"),
    (dict(prompts=["A red circle moving clockwise", "A purple circle moving clockwise"]), "unknown word 'purple'"),
    (dict(metrics=["ssim"]), "references"),
    (dict(metrics=["psnr"], references=torch.zeros(2, 9, 3, 32, 32)), "must have the videos' shape"),
    (dict(metrics=["fps"]), "callable"),
])
def test_bad_input_gives_one_clear_error(change, needle):
    args = dict(videos=torch.zeros(2, 12, 3, 32, 32), prompts=["A red circle moving clockwise"] * 2, metrics=["oracle"])
    args.update(change)
    with pytest.raises(ValueError, match=needle):
        evaluate_videos(args.pop("videos"), args.pop("prompts"), **args)


# -----------------------------------------------------------------------------
# Continuations (the references of SSIM and PSNR) and the CLI

def test_continuing_a_models_own_first_chunk_reproduces_its_video(micro_run):
    out, _ = micro_run
    prompts, seeds = ["A red circle moving from left to right", "A blue square moving clockwise"], [3, 4]
    for which in ("ode", "self_forcing"):
        net, cfg = load_model(out, which)
        own, _ = generate(net, cfg, prompts, cfg["num_frames"], seeds, which=which, progress=False)
        again = continue_videos(net, cfg, own, prompts, seeds, which)     # same seeds: same noise, same context
        assert (again - own).abs().max() < 1e-4, (which, (again - own).abs().max())
        assert not again.requires_grad, "a continuation kept its autograd graph (about 44 MB a video at 32x32)"
    net, cfg = load_model(out, "teacher")
    videos = toydata.render_batch(prompts, seeds, cfg["num_frames"], cfg["resolution"])
    cont = continue_videos(net, cfg, videos, prompts, seeds, "teacher")
    assert cont.shape == videos.shape and torch.equal(cont[:, :cfg["chunk"]], videos[:, :cfg["chunk"]])
    assert torch.isfinite(cont).all()


def test_orbit_continuation_continues_the_truth_cropped_at_start(micro_run, monkeypatch):
    import evaluate
    out, _ = micro_run
    net, cfg = load_model(out, "self_forcing")
    seen = []

    def the_truth(model, config, truth, prompts, seeds, which):   # a perfect model: the continuation is the truth
        seen.append((truth, prompts, seeds))
        return truth

    monkeypatch.setattr(evaluate, "continue_videos", the_truth)
    assert evaluate.orbit_continuation(net, cfg, "self_forcing", start=7, videos=6) == 1.0
    truth, prompts, seeds = seen[0]
    assert all("clockwise" in p for p in prompts) and len(prompts) == 6 and min(seeds) >= toydata.EVAL_SEED_OFFSET
    longer = toydata.render_batch(prompts, seeds, 7 + cfg["num_frames"], cfg["resolution"])
    assert torch.equal(truth, longer[:, 7:]), "not frames [start, start + F) of the longer ground truth"
    monkeypatch.setattr(evaluate, "continue_videos", lambda m, c, truth, *a: truth.flip(-1))   # mirrored: turns back
    assert evaluate.orbit_continuation(net, cfg, "self_forcing", start=0, videos=6) == 0.0


def test_cli_on_the_micro_run(micro_run, tmp_path):
    out, _ = micro_run
    clip = str(tmp_path / "toyclip.pt")
    r = run_py("evaluate.py", "--out_dir", out, "--videos", "4", "--repeats", "1", "--toy_clip", clip,
               "--clip_steps", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    for needle in ("ground truth (ceiling)", "shuffled prompts (floor)", "self_forcing", "CLIP", "SSIM", "PSNR",
                   "hard negatives", "faster", "KV cache"):
        assert needle in r.stdout, (needle, r.stdout)
    assert os.path.exists(clip), "the toy CLIP was not cached"
    with open(os.path.join(out, "eval_4_teacher+ode+self_forcing.json")) as f:   # not the 64-video eval.json
        rows = json.load(f)["rows"]
    assert set(rows) >= {"teacher", "ode", "self_forcing", "ground truth (ceiling)", "shuffled prompts (floor)"}
    assert rows["ground truth (ceiling)"]["oracle"]["all"] == 100.0 and rows["ground truth (ceiling)"]["ssim"] == 1.0
    assert all(math.isfinite(rows[m][k]) for m in ("teacher", "ode", "self_forcing")
               for k in ("clip_score", "frame_consistency", "ssim", "psnr"))
    with open(os.path.join(out, "eval_4_teacher+ode+self_forcing.json")) as f:
        saved = json.load(f)
    Fr = load_model(out, "self_forcing")[1]["num_frames"]
    assert f"within the first {Fr} frames" in r.stdout and set(saved["drift_by_motion"]) <= {"straight", "orbits"}
    assert f"the teacher's own {Fr}-frame videos" in r.stdout and 0 <= saved["drift_teacher_first_length"] <= 100


def test_drift_is_split_into_straight_lines_and_orbits(micro_run, monkeypatch):
    import evaluate
    out, _ = micro_run
    net, cfg = load_model(out, "self_forcing")

    def straight_right_orbits_mirrored(model, config, prompts, frames, seeds, which="self_forcing", **kw):
        # a teacher that draws the truth; a student that gets the straight lines right and turns every orbit backwards
        videos = toydata.render_batch(prompts, seeds, frames, config["resolution"])
        if which == "teacher":
            return videos, {"first_chunk_s": 0.0}
        orbit = torch.tensor(["clockwise" in p for p in prompts])
        return torch.where(orbit.view(-1, 1, 1, 1, 1), videos.flip(-1), videos), {"first_chunk_s": 0.0}

    monkeypatch.setattr(evaluate, "generate", straight_right_orbits_mirrored)
    prompts, seeds = toydata.eval_set(16, 12)
    net_cfg = (net, dict(cfg, num_frames=12))
    r = evaluate.drift_and_speed({"teacher": net_cfg, "self_forcing": net_cfg}, prompts, seeds, 12, 32, 1)
    assert r["drift_teacher_first_length"] == 100.0, r   # the teacher's own videos, not the student's
    split = r["drift_by_motion"]
    assert split["straight"]["first_length"] == split["straight"]["last_quarter"] == 100.0, split
    assert split["orbits"]["first_length"] == split["orbits"]["last_quarter"] == 0.0, split
    n = {k: split[k]["videos"] for k in split}
    assert n["orbits"] > 0 and sum(n.values()) == r["drift_videos"], (n, r["drift_videos"])
    share = pytest.approx(100 * n["straight"] / r["drift_videos"])
    assert r["drift_last_quarter"] == share and r["drift_first_length"] == share, r
    # evaluate.main hands on the table's videos: the teacher's reference is read from them, not sampled again
    asked = []
    monkeypatch.setattr(evaluate, "generate", lambda *a, **kw: asked.append(len(a[2])) or
                        straight_right_orbits_mirrored(*a, **kw))
    made = straight_right_orbits_mirrored(net, cfg, prompts, 12, seeds)[0]   # the table's teacher, orbits mirrored
    r = evaluate.drift_and_speed({"teacher": net_cfg, "self_forcing": net_cfg}, prompts, seeds, 12, 32, 1, made)
    assert r["drift_teacher_first_length"] == share, r
    assert sorted(set(asked)) == [1, r["drift_videos"]], asked   # the student's rollouts and the one-video timings


@pytest.mark.parametrize("models, rows, lines", [
    ("ode,self_forcing", {"ode", "self_forcing"}, ("rolling cache", "KV cache")),   # drift and cache: no teacher
    ("teacher", {"teacher"}, ())])                                                # no student: no drift, no speed
def test_cli_judges_only_the_models_asked_for(micro_run, tmp_path, models, rows, lines):
    out, _ = micro_run
    r = run_py("evaluate.py", "--out_dir", out, "--videos", "3", "--repeats", "1", "--models", models,
               "--toy_clip", str(tmp_path / "toyclip.pt"), "--clip_steps", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    table = r.stdout.split("judge:")[0]
    assert {m for m in MODELS if any(line.startswith(m + " ") for line in table.splitlines())} == rows, r.stdout
    assert all(needle in r.stdout for needle in lines) and "x faster" not in r.stdout, r.stdout
    assert ("rolling cache" in r.stdout) == ("self_forcing" in rows), r.stdout
    with open(os.path.join(out, f"eval_3_{models.replace(',', '+')}.json")) as f:
        saved = json.load(f)
    assert set(saved["models"]) == rows and set(saved["rows"]) - {"ground truth (ceiling)",
                                                                  "shuffled prompts (floor)"} == rows


def test_cli_takes_the_rolling_cache_of_the_drift(micro_run, tmp_path):
    out, _ = micro_run
    window, sink = rolling_cache(load_model(out, "self_forcing")[1])
    args = ("--out_dir", out, "--videos", "3", "--repeats", "1", "--models", "self_forcing", "--toy_clip",
            str(tmp_path / "toyclip.pt"), "--clip_steps", "5")
    r = run_py("evaluate.py", *args)
    assert r.returncode == 0 and f"rolling cache: the last {window} frames)" in r.stdout, r.stdout
    with open(os.path.join(out, "eval_3_self_forcing.json")) as f:
        saved = json.load(f)
    assert (saved["window"], saved["sink"]) == (window, sink) == (3, 0), saved
    r = run_py("evaluate.py", *args, "--sink", "3")   # the first chunk kept, as config/orbits_long.py's runs
    assert r.returncode == 0 and "rolling cache: the first 3 frames and the last 3)" in r.stdout, r.stdout
    with open(os.path.join(out, "eval_3_self_forcing_window3_sink3.json")) as f:   # a file of its own
        saved = json.load(f)
    assert (saved["window"], saved["sink"]) == (3, 3) and 0 <= saved["drift_last_quarter"] <= 100


@pytest.mark.parametrize("extra, needle", [((), "no checkpoint"), (("--videos", "0"), "at least 1"),
                                           (("--models", "teacher,critic"), "comma-separated list"),
                                           (("--clip", "/no/such/clip"), "no such directory")])
def test_cli_errors_are_one_line(micro_run, tmp_path, extra, needle):
    out = micro_run[0] if extra else str(tmp_path)
    r = run_py("evaluate.py", "--out_dir", out, *extra)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_prompt_sensitivity_is_zero_for_the_same_prompt_and_positive_for_another(micro_run):
    from evaluate import load_model, prompt_sensitivity
    out, _ = micro_run
    model, config = load_model(out, "teacher")
    p = "A white circle moving from left to right"
    same = prompt_sensitivity(model, p, p, n=2, frames=config["num_frames"], resolution=config["resolution"])
    assert set(same) == {0.5, 0.8, 0.95, 1.0} and all(v == 0.0 for v in same.values())
    other = prompt_sensitivity(model, p, "A red square moving clockwise", n=2, frames=config["num_frames"],
                               resolution=config["resolution"])
    assert all(v >= 0.0 for v in other.values()) and sum(other.values()) > 0, other
    # with clean context, only the noised frames count, and the context frames enter the model at t = 0
    ctx = prompt_sensitivity(model, p, "A red square moving clockwise", n=2, frames=config["num_frames"],
                             resolution=config["resolution"], context=3)
    assert sum(ctx.values()) > 0 and ctx != other, (ctx, other)


def test_word_visibility_sees_which_side_the_trail_is_on_and_not_the_rotation_sense():
    from evaluate import word_visibility
    p = "A white circle moving from left to right"
    assert word_visibility(p, p, n=20) == [0.0, 0.0, 0.0]                      # the same videos: nothing differs
    floor = word_visibility(p, p, n=200, other_first_seed=200)                 # other seeds: sampling error only
    lr = word_visibility(p, "A white circle moving from right to left", n=200)
    assert all(d > 3 * f for d, f in zip(lr, floor)), (lr, floor)             # the trail's side, the body's step
    # an orbit may start anywhere on its circle, so next to the body the two senses look alike on average
    cw = word_visibility("A white circle moving clockwise", "A white circle moving counter-clockwise", n=200)
    assert all(d < 0.25 * x for d, x in zip(cw, lr)), (cw, lr)
    assert len(word_visibility(p, p, n=2, frames=5)) == 5


def test_confusion_counts_what_the_oracle_reads():
    from evaluate import confusion
    import toydata
    prompts = ["A red circle moving from left to right", "A red square moving from right to left",
               "Color gradient transitioning from blue to red"]
    truth = toydata.render_batch(prompts, [0, 1, 2], 12, 32)
    assert confusion(truth, prompts) == {"left_to_right": {"left_to_right": 1}, "right_to_left": {"right_to_left": 1}}
    flipped = confusion(truth.flip(-1), prompts)                                # mirrored videos: every sign wrong
    assert flipped == {"left_to_right": {"right_to_left": 1}, "right_to_left": {"left_to_right": 1}}, flipped
    assert confusion(truth, prompts, "shape") == {"circle": {"circle": 1}, "square": {"square": 1}}
    swapped = confusion(truth.roll(1, 0), prompts, "shape")                     # each video under another's prompt
    assert swapped == {"circle": {"None": 1}, "square": {"circle": 1}}, swapped   # the transition has no object
    with pytest.raises(AssertionError, match="'motion' or 'shape'"):
        confusion(truth, prompts, "colour")


def test_motion_onset_tells_a_still_first_chunk_from_a_reversed_one():
    from evaluate import motion_onset
    prompts = [p for p in toydata.ALL_PROMPTS if "from" in p and "Color" not in p][:16] + \
        ["A red circle moving clockwise", "Color gradient transitioning from blue to red"]   # not straight: skipped
    truth = toydata.render_batch(prompts, list(range(len(prompts))), 12, 32)
    keys = ["first_asked", "first_reversed", "first_static", "rest_asked", "rest_reversed"]
    got = motion_onset(truth, prompts)
    assert [got[k] for k in keys] == [100, 0, 0, 100, 0] and got["videos"] == 16, got
    got = motion_onset(truth.flip(1), prompts)                                  # played backwards: every sign wrong
    assert [got[k] for k in keys] == [0, 100, 0, 0, 100], got
    # a first chunk that holds still (its first frame three times), then the true motion from frame 3 on
    still = torch.cat([truth[:, :1].expand(-1, 3, -1, -1, -1), truth[:, 3:]], 1)
    got = motion_onset(still, prompts)
    assert [got[k] for k in keys] == [0, 0, 100, 100, 0], got
    with pytest.raises(AssertionError, match="more than one chunk"):
        motion_onset(truth[:, :3], prompts)


def test_motion_steps_sees_even_steps_turns_and_a_chunk_stutter():
    from evaluate import motion_steps
    straight = [p for p in toydata.ALL_PROMPTS if "from" in p and "Color" not in p][::6]      # 16 of 96
    orbits = [p for p in toydata.ALL_PROMPTS if "clockwise" in p][::6]                        # 8 of 48
    prompts = straight + orbits + ["Color gradient transitioning from blue to red"]
    truth = toydata.render_batch(prompts, list(range(len(prompts))), 12, 32)
    got = motion_steps(truth, prompts)
    assert got["straight_videos"] == 16 and got["orbit_videos"] == 8, got          # the transition is skipped
    assert len(got["step_px"]) == 11 and all(1.4 < s < 2.6 for s in got["step_px"]), got["step_px"]
    assert len(got["turn_deg"]) == 10 and all(14 < t < 31 for t in got["turn_deg"]), got["turn_deg"]
    # played backwards: every orbit turns the other way, straight lines step as far
    back = motion_steps(truth.flip(1), prompts)
    assert all(-31 < t < -14 for t in back["turn_deg"]) and back["step_px"] == pytest.approx(got["step_px"][::-1])
    assert got["turn_agree"] == [1.0] * 10 and back["turn_agree"] == [0.0] * 10, (got, back)
    # half the orbits played backwards: half of them turn the asked way at every turn
    half = torch.cat([truth[:len(straight) + 4], truth[len(straight) + 4:].flip(1)])
    assert motion_steps(half, prompts)["turn_agree"] == [0.5] * 10
    # each chunk of 3 frames holds its first frame: no move inside a chunk, the whole chunk's move across the seam
    stutter = truth[:, [0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9, 9]]
    steps = motion_steps(stutter, prompts)["step_px"]
    assert steps[0] == steps[1] == 0 and steps[2] > 4, steps


def test_shape_readback_reads_the_models_prediction_not_the_truth():
    from evaluate import shape_readback
    prompts = [p for p in toydata.ALL_PROMPTS if "shape" in toydata.parse_prompt(p)][:12:2]
    keeps = lambda x, t, tokens: x                                              # hands back what it is shown
    assert shape_readback(keeps, sigmas=(0.02,), frames=6, prompts=prompts) == {0.02: 100.0}
    circles = lambda x, t, tokens: toydata.render_batch(                        # draws circles whatever it is told
        ["A white circle moving from left to right"] * len(x), list(range(len(x))), x.shape[1], x.shape[-1])
    got = shape_readback(circles, sigmas=(0.02, 0.5), frames=6, prompts=prompts)
    truth_circles = 100 * sum("circle" in p for p in prompts) / len(prompts)
    assert got == {0.02: truth_circles, 0.5: truth_circles} and 0 < truth_circles < 100, got


def test_each_world_gets_its_own_toy_clip_file(monkeypatch):
    import evaluate
    monkeypatch.setattr(toydata, "ORBIT_START_DEG", 180.0)     # load_model sets it from a checkpoint: set it here
    assert evaluate.toy_clip_name(12, 32) == "toyclip_32px_12f.pt"                 # the default world: anywhere
    monkeypatch.setattr(toydata, "ORBIT_START_DEG", 30.0)
    assert not toydata.orbits_start_anywhere()
    assert evaluate.toy_clip_name(12, 32) == "toyclip_32px_12f_orbits30.pt"        # orbits near the top
