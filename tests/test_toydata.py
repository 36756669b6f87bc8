"""Tests of the toy world: prompts, renderer, datasets and, above all, the oracle (the project's judge).

    python -m pytest tests/test_toydata.py -q -s     # -s shows the measured numbers
"""
import math
import os
import random
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import toydata as T  # noqa: E402

OBJECT_PROMPTS = [p for p in T.ALL_PROMPTS if T.parse_prompt(p)["scene"] == "object"]


def mass_centre(frame):
    """Brightness-weighted centre (x, y) in pixels of one frame (3, H, W), no wrap-around: for hand checks."""
    w = ((frame + 1) / 2).amax(0)                                               # (H, W)
    H, W = w.shape
    x = (w.sum(0) * (torch.arange(W) + 0.5)).sum() / w.sum()
    y = (w.sum(1) * (torch.arange(H) + 0.5)).sum() / w.sum()
    return x.item(), y.item()


def reading_matches(reading, prompt):
    return reading == T.parse_prompt(prompt)


@pytest.fixture(scope="module")
def ground_truth():
    """Every prompt of the grammar 6 times with random seeds: 1200 videos, 12 frames, 32x32, one render call."""
    rng = random.Random(0)
    pairs = [(p, rng.randrange(T.EVAL_SEED_OFFSET)) for p in T.ALL_PROMPTS for _ in range(6)]
    videos = T.render_batch([p for p, _ in pairs], [s for _, s in pairs], 12, 32)
    readings = [T.read_video(v) for v in videos]
    return pairs, videos, readings


# -----------------------------------------------------------------------------
# prompts

def test_prompt_list_and_vocabulary():
    assert len(T.ALL_PROMPTS) == len(set(T.ALL_PROMPTS)) == 8 * 3 * 6 + 8 * 7
    assert T.VOCAB[0] == "<pad>" and len(T.VOCAB) == len(set(T.VOCAB))
    for p in T.ALL_PROMPTS:  # canonical spelling round-trips
        assert T.prompt_from_attributes(T.parse_prompt(p)) == p
    assert "An orange circle moving clockwise" in T.ALL_PROMPTS


def test_parse_variants():
    want = {"scene": "object", "colour": "orange", "shape": "square", "motion": "counter_clockwise"}
    for text in ["An orange square moving counter-clockwise", "  an   ORANGE square moving anticlockwise. ",
                 "orange square moving counterclockwise", "a orange square moving anti-clockwise"]:
        assert T.parse_prompt(text) == want
    assert T.parse_prompt("A red circle moving from left to right")["motion"] == "left_to_right"
    assert T.parse_prompt("colour gradient transitioning from blue to red") == {
        "scene": "transition", "colour_from": "blue", "colour_to": "red"}


def test_unknown_word_names_word_suggestion_and_vocabulary():
    with pytest.raises(ValueError) as e:
        T.parse_prompt("A red circel moving clockwise")
    msg = str(e.value)
    assert "'circel'" in msg and "did you mean 'circle'" in msg and "triangle" in msg and "magenta" in msg


@pytest.mark.parametrize("text", ["red moving circle clockwise", "A red circle moving from left to left",
                                  "A red circle moving", "A red circle clockwise", "A circle moving clockwise",
                                  "Color gradient transitioning from red",
                                  "Color gradient transitioning from red to red",
                                  "A red circle moving clockwise clockwise", "", "   "])
def test_bad_grammar_raises(text):
    with pytest.raises(ValueError):
        T.parse_prompt(text)


def test_tokenize():
    tok = T.tokenize(["A red circle moving from left to right", "", "color gradient transitioning from blue to red"])
    assert tok.shape == (3, T.MAX_TEXT_LEN) and tok.dtype == torch.long
    assert (tok[0, :8] > 0).all() and (tok[0, 8:] == 0).all()                  # 8 words, then padding
    assert (tok[1] == 0).all()                                                  # the empty (CFG null) prompt
    assert (tok[2, :7] > 0).all() and (tok[2, 7:] == 0).all()
    assert (T.tokenize([""]) == 0).all() and T.tokenize([""]).shape == (1, T.MAX_TEXT_LEN)
    # synonyms and spelling variants give the canonical tokens
    assert torch.equal(T.tokenize(["an orange square moving anticlockwise."]),
                       T.tokenize(["An orange square moving counter-clockwise"]))
    assert T.tokenize(["A red circle moving clockwise"], max_len=5).shape == (1, 5)
    assert int(T.tokenize(T.ALL_PROMPTS).max()) < len(T.VOCAB)
    with pytest.raises(ValueError, match="blu"):
        T.tokenize(["A blu circle moving clockwise"])


# -----------------------------------------------------------------------------
# renderer

def test_render_shape_dtype_range():
    prompts = ["A red circle moving clockwise", "Color gradient transitioning from blue to red"]
    v = T.render_batch(prompts, [1, 2], 7, 24)
    assert v.shape == (2, 7, 3, 24, 24) and v.dtype == torch.float32
    assert v.min() >= -1 and v.max() <= 1
    assert (v[0] == -1).float().mean() > 0.5                                    # black background
    assert T.make_video("A red circle moving clockwise").shape == (12, 3, 32, 32)
    assert T.render_batch(["A red circle moving clockwise"], [0], 1, 8).shape == (1, 1, 3, 8, 8)  # tiny is fine


def test_determinism():
    p = "A green triangle moving from top to bottom"
    assert torch.equal(T.make_video(p, seed=7), T.make_video(p, seed=7))
    assert not torch.equal(T.make_video(p, seed=7), T.make_video(p, seed=8))
    # a video depends on (prompt, seed) only: not on its batch, and a longer video starts with the shorter one
    batch = T.render_batch(["A red circle moving clockwise", p], [3, 7], 12, 32)
    assert torch.equal(batch[1], T.make_video(p, seed=7))
    assert torch.equal(T.make_video(p, 48, seed=7)[:12], T.make_video(p, 12, seed=7))


def test_clockwise_is_clockwise_on_screen():
    """y points down: an object at 3 o'clock of its orbit's centre that moves clockwise (to 6 o'clock) moves DOWN."""
    seeds = list(range(300))
    for motion, sign in [("clockwise", 1), ("counter-clockwise", -1)]:
        prompt = f"A white circle moving {motion}"
        # hand-pick a video that starts at about 3 o'clock, well away from the edges (no wrap in two frames)
        params = [T._sample_params(prompt, s) for s in seeds]
        i = next(k for k, q in enumerate(params) if math.cos(q["phase"]) > 0.97 and
                 0.3 < q["x0"] + q["orbit"] < 0.7 and 0.3 < q["y0"] < 0.7)
        video = T.make_video(prompt, 2, 32, seed=seeds[i])
        (x0, y0), (x1, y1) = mass_centre(video[0]), mass_centre(video[1])
        assert x0 > 32 * params[i]["x0"], "the object should start right of its orbit's centre"
        assert sign * (y1 - y0) > 1.0, f"{motion}: from ({x0:.1f}, {y0:.1f}) the object went to ({x1:.1f}, {y1:.1f})"


def test_orbits_can_start_near_the_top(monkeypatch):
    """ORBIT_START_DEG (train.py orbit_start_deg): at 30, every orbit starts within 30 degrees of the top of its
    circle, so clockwise first goes right and counter-clockwise left, and the oracle still reads every video; at 180,
    the default, orbits start all round (about half of the clockwise ones first go left), as the world always was."""
    seeds = list(range(120))
    for motion, sign in [("clockwise", 1), ("counter-clockwise", -1)]:
        prompt = f"A white circle moving {motion}"
        def first_steps():
            videos = T.render_batch([prompt] * len(seeds), seeds, 12, 32)            # (120, 12, 3, 32, 32)
            dx = []
            for v in videos:
                cx, _ = T.object_centres(v)                                         # (12,) pixels
                dx.append(float(T.torus_delta(cx[1] - cx[0], 32)))
            return torch.tensor(dx), videos                                        # (120,) first step along x
        default = [T._sample_params(prompt, s)["phase"] for s in seeds]
        dx, _ = first_steps()
        assert 0.3 < (sign * dx > 0).float().mean() < 0.7, f"{motion}: anywhere should go either way first"
        monkeypatch.setattr(T, "ORBIT_START_DEG", 30.0)
        phases = torch.tensor([T._sample_params(prompt, s)["phase"] for s in seeds])
        assert (phases + math.pi / 2).abs().max() <= math.radians(30.0) + 1e-9, "an orbit started off the top"
        dx, videos = first_steps()
        assert (sign * dx > 0).all(), f"{motion} near the top went the wrong way first: {dx[sign * dx <= 0]}"
        assert all(T.adherence(v, prompt)["all"] for v in videos), "the oracle misread a near-top orbit"
        monkeypatch.setattr(T, "ORBIT_START_DEG", 180.0)
        assert [T._sample_params(prompt, s)["phase"] for s in seeds] == default, "180 must be the default world"
        monkeypatch.setattr(T, "ORBIT_START_DEG", 200.0)
        with pytest.raises(AssertionError, match="ORBIT_START_DEG must lie in"):
            T._sample_params(prompt, 0)
        monkeypatch.undo()


def test_oracle_reads_a_hand_drawn_orbit():
    """Independent of the renderer: a disc drawn by hand at angles 0, 20, 40, ... degrees with y down."""
    yy, xx = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    def orbit(step_deg):
        frames = []
        for k in range(12):
            a = math.radians(step_deg * k)
            cx, cy = 16 + 8 * math.cos(a), 16 + 8 * math.sin(a)
            disc = (6 - ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() + 0.5).clamp(0, 1)  # (H, W) coverage
            frames.append(torch.stack([disc, disc * 0, disc * 0]) * 2 - 1)            # red
        return torch.stack(frames)
    assert T.read_video(orbit(20)) == T.parse_prompt("A red circle moving clockwise")
    assert T.read_video(orbit(-20)) == T.parse_prompt("A red circle moving counter-clockwise")


def test_torus_keeps_the_object_whole(monkeypatch):
    """Linear motion wraps around; the body's drawn area stays the same in every frame (no clipping at the edges)."""
    monkeypatch.setattr(T, "TRAIL", ())                                          # the body alone
    videos = T.render_batch(OBJECT_PROMPTS[:24], list(range(24)), 48, 32)        # (24, 48, 3, 32, 32)
    area = ((videos + 1) / 2).amax(2).sum((2, 3))                                # (24, 48)
    assert ((area - area[:, :1]).abs() / area[:, :1]).max() < 0.02


def test_the_trail_shows_the_direction_in_one_frame():
    # each frame alone says which way the object goes: its faint trail lies behind it, below the oracle's
    # foreground threshold, so the oracle still reads the body alone
    for motion, (dx, dy) in T.LINEAR_DIRECTIONS.items():
        prompt = T.prompt_from_attributes(dict(scene="object", colour="white", shape="circle", motion=motion))
        frame = (T.make_video(prompt, 6, 32, seed=5)[5] + 1) / 2                 # (3, H, W) in [0, 1]
        bright = frame.amax(0)                                                   # (H, W)
        trail = (bright > 0.01) & (bright < T.FG_THRESHOLD)                       # the trail and the body's rim
        body = bright >= T.FG_THRESHOLD
        f = T._frame_features(frame[None] * 2 - 1)
        yy, xx = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
        off = lambda c, centre: torch.remainder(c - centre + 16, 32) - 16         # toroidal offset from the centre
        ox, oy = off(xx, f["cx"][0]), off(yy, f["cy"][0])
        faint_mass = bright * trail
        along = ((ox * dx + oy * dy) * faint_mass).sum() / faint_mass.sum()       # < 0: the faint pixels lie behind
        assert along < -1.0, f"{motion}: the trail is not behind the object ({along:.2f} px)"
        assert body.sum() > 50, "the body should be bright"


def test_transition_reaches_and_holds_target():
    v = T.make_video("Color gradient transitioning from blue to red", 48, 16, seed=3)
    assert torch.allclose(v[0, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    red = torch.tensor([1.0, -1.0, -1.0])[None, :, None, None]                  # (1, 3, 1, 1)
    assert torch.allclose(v[T.TRANSITION_FRAMES - 1:], red.expand(48 - T.TRANSITION_FRAMES + 1, 3, 16, 16))


def test_sizes_and_speeds_scale_with_resolution(monkeypatch):
    """Objects are OBJECT_RADIUS x SHAPE_SCALE x resolution in size; linear speeds are SPEED x resolution per frame."""
    monkeypatch.setattr(T, "TRAIL", ())                                          # measure the body alone
    rng = random.Random(1)
    prompts = [p for p in OBJECT_PROMPTS if "from" in p]
    for res in (32, 64):
        pairs = [(rng.choice(prompts), rng.randrange(10**6)) for _ in range(40)]
        videos = T.render_batch([p for p, _ in pairs], [s for _, s in pairs], 2, res)
        for v, (p, _) in zip(videos, pairs):
            cover = ((v + 1) / 2).amax(1)                                        # (2, H, W)
            height = cover.amax(2).sum(1)[0].item()                              # rows spanned
            shape = T.parse_prompt(p)["shape"]
            r = height / 2 if shape != "triangle" else height / (3 * T.TRIANGLE_INRADIUS)  # height = 3 x inradius
            lo, hi = (T.SHAPE_SCALE[shape] * x for x in T.OBJECT_RADIUS)
            assert (lo - 0.01) * res < r < (hi + 0.01) * res, (p, r / res)
            f = T._frame_features(v)
            step = torch.tensor([f["cx"][1] - f["cx"][0], f["cy"][1] - f["cy"][0]])
            step = torch.remainder(step + res / 2, res) - res / 2
            assert 0.99 * T.SPEED[0] * res < step.norm() < 1.01 * T.SPEED[1] * res, (p, step)


# -----------------------------------------------------------------------------
# the oracle

def test_oracle_round_trip_is_exact(ground_truth):
    pairs, _, readings = ground_truth
    wrong = [(p, s, r) for (p, s), r in zip(pairs, readings) if not reading_matches(r, p)]
    print(f"\noracle round trip (12 frames, 32x32): {100 * (1 - len(wrong) / len(pairs)):.1f}% of {len(pairs)}")
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("num_frames,resolution", [(48, 32), (12, 64), (24, 24)])
def test_oracle_round_trip_other_sizes(num_frames, resolution):
    rng = random.Random(num_frames * resolution)
    pairs = [(rng.choice(T.ALL_PROMPTS), rng.randrange(T.EVAL_SEED_OFFSET)) for _ in range(40)]
    videos = T.render_batch([p for p, _ in pairs], [s for _, s in pairs], num_frames, resolution)
    for v, (p, s) in zip(videos, pairs):
        assert T.adherence(v, p)["all"], (p, s, T.read_video(v))


def test_window_adherence_ground_truth_48_frames():
    rng = random.Random(2)
    pairs = [(p, rng.randrange(T.EVAL_SEED_OFFSET)) for p in rng.sample(T.ALL_PROMPTS, 60)]
    videos = T.render_batch([p for p, _ in pairs], [s for _, s in pairs], 48, 32)
    for v, (p, s) in zip(videos, pairs):
        windows = T.window_adherence(v, p, window=3)
        assert len(windows) == 46 and all(windows), (p, s, [i for i, ok in enumerate(windows) if not ok])
    readings = T.read_video_windows(videos[0], window=3)
    assert len(readings) == 46 and all(r == T.parse_prompt(pairs[0][0]) for r in readings)


def test_floor_with_a_different_prompt(ground_truth):
    """The oracle's chance level: ground-truth videos judged against a different random prompt."""
    pairs, _, readings = ground_truth
    rng = random.Random(3)
    hits = {}
    for (p, _), r in zip(pairs, readings):
        other = rng.choice([q for q in T.ALL_PROMPTS if q != p])
        want = T.parse_prompt(other)
        for k, v in want.items():
            hits.setdefault(k, []).append(r.get(k) == v)
        hits.setdefault("all", []).append(r == want)
    floor = {k: 100 * sum(v) / len(v) for k, v in hits.items()}
    print("\nfloor (different random prompt): " + ", ".join(f"{k} {v:.1f}%" for k, v in floor.items()))
    assert floor["all"] < 25


def test_adherence_keys():
    v = T.make_video("A red circle moving clockwise", seed=1)
    assert T.adherence(v, "A red circle moving clockwise") == dict(scene=True, colour=True, shape=True, motion=True,
                                                                   all=True)
    a = T.adherence(v, "A red square moving from left to right")
    assert a == dict(scene=True, colour=True, shape=False, motion=False, all=False)
    t = T.adherence(v, "Color gradient transitioning from blue to red")
    assert set(t) == {"scene", "colour_from", "colour_to", "all"} and not t["all"]


def test_oracle_says_none_without_a_single_object():
    g = torch.Generator().manual_seed(0)
    v = T.make_video("A red circle moving from left to right", seed=5)
    two = torch.maximum(v, v.roll((16, 16), (2, 3)))                              # two circles, always apart
    fragmented = v.clone()
    fragmented[:, :, ::3] = -1                                                    # cut the object into pieces
    fragmented[:, :, :, ::3] = -1
    scattered = -torch.ones(12, 3, 32, 32)                                        # six small blobs
    for k in range(6):
        y, x = (7 * k) % 26, (11 * k + 3) % 26
        scattered[:, :, y:y + 4, x:x + 4] = 1
    cases = {"uniform noise": torch.rand(12, 3, 32, 32, generator=g) * 2 - 1,
             "gaussian noise": torch.randn(12, 3, 32, 32, generator=g).clamp(-1, 1),
             "black": -torch.ones(12, 3, 32, 32), "two objects": two, "fragmented": fragmented,
             "scattered blobs": scattered}
    for name, video in cases.items():
        assert T.read_video(video) == {"scene": "none"}, name
        assert not any(T.window_adherence(video, "A red circle moving from left to right")), name
    static = v[:1].expand(12, -1, -1, -1)
    assert T.read_video(static)["motion"] == "static"
    assert not T.adherence(static, "A red circle moving from left to right")["all"]
    shuffled = v[torch.randperm(12, generator=g)]                                # jumps back and forth
    assert T.read_video(shuffled)["motion"] == "erratic"
    assert T.read_video(v.flip(0))["motion"] == "right_to_left"                  # played backwards
    reversed_transition = T.make_video("Color gradient transitioning from blue to red", seed=0).flip(0)
    assert not T.adherence(reversed_transition, "Color gradient transitioning from blue to red")["all"]


def test_oracle_tolerates_mild_noise(ground_truth):
    """Generated videos are never exact: per-pixel noise of std 0.1 must not change the reading."""
    pairs, videos, _ = ground_truth
    g = torch.Generator().manual_seed(1)
    noisy = (videos[::6] + 0.1 * torch.randn(videos[::6].shape, generator=g)).clamp(-1, 1)
    assert all(T.adherence(v, p)["all"] for v, (p, _) in zip(noisy, pairs[::6]))


# -----------------------------------------------------------------------------
# datasets

def test_toy_dataset():
    ds = T.ToyDataset(num_samples=10, num_frames=6, resolution=16, seed=3)
    assert len(ds) == 10
    video, prompt = ds[4]
    assert video.shape == (6, 3, 16, 16) and prompt in T.ALL_PROMPTS
    video2, prompt2 = T.ToyDataset(num_samples=10, num_frames=6, resolution=16, seed=3)[4]
    assert prompt == prompt2 and torch.equal(video, video2)
    assert not torch.equal(T.ToyDataset(10, 6, 16, seed=4)[4][0], video)
    with pytest.raises(IndexError):
        ds[10]
    assert len(list(ds)) == 10
    videos, prompts = ds.get_batch([4, 5])
    assert torch.equal(videos[0], video) and prompts[0] == prompt
    assert all(s < T.EVAL_SEED_OFFSET for s in (ds.prompt_and_seed(i)[1] for i in range(10)))
    held_out = T.ToyDataset(10, 6, 16, seed=3, held_out=True)
    assert all(held_out.prompt_and_seed(i)[1] >= T.EVAL_SEED_OFFSET for i in range(10))
    only = T.ToyDataset(5, 6, 16, prompts=["A red circle moving clockwise"])
    assert {only[i][1] for i in range(5)} == {"A red circle moving clockwise"}
    infinite = T.ToyDataset(None, 6, 16)
    with pytest.raises(TypeError):
        len(infinite)
    stream = iter(infinite)
    assert [next(stream)[1] for _ in range(3)] == [infinite[i][1] for i in range(3)]


def test_sample_batch_and_eval_set():
    g = torch.Generator().manual_seed(0)
    videos, prompts, seeds = T.sample_batch(5, 12, 32, g)
    assert videos.shape == (5, 12, 3, 32, 32) and len(prompts) == len(seeds) == 5
    assert all(0 <= s < T.EVAL_SEED_OFFSET for s in seeds)
    assert torch.equal(videos[2], T.make_video(prompts[2], 12, 32, seeds[2]))
    prompts_a, seeds_a = T.eval_set(400, 12, 32)
    assert (prompts_a, seeds_a) == T.eval_set(400, 12, 32)
    assert all(s >= T.EVAL_SEED_OFFSET for s in seeds_a) and len(set(seeds_a)) == 400
    assert all(prompts_a.count(p) == 2 for p in T.ALL_PROMPTS)                   # even coverage
    short, _ = T.eval_set(50, num_frames=6)
    assert all(T.parse_prompt(p)["scene"] == "object" for p in short)            # unfinished transitions left out


def test_render_speed():
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        T.sample_batch(64, 12, 32, g)
        times.append(time.perf_counter() - t0)
    median = sorted(times)[2]
    v = T.make_video("A red circle moving clockwise")
    t0 = time.perf_counter()
    for _ in range(20):
        T.read_video(v)
    oracle = (time.perf_counter() - t0) / 20
    print(f"\nrender 64 videos x 12 frames x 32x32: {1000 * median:.1f} ms (median of 5); "
          f"oracle: {1000 * oracle:.1f} ms per 12-frame video")
    assert median < 1.0                                                           # generous: shared CI machines


def test_positions_do_not_reveal_the_frame_index():
    # The world is a torus: objects start anywhere and orbits circle anywhere, so in every frame the object's
    # position is spread evenly over the frame. (If left-to-right objects started on the left, position would
    # tell a model which frame it is drawing, a shortcut a model with relative time positions cannot take.)
    prompts = [p for p in T.ALL_PROMPTS if T.parse_prompt(p)["scene"] == "object"]
    video = T.render_batch(prompts * 3, list(range(3 * len(prompts))), 12, 32)
    for frame in (0, 11):
        f = T._frame_features(video[:, frame])                       # the batch's frame `frame` as one "video"
        for c in (f["cx"], f["cy"]):
            angle = 2 * math.pi * c / 32                             # a position on the ring
            spread = torch.stack([angle.cos().mean(), angle.sin().mean()]).norm().item()
            assert spread < 0.15, f"frame {frame}: positions cluster (mean resultant {spread:.2f})"
    # and the world wraps: some objects are split across an edge
    assert (video[..., 0] > 0).any() and (video[..., -1, :] > 0).any()


def test_torus_delta_is_the_shortest_signed_way_round():
    d = torch.tensor([0.0, 1.0, 15.0, 16.0, 17.0, 31.0, -1.0, -17.0, 40.0])
    assert T.torus_delta(d, 32).tolist() == [0.0, 1.0, 15.0, -16.0, -15.0, -1.0, -1.0, 15.0, 8.0]
