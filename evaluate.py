"""
Evaluate the models of a training run: do the videos show their prompts, do they look like the truth, how fast
do they stream.

    python evaluate.py --out_dir out/tiny                 # one table: teacher, ODE init, Self Forcing
    python evaluate.py --out_dir out/tiny --videos 128    # more held-out videos, tighter numbers
    python evaluate.py --out_dir out/tiny --clip ~/models/clip-vit-base-patch32   # a CLIP you have on disk

From Python (videos (B, F, 3, H, W) or a list of (F, 3, H, W), in [-1, 1]):

    from evaluate import evaluate_videos, ssim, psnr
    evaluate_videos(videos, prompts, metrics=["oracle", "clip_score", "frame_consistency"])
    evaluate_videos(videos, prompts, metrics=["ssim", "psnr"], references=truth)

The metrics (the function named in brackets holds the exact definition):
  oracle             toydata's oracle reads scene, colour, shape and motion back from the frames: percent of
                     videos read exactly as their prompt, per attribute and all at once, and per start frame of
                     3-frame windows (a drift curve)                                    [oracle_scores]
  clip_score         100 x cosine of the video's and the prompt's CLIP embeddings       [clip_scores]
  frame_consistency  mean cosine of the CLIP embeddings of consecutive frames          [frame_consistency]
  ssim, psnr         against reference videos (SSIM per frame, PSNR per video): the CLI continues the first
                     chunk of a ground-truth video and compares the rest with the truth [ssim, psnr]
  fps                frames per second of a generator: videos= must then be a callable prompts -> videos,
                     because ready-made videos carry no timing. The CLI times each sampler itself.
The CLIP judge is, by default, a tiny CLIP trained here on ground-truth toy videos (no pretrained weights can be
downloaded, and a photo CLIP knows nothing of "moving from left to right"); it is trained once and cached.

Every table has two rows that make the numbers mean something:
  ground truth (ceiling)    the renderer's own videos
  shuffled prompts (floor)  each ground-truth video paired with its neighbour's: judged against the neighbour's
                            prompt (oracle, CLIP score), its frames alternating with the neighbour's frames (frame
                            consistency), the neighbour's continuation compared with its own (SSIM, PSNR)
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import toydata
from model import add_noise, euler_sample, stream_euler_sample, stream_sample, student_sigmas
from sample import OneLineParser, SampleError, generate, load_model, rolling_cache

MODELS = ["teacher", "ode", "self_forcing"]
METRICS = ("oracle", "clip_score", "frame_consistency", "ssim", "psnr", "fps")
HERE = os.path.dirname(os.path.abspath(__file__))

# -----------------------------------------------------------------------------
# Checking what comes in: one clear ValueError naming the problem, never a shape error deep inside


def as_videos(videos, name="videos"):
    """A tensor (B, F, 3, H, W) or a list of B tensors (F, 3, H, W), values in [-1, 1] -> float32 (B, F, 3, H, W)."""
    if isinstance(videos, (list, tuple)):
        if not videos or not all(torch.is_tensor(v) for v in videos):
            raise ValueError(f"{name}: a list of videos must hold at least one tensor, and tensors only")
        shapes = sorted({tuple(v.shape) for v in videos})
        if len(shapes) > 1:
            raise ValueError(f"{name}: the videos of a list must share one shape (F, 3, H, W), got {shapes}")
        videos = torch.stack(list(videos))                                      # (B, F, 3, H, W)
    if not torch.is_tensor(videos):
        raise ValueError(f"{name} must be a tensor (B, F, 3, H, W) or a list of (F, 3, H, W) tensors, "
                         f"got {type(videos).__name__}")
    if videos.dim() != 5 or videos.shape[2] != 3 or 0 in videos.shape:
        raise ValueError(f"{name} must have shape (B, F, 3, H, W) with 3 colour channels, got {tuple(videos.shape)}")
    videos = videos.detach().float().cpu()
    if not torch.isfinite(videos).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    lo, hi = videos.min().item(), videos.max().item()
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"{name} must lie in [-1, 1] (black is -1), got values in [{lo:.3g}, {hi:.3g}]: clamp model "
                         "outputs, or map [0, 1] or uint8 videos to [-1, 1]")
    return videos.clamp(-1, 1)


# -----------------------------------------------------------------------------
# 1. The oracle: the project's primary metric (toydata.read_video, exact on ground truth)

def oracle_scores(videos, prompts):
    """Percent of videos whose oracle reading matches the prompt, per attribute and 'all' at once.
    videos (B, F, 3, H, W) in [-1, 1]. Attributes a prompt does not have (the colours of a transition for an
    object prompt) are averaged over the prompts that have them."""
    assert len(videos) == len(prompts), f"{len(videos)} videos but {len(prompts)} prompts"
    hits = {}
    for v, p in zip(videos, prompts):
        for k, ok in toydata.adherence(v, p).items():
            hits.setdefault(k, []).append(float(ok))
    return {k: 100 * sum(x) / len(x) for k, x in hits.items()}


def confusion(videos, prompts, attribute="motion"):
    """What the oracle reads for each value asked: {asked: {read: count}} over the object prompts, for attribute
    "motion" or "shape". A model that knows the axis but not the sign reads left_to_right as right_to_left about as
    often as not; one that ignores the shape word reads every shape as the same one."""
    assert attribute in ("motion", "shape"), f"confusion is for 'motion' or 'shape', got {attribute!r}"
    table = {}
    for v, p in zip(videos, prompts):
        asked = toydata.parse_prompt(p).get(attribute)
        if asked is not None:                                                   # transitions have neither
            read = str(toydata.read_video(v).get(attribute))                    # 'None': no single object
            table.setdefault(asked, {}).setdefault(read, 0)
            table[asked][read] += 1
    return table


def motion_onset(videos, prompts, chunk=3):
    """Where a straight-line motion starts, and whether the rest follows. For each straight-line prompt, the
    object's progress along the ASKED direction (oracle centres, the shortest way round the torus) over the steps
    inside the first chunk, and over the steps after it. Returns percents of those videos:
      first_asked / first_reversed / first_static   first chunk: progress > +1 px / < -1 px / within 1 px (the
                                                    truth moves 1.5-2.5 px a frame: 3-5 px over a 3-frame chunk)
      rest_asked / rest_reversed                    frames after the first chunk: progress > +3 px / < -3 px
    A model that knows the axis but not the sign, and whose later chunks continue whatever came before, shows a
    still or coin-flip first chunk and a coin-flip rest."""
    assert 2 <= chunk < videos.shape[1], f"motion_onset needs chunks of >= 2 frames and more than one chunk, got " \
                                          f"chunk {chunk} and {videos.shape[1]} frames"
    counts, n = dict.fromkeys(["first_asked", "first_reversed", "first_static", "rest_asked", "rest_reversed"], 0), 0
    for v, p in zip(videos, prompts):
        motion = toydata.parse_prompt(p).get("motion")
        if motion not in toydata.LINEAR_DIRECTIONS:
            continue
        cx, cy = toydata.object_centres(v)                                        # (F,), (F,) pixels
        R = v.shape[-1]
        step = torch.stack([cx.diff(), cy.diff()], 1)                           # (F - 1, 2) frame to frame
        step = toydata.torus_delta(step, R)                                     # shortest way round the torus
        along = step @ torch.tensor(toydata.LINEAR_DIRECTIONS[motion], dtype=step.dtype)   # (F - 1,) asked way
        first, rest = along[:chunk - 1].sum().item(), along[chunk:].sum().item()  # skip the step across the seam
        counts["first_asked"] += first > 1
        counts["first_reversed"] += first < -1
        counts["first_static"] += abs(first) <= 1
        counts["rest_asked"] += rest > 3
        counts["rest_reversed"] += rest < -3
        n += 1
    return {k: 100 * c / max(n, 1) for k, c in counts.items()} | {"videos": n}


def motion_steps(videos, prompts):
    """How the object moves from frame to frame, step by step, over the object prompts (oracle centres, the
    shortest way round the torus):
      step_px    per step i (frame i -> i + 1), the median distance its centre moves over the straight-line videos:
                 the truth moves 1.5-2.5 px every step, so a model that makes frames in chunks and moves them less
                 inside a chunk than across its seam shows a pattern repeating every chunk
      turn_deg   per turn i (step i -> step i + 1), the mean signed change of heading over the orbit videos, in
                 degrees, + = clockwise on screen (y points down), with the asked way's sign made positive:
                 the truth turns +15-30 degrees every step; a model that moves orbits straight turns about 0
      turn_agree per turn i, the share of orbit videos that turn the asked way there (the truth: 1; a model that
                 turns as much one way as the other: about 0.5, whatever the size of its turns)
    A frame without an object has no centre to follow; the tiny run's models draw one in every frame."""
    steps, turns = [], []                                                       # per video (F - 1,) / (F - 2,)
    for v, p in zip(videos, prompts):
        motion = toydata.parse_prompt(p).get("motion")
        if motion is None:
            continue
        cx, cy = toydata.object_centres(v)                                        # (F,), (F,) pixels
        d = toydata.torus_delta(torch.stack([cx.diff(), cy.diff()], 1), v.shape[-1])   # (F - 1, 2)
        if motion in toydata.LINEAR_DIRECTIONS:
            steps.append(d.norm(dim=1))                                         # (F - 1,)
        else:
            heading = torch.atan2(d[:, 1], d[:, 0])                             # (F - 1,) radians
            turn = torch.remainder(heading.diff() + math.pi, 2 * math.pi) - math.pi   # (F - 2,) in [-pi, pi)
            turns.append(turn.rad2deg() * (1 if motion == "clockwise" else -1))   # asked way positive
    turns = torch.stack(turns) if turns else torch.zeros(0, 0)                   # (orbit videos, F - 2)
    return {"step_px": torch.stack(steps).median(0).values.tolist() if steps else [],
            "turn_deg": turns.mean(0).tolist() if len(turns) else [],
            "turn_agree": (turns > 0).float().mean(0).tolist() if len(turns) else [],
            "straight_videos": len(steps), "orbit_videos": len(turns)}


def window_curve(videos, prompts, window=3):
    """Drift curve: for each start frame i, percent of videos whose frames [i, i + window) show the prompt."""
    per_video = [toydata.window_adherence(v, p, window) for v, p in zip(videos, prompts)]  # B x (F - window + 1)
    return [100 * sum(col) / len(col) for col in zip(*per_video)]


def late_window_adherence(videos, prompts, window=3):
    """Percent of `window`-frame windows in the last quarter of each video whose attributes match the prompt."""
    return last_quarter([toydata.window_adherence(v, p, window=window) for v, p in zip(videos, prompts)])


def last_quarter(per_video):
    """late_window_adherence from windows already read: per_video holds one list of bools (per start frame) a video."""
    hits = [float(ok) for per_start in per_video for ok in per_start[len(per_start) * 3 // 4:]]
    return 100 * sum(hits) / max(1, len(hits))


def window_share(per_video):
    """Percent of all the windows right, over lists of bools (one list per video, per start frame)."""
    hits = [float(ok) for per_start in per_video for ok in per_start]
    return 100 * sum(hits) / max(1, len(hits))


# -----------------------------------------------------------------------------
# 2. SSIM and PSNR: how close to a reference, pixel by pixel

def _image_pair(a, b):
    if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.dim() != 4 or a.shape[1] != 3 or a.shape != b.shape:
        shapes = [tuple(x.shape) if torch.is_tensor(x) else type(x).__name__ for x in (a, b)]
        raise ValueError(f"ssim and psnr compare two image batches of one shape (B, 3, H, W), got {shapes}")
    return a.detach().double().cpu(), b.detach().double().cpu()  # float64: the sums of squares stay exact


def gaussian_window(size=11, sigma=1.5):
    """(size,) weights exp(-x^2 / (2 sigma^2)) for x = -(size-1)/2 .. (size-1)/2, summing to 1. With the defaults
    this is scipy's gaussian_filter kernel at truncate=3.5 (radius int(3.5 * 1.5 + 0.5) = 5), scikit-image's."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return w / w.sum()


def ssim(a, b, data_range=2.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Structural similarity (Wang et al. 2004) of image batches a, b (B, 3, H, W) -> (B,) float64. Per pixel,
        SSIM = (2 mu_a mu_b + C1) (2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1) (var_a + var_b + C2)),
        C1 = (k1 L)^2, C2 = (k2 L)^2, L = data_range (2 for values in [-1, 1]),
    where the means, (population) variances and covariance are weighted by an 11x11 Gaussian window, sigma 1.5,
    computed per channel. The map is averaged over the 'valid' pixels, those whose window lies inside the image
    ((H - 10) x (W - 10) of them), and over the 3 channels. That is exactly scikit-image's structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2, channel_axis=0): it filters with
    reflected borders, then averages only the interior 5 pixels in from each border (tests check the agreement).
    SSIM(x, x) = 1; 0 means no structure in common; it can go down to -1."""
    a, b = _image_pair(a, b)
    B, C, H, W = a.shape
    if min(H, W) < size:
        raise ValueError(f"ssim needs images of at least {size}x{size} pixels (its window), got {H}x{W}")
    g = gaussian_window(size, sigma)

    def blur(x):  # (B, C, H, W) -> (B*C, 1, H-size+1, W-size+1): a separable Gaussian, valid positions only
        x = x.reshape(B * C, 1, H, W)                                           # every channel its own image
        return F.conv2d(F.conv2d(x, g.view(1, 1, 1, size)), g.view(1, 1, size, 1))
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.reshape(B, -1).mean(1)                                             # (B,): channels x valid pixels


def psnr(a, b, data_range=2.0):
    """Peak signal-to-noise ratio in dB of image batches a, b (B, 3, H, W) -> (B,) float64:
    10 log10(L^2 / MSE), MSE over the 3 H W values of an image, L = data_range (2 for [-1, 1]); +inf when a == b.
    (scikit-image's peak_signal_noise_ratio with data_range=2.) 20 dB is an RMS error of 10% of the range."""
    a, b = _image_pair(a, b)
    mse = ((a - b) ** 2).flatten(1).mean(1)                                     # (B,)
    return 10 * torch.log10(data_range ** 2 / mse)                              # mse = 0 -> inf


# -----------------------------------------------------------------------------
# 3. A CLIP judge that has seen the toy world
#
# We train transformers' own CLIPModel, tiny, contrastively on ground-truth videos (Radford et al. 2021's recipe).
# To see time, its vision tower gets a video as ONE image whose channels are its T frames stacked in order,
# (T, 3, H, W) -> (3T, H, W) with CLIPVisionConfig(num_channels=3T): every patch token holds its patch in every
# frame, in order, so "left to right" and "right to left" (the same frames reversed) are different inputs. Pixels
# go in as [0, 1], black 0: CLIP's patch embedding has no bias, and with black at -1 every patch carried a large
# constant that drowned the object. Measured here on held-out ground truth, top-1 among the 6 motions of the same
# colour and shape after 800 steps: 84% with [-1, 1], 100% with [0, 1]. A single frame is embedded
# as a still video: the frame repeated T times. The text tower reads toydata's words plus an end-of-text token,
# where CLIP's text tower pools.

TOY_CLIP = dict(width=64, layers=2, heads=4, patch=8)   # sizes of both towers; the patch is 8x8 pixels
TOY_CLIP_TRAINING = dict(steps=800, batch=64, lr=2e-3)
EOS = len(toydata.VOCAB)                                 # the end-of-text token id, one past toydata's words


def toy_clip_model(frames, resolution, width, layers, heads, patch):
    """A fresh, untrained toy CLIP: transformers' CLIPModel, every size set here, nothing downloaded."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig  # here: importing takes seconds
    text = CLIPTextConfig(vocab_size=EOS + 1, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                          num_attention_heads=heads, max_position_embeddings=toydata.MAX_TEXT_LEN,
                          pad_token_id=0, bos_token_id=EOS, eos_token_id=EOS)
    vision = CLIPVisionConfig(num_channels=3 * frames, image_size=resolution, patch_size=patch, hidden_size=width,
                              intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=heads)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=width))


def _unit(out):  # transformers 5 returns an output object (pooler_output = the projection), older ones a tensor
    return F.normalize(out if torch.is_tensor(out) else out.pooler_output, dim=-1)


def embed_prompts(judge, prompts):
    """B prompts -> (B, D) unit vectors."""
    if judge["tokenizer"] is None:                                              # the toy CLIP: toydata's words
        ids = toydata.tokenize(list(prompts))                                   # (B, 12) word ids, 0-padded
        ids[torch.arange(len(ids)), (ids > 0).sum(1)] = EOS                     # end-of-text right after the words
        mask = (ids > 0).long()
    else:
        enc = judge["tokenizer"](list(prompts), padding=True, truncation=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
    return _unit(judge["model"].get_text_features(input_ids=ids, attention_mask=mask))


def embed_frames(judge, frames):
    """(N, 3, H, W) in [-1, 1] -> (N, D) unit vectors. Toy judge: each frame as a still video. Pretrained judge:
    the frame resized (bicubic) to its image size and normalised with its image mean and std."""
    if judge["tokenizer"] is None:
        return embed_videos(judge, frames[:, None])                             # (N, 1, 3, H, W): one-frame videos
    size = judge["model"].config.vision_config.image_size
    x = F.interpolate((frames + 1) / 2, size=(size, size), mode="bicubic", align_corners=False)  # (N, 3, s, s)
    return _unit(judge["model"].get_image_features(pixel_values=(x - judge["mean"]) / judge["std"]))


def embed_videos(judge, videos):
    """(B, F, 3, H, W) in [-1, 1] -> (B, D) unit vectors. Toy judge: T evenly spaced frames (a frame repeats when
    F < T) stacked as channels. Pretrained judge: the mean of the frame embeddings, as in CLIPSIM (Wu et al. 2021),
    which cannot see the order of the frames."""
    B, Fr, _, H, W = videos.shape
    if judge["tokenizer"] is not None:
        frames = embed_frames(judge, videos.flatten(0, 1)).view(B, Fr, -1)      # (B*F, 3, H, W) -> (B, F, D)
        return F.normalize(frames.mean(1), dim=-1)
    if H != judge["resolution"] or W != judge["resolution"]:
        raise ValueError(f"the toy CLIP judges {judge['resolution']}x{judge['resolution']} videos, got {H}x{W}")
    return _unit(judge["model"].get_image_features(pixel_values=clip_pixels(videos, judge["frames"])))


def clip_pixels(videos, frames):
    """(B, F, 3, H, W) in [-1, 1] -> the toy CLIP's input image (B, 3T, H, W) in [0, 1]: T = `frames` evenly spaced
    frames (a frame repeats when F < T), stacked in order as channels."""
    idx = torch.linspace(0, videos.shape[1] - 1, frames).round().long()          # (T,) frame indices, in order
    return ((videos[:, idx] + 1) / 2).flatten(1, 2)                             # (B, T, 3, H, W) -> (B, 3T, H, W)


@torch.no_grad()
def clip_scores(judge, videos, prompts):
    """CLIP score of each video: 100 cos(E_video(video), E_text(prompt)) -> (B,). The 100x scale is CLIPSIM's and
    CLIPScore's (Hessel et al. 2021; it also clips at 0 and weighs by 2.5, which we do not: a floor may go below 0)."""
    return 100 * (embed_videos(judge, videos) * embed_prompts(judge, prompts)).sum(1)


@torch.no_grad()
def frame_consistency(judge, videos):
    """Per video, the mean over i of cos(E_frame(frame i), E_frame(frame i + 1)) -> (B,); needs F >= 2. 1 means
    every frame embeds alike. A frozen video scores 1 too: read it next to the oracle's motion column."""
    B, Fr = videos.shape[:2]
    e = embed_frames(judge, videos.flatten(0, 1)).view(B, Fr, -1)                # (B, F, D)
    return (e[:, 1:] * e[:, :-1]).sum(-1).mean(1)


def train_toy_clip(frames, resolution, steps, batch, lr, seed=0, progress=True, **sizes):
    """CLIP's contrastive training on ground-truth videos rendered on the fly (training seeds only). Each step
    draws `batch` DIFFERENT prompts, so no two videos of a batch share a caption, and scores the videos against
    ALL prompts (video -> text: the hard negatives, such as the same object moving the other way, are in every
    step) and the prompts against the batch's videos (text -> video): the mean of the two cross-entropies.
    Transitions are left out of videos shorter than TRANSITION_FRAMES, which never reach their target colour."""
    torch.manual_seed(seed)
    sizes = dict(TOY_CLIP, **sizes)
    judge = dict(model=toy_clip_model(frames, resolution, **sizes), tokenizer=None, frames=frames,
                 resolution=resolution, sizes=sizes, steps=steps)
    model = judge["model"]
    everything = [p for p in toydata.ALL_PROMPTS
                  if frames >= toydata.TRANSITION_FRAMES or toydata.parse_prompt(p)["scene"] == "object"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc="training the toy CLIP judge", disable=not progress, leave=False,
                     mininterval=1):
        for group in opt.param_groups:                                           # warm up, then cosine decay
            group["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = torch.randperm(len(everything), generator=gen)[:batch]                                   # (b,)
        seeds = torch.randint(toydata.EVAL_SEED_OFFSET, (len(pick),), generator=gen).tolist()
        videos = toydata.render_batch([everything[i] for i in pick], seeds, frames, resolution)        # (b, T, 3, H, W)
        sims = embed_videos(judge, videos) @ embed_prompts(judge, everything).T                        # (b, P) cosines
        logits = model.logit_scale.exp().clamp(max=100) * sims        # CLIP's learned temperature, capped as in CLIP
        loss = (F.cross_entropy(logits, pick) + F.cross_entropy(logits[:, pick].T, torch.arange(len(pick)))) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return judge


def world_fingerprint(frames, resolution):
    """Mean pixel values of a few ground-truth videos: they change when toydata draws its world differently, and
    a judge cached for another world is stale."""
    prompts = toydata.ALL_PROMPTS[::25]
    return toydata.render_batch(prompts, list(range(len(prompts))), frames, resolution).mean((1, 2, 3, 4)).tolist()


def toy_clip_name(frames, resolution):
    """The cached judge's file name for this world: the default world's is toyclip_<res>px_<frames>f.pt; a run whose
    orbits start near the top (train.py orbit_start_deg) gets its own file, so two runs do not retrain it in turn."""
    world = "" if toydata.orbits_start_anywhere() else f"_orbits{toydata.ORBIT_START_DEG:g}"
    return f"toyclip_{resolution}px_{frames}f{world}.pt"


def toy_clip(path, frames, resolution, progress=True, **training):
    """The toy CLIP judge for `frames`-frame videos at `resolution`: read from `path` if it holds one for this world,
    else trained (train_toy_clip with TOY_CLIP_TRAINING, overridable) and written there (temp file + rename)."""
    world = world_fingerprint(frames, resolution)
    if os.path.exists(path):
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
            model = toy_clip_model(ck["frames"], ck["resolution"], **ck["sizes"])
            model.load_state_dict(ck["state"])
        except Exception as e:
            raise ValueError(f"cannot read the toy CLIP {path} ({type(e).__name__}): delete it to train a new one")
        if (ck["frames"], ck["resolution"]) != (frames, resolution):
            raise ValueError(f"{path} holds a toy CLIP for {ck['frames']} frames at {ck['resolution']}px, not "
                             f"{frames} frames at {resolution}px: name another file or delete it")
        old = ck.get("world", [])
        if ck.get("vocab") == list(toydata.VOCAB) and len(old) == len(world) and \
                all(abs(a - b) <= 1e-4 for a, b in zip(old, world)):
            return dict(model=model.eval(), tokenizer=None, frames=frames, resolution=resolution, sizes=ck["sizes"],
                        steps=ck["steps"])
        print(f"{path} was trained on another version of toydata's world: training a new one", file=sys.stderr)
    judge = train_toy_clip(frames, resolution, progress=progress, **dict(TOY_CLIP_TRAINING, **training))
    ck = dict(state=judge["model"].state_dict(), frames=frames, resolution=resolution, sizes=judge["sizes"],
              steps=judge["steps"], vocab=list(toydata.VOCAB), world=world)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(ck, path + ".tmp")
    os.replace(path + ".tmp", path)
    return judge


def pretrained_clip(directory):
    """A CLIP you have on disk (a save_pretrained or hub snapshot folder with its tokenizer), loaded with
    local_files_only=True: nothing is downloaded. It sees single RGB frames, so it cannot tell left from right."""
    from transformers import AutoTokenizer, CLIPModel
    if not os.path.isdir(directory):
        raise ValueError(f"--clip {directory}: no such directory (a pretrained CLIP folder on this machine)")
    try:
        model = CLIPModel.from_pretrained(directory, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as e:
        raise ValueError(f"cannot load a CLIP model and tokenizer from {directory} ({type(e).__name__}: {e})")
    mean, std = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)             # OpenAI CLIP's, unless it says
    pre = os.path.join(directory, "preprocessor_config.json")
    if os.path.exists(pre):
        with open(pre) as f:
            cfg = json.load(f)
        mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
    return dict(model=model, tokenizer=tokenizer, mean=torch.tensor(mean).view(1, 3, 1, 1),
                std=torch.tensor(std).view(1, 3, 1, 1))


@torch.no_grad()
def hard_negative_retrieval(judge, n=400, frames=12, resolution=32):
    """Top-1 accuracy (percent) of the judge picking the prompt of a held-out ground-truth video among hard
    negatives, per kind: 'other motion' (same colour and shape, the 5 other motions), 'other colour' (same shape
    and motion, the 7 other colours), 'reversed transition' (B to A instead of A to B)."""
    prompts, seeds = toydata.eval_set(n, frames, resolution)
    v = embed_videos(judge, toydata.render_batch(prompts, seeds, frames, resolution))   # (n, D)
    text = dict(zip(toydata.ALL_PROMPTS, embed_prompts(judge, toydata.ALL_PROMPTS)))  # prompt -> (D,)
    hits = {}
    for i, p in enumerate(prompts):
        a = toydata.parse_prompt(p)
        kinds = {"other motion": [dict(a, motion=m) for m in toydata.MOTIONS if m != a["motion"]],
                 "other colour": [dict(a, colour=c) for c in toydata.COLOURS if c != a["colour"]]} \
            if a["scene"] == "object" else {"reversed transition": [dict(a, colour_from=a["colour_to"],
                                                                         colour_to=a["colour_from"])]}
        for kind, negatives in kinds.items():
            candidates = [p] + [toydata.prompt_from_attributes(x) for x in negatives]     # the right one first
            sims = torch.stack([text[q] for q in candidates]) @ v[i]                 # (1 + negatives,) cosines
            hits.setdefault(kind, []).append(float(sims.argmax() == 0))
    return {k: 100 * sum(h) / len(h) for k, h in hits.items()}


# -----------------------------------------------------------------------------
# 4. The batch API

def evaluate_videos(videos, prompts, metrics=("oracle", "clip_score", "frame_consistency"), references=None,
                    judge=None):
    """Evaluate B videos made for B prompts; returns a dict with, per metric asked for:
        oracle             'oracle': {attribute: percent, 'all': percent}, 'oracle_windows': drift curve (percent
                           per start frame of 3-frame windows)                   [oracle_scores, window_curve]
        clip_score         mean CLIP score over the videos                       [clip_scores]
        frame_consistency  mean over the videos                                  [frame_consistency]
        ssim, psnr         against `references` (the same shape as the videos): SSIM of every frame, averaged over
                           all frames, and 'ssim_per_frame' per frame index; PSNR of every video from the MSE over
                           all its frames (inf if identical), averaged over the videos     [ssim, psnr]
        fps                videos must be a callable prompts -> videos: called once on the first prompt to warm
                           up, then timed on all of them: 'fps' = B F / 'seconds'. Its videos are evaluated.
    judge: from toy_clip(...) or pretrained_clip(...); by default the toy CLIP for these videos' size, cached
    in out/ (trained there first if missing, a few minutes)."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a list of strings, one per video")
    out = {}
    if callable(videos):
        videos(list(prompts[:1]))                                                # first calls allocate: not timed
        t0 = time.perf_counter()
        videos = videos(list(prompts))
        out["seconds"] = time.perf_counter() - t0
    elif "fps" in metrics:
        raise ValueError("metric 'fps' times a generator: pass videos= as a callable prompts -> videos "
                         "(ready-made videos carry no timing)")
    videos = as_videos(videos)
    B, Fr, _, H, W = videos.shape
    if len(prompts) != B:
        raise ValueError(f"{B} videos but {len(prompts)} prompts: give one prompt per video")
    if "fps" in metrics:
        out["fps"] = B * Fr / out["seconds"]
    if "oracle" in metrics:
        if H != W:
            raise ValueError(f"the oracle reads square toy frames, got {H}x{W}")
        out["oracle"] = oracle_scores(videos, prompts)
        out["oracle_windows"] = window_curve(videos, prompts, window=min(3, Fr))
    if "clip_score" in metrics or "frame_consistency" in metrics:
        judge = judge or toy_clip(os.path.join(HERE, "out", toy_clip_name(Fr, H)), Fr, H)
        if "clip_score" in metrics:
            out["clip_score"] = clip_scores(judge, videos, prompts).mean().item()
        if "frame_consistency" in metrics:
            if Fr < 2:
                raise ValueError("frame_consistency needs videos of at least 2 frames")
            out["frame_consistency"] = frame_consistency(judge, videos).mean().item()
    if "ssim" in metrics or "psnr" in metrics:
        if references is None:
            raise ValueError("'ssim' and 'psnr' compare with references=: pass the true videos, same shape")
        references = as_videos(references, "references")
        if references.shape != videos.shape:
            raise ValueError(f"references {tuple(references.shape)} must have the videos' shape {tuple(videos.shape)}")
        a, b = videos.flatten(0, 1), references.flatten(0, 1)                    # (B*F, 3, H, W): frames as images
        if "ssim" in metrics:
            s = ssim(a, b).view(B, Fr)                                           # (B, F)
            out["ssim"], out["ssim_per_frame"] = s.mean().item(), s.mean(0).tolist()
        if "psnr" in metrics:  # per video: its frames stacked into one tall image (B, 3, F*H, W), one MSE
            tall = lambda v: v.transpose(1, 2).flatten(2, 3)                     # (B, 3, F, H, W) -> (B, 3, F*H, W)
            out["psnr"] = psnr(tall(videos), tall(references)).mean().item()
    return out


# -----------------------------------------------------------------------------
# 5. References for SSIM and PSNR: continue the first chunk of a ground-truth video
#
# A prompt alone allows many videos (any start position, any speed), so a free generation has no reference. The
# truth's first chunk fixes position, speed and phase; its continuation is then (nearly) determined, and the rest
# of the ground-truth video is the reference.

@torch.no_grad()
def prompt_sensitivity(model, prompt, other, sigmas=(0.5, 0.8, 0.95, 1.0), n=16, frames=12, resolution=32,
                       context=0):
    """Does a word change what the model draws? Ground-truth videos of `prompt` (seeds 0..n-1) are noised to each
    sigma (one fixed noise), and the model's x0 predictions under `prompt` and under `other` are compared:
    returns {sigma: mean squared difference} (pixel range 2) over the noised frames. A model that ignores the
    words that differ gives ~0 at every sigma. context=c keeps the first c frames clean (t = 0), as the chunk-wise
    sampler shows finished chunks. The README's diagnosis compares "left to right" with "right to left" this way:
        python -c "from evaluate import *; m, _ = load_model('out/tiny', 'teacher'); print(prompt_sensitivity(m,
            'A white circle moving from left to right', 'A white circle moving from right to left', context=3))" """
    x0 = toydata.render_batch([prompt] * n, list(range(n)), frames, resolution)      # (n, F, C, H, W)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    a, b = toydata.tokenize([prompt] * n), toydata.tokenize([other] * n)
    out = {}
    for s in sigmas:
        sigma = torch.full((n, frames), float(s))
        sigma[:, :context] = 0.0                                                     # the clean context
        x_t = add_noise(x0, eps, sigma)
        out[s] = (model(x_t, 1000 * sigma, a) - model(x_t, 1000 * sigma, b))[:, context:].pow(2).mean().item()
    return out


def word_visibility(prompt, other, n=1000, frames=3, resolution=32, other_first_seed=0):
    """How much does a word decide, ON AVERAGE, in what the first frames look like once the body's place is known?
    The ground truth alone, no model: n videos of each prompt (seeds 0..n-1; `other` from other_first_seed on),
    each rolled on the torus so that its body's frame-0 centre (the oracle's) sits mid-frame, then averaged per
    prompt. Returns, per frame, the RMS difference of the two averages (pixel range 2). That average is the best x0
    prediction of a model that knows where the body is and nothing else, as the teacher does early in sampling a
    first frame; where the two averages agree, the word cannot change its prediction (whatever it changes in a
    single video), and the x0 loss gives the word no reason to be read. Sampling error of the averages: the same
    prompt against itself with other_first_seed=n."""
    assert n >= 1 and frames >= 1, f"need n >= 1 and frames >= 1, got {n}, {frames}"
    means = []
    for p, first in ((prompt, 0), (other, other_first_seed)):
        videos = toydata.render_batch([p] * n, list(range(first, first + n)), frames, resolution)   # (n, F, C, H, W)
        cx, cy = toydata.object_centres(videos[:, 0])                  # (n,), (n,): each video's frame-0 body
        rolled = [v.roll((resolution // 2 - int(y), resolution // 2 - int(x)), (-2, -1))   # body to mid-frame
                  for v, x, y in zip(videos, cx, cy)]
        means.append(torch.stack(rolled).mean(0))                                   # (F, C, H, W)
    return (means[0] - means[1]).pow(2).mean((1, 2, 3)).sqrt().tolist()            # (F,) RMS over pixels


@torch.no_grad()
def shape_readback(model, sigmas=(0.05, 0.2, 0.35, 0.5, 0.65), frames=12, resolution=32, prompts=None):
    """Can the model keep a shape it is SHOWN? Ground-truth videos (every other object prompt, seed 500 + i) are
    noised to each sigma and replaced by the model's x0 prediction under their own prompt: returns {sigma: percent
    whose shape the oracle reads as the prompt's} (the truth itself: 100). High at low noise but chance (33) at the
    noise levels where a sampler settles the shape means the model redraws a shape it sees, but does not draw one
    from the word."""
    prompts = prompts or [p for p in toydata.ALL_PROMPTS if "shape" in toydata.parse_prompt(p)][::2]
    x0 = toydata.render_batch(prompts, [500 + i for i in range(len(prompts))], frames, resolution)  # (n, F, C, H, W)
    gen, tokens, out = torch.Generator().manual_seed(0), toydata.tokenize(prompts), {}
    for s in sigmas:
        sigma = torch.full((len(prompts), frames), float(s))
        x0_hat = model(add_noise(x0, torch.randn(x0.shape, generator=gen), sigma), 1000 * sigma, tokens)
        hits = [toydata.read_video(v).get("shape") == toydata.parse_prompt(p)["shape"] for v, p in zip(x0_hat, prompts)]
        out[s] = 100 * sum(hits) / len(hits)
    return out


def continue_videos(model, config, truth, prompts, seeds, which):
    """Ground-truth videos (B, F, 3, H, W) -> (B, F, 3, H, W): the truth's first chunk, then the model's frames.
    Causal models (ode, self_forcing): the truth's first chunk enters the KV cache as clean context at t = 0,
    as a generated chunk would (teacher-forced context), and the other chunks stream as in sample.py: 4 steps,
    re-noising with fresh noise between steps. The bidirectional teacher has no cache: its chunk-wise Euler sampler
    (CFG) starts after the truth's first chunk, which it sees clean at t = 0 as it would its own. Noise from each seed."""
    K, Fr = config["chunk"], truth.shape[1]
    tokens = toydata.tokenize(prompts)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    window, sink = rolling_cache(config)
    if which == "teacher":
        noise = torch.stack([torch.randn(truth.shape[1:], generator=g) for g in gens])   # (B, F, 3, H, W)
        return euler_sample(model, tokens, noise, config["teacher_steps"], config["shift"], config["guidance"],
                            chunk=K, prefix=truth[:, :K])
    if which == "diffusion":  # the ablation's diffusion baselines: many Euler steps per chunk, the truth cached first
        noise = torch.stack([torch.randn(truth.shape[1:], generator=g) for g in gens])   # (B, F, 3, H, W)
        return stream_euler_sample(model, tokens, noise, config["teacher_steps"], config["shift"], config["guidance"],
                                   window=window, sink=sink, prefix=truth[:, :K])
    sigmas = student_sigmas(4, config["shift"])
    noise = torch.stack([torch.randn(len(sigmas), *truth.shape[1:], generator=g) for g in gens], 1)  # (S, B, F, ...)
    return stream_sample(model, tokens, Fr, sigmas, noise=noise, prefix=truth[:, :K],   # the truth enters the cache
                         window=window, sink=sink)


def orbit_continuation(model, config, which, start, videos=48):
    """Does a model keep an orbit turning the asked way from a true chunk taken anywhere along it? For the first
    `videos` held-out (orbit prompt, seed) pairs, the ground truth of frames [start, start + F) of a longer video
    (the training length F; `start` frames into the orbit, so from start >= 1 the chunk is not where the world's
    orbits begin), its first chunk continued by the model (continue_videos); returns the share of the continued
    frames' turns (frame K on: motion_steps' turn_agree) that go the asked way: the truth 1, a coin-flip 0.5.
    At 4x the training length a streamed orbit is continued from where it has got to, never from its start."""
    assert start >= 0 and videos >= 1, f"orbit_continuation needs start >= 0 and videos >= 1, got {start}, {videos}"
    K, Fr, res = config["chunk"], config["num_frames"], config["resolution"]
    orbits = [p for p in toydata.ALL_PROMPTS if toydata.parse_prompt(p).get("motion") in ("clockwise",
                                                                                           "counter_clockwise")]
    prompts, seeds = toydata.eval_set(videos, prompts=orbits)
    truth = toydata.render_batch(prompts, seeds, start + Fr, res)[:, start:]        # (B, F, 3, H, W)
    cont = torch.cat([continue_videos(model, config, truth[i:i + 64], prompts[i:i + 64], seeds[i:i + 64], which)
                      for i in range(0, videos, 64)])
    agree = motion_steps(cont.clamp(-1, 1), prompts)["turn_agree"][K:]              # turns within new frames
    return sum(agree) / len(agree)


def median_seconds(fn, repeats):
    """Median wall time of fn() over `repeats` calls, after one warm-up call (first calls allocate)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -----------------------------------------------------------------------------
# 6. The command line: one table for the three models of a run, between ceiling and floor

JUDGED, COMPARED = ["oracle", "clip_score", "frame_consistency"], ["ssim", "psnr"]


def table_rows(loaded, judge, prompts, seeds, truth, K):
    """The table: ceiling, floor and one row per model, each a dict of evaluate_videos results. Oracle, CLIP score and
    frame consistency judge videos generated from the prompt alone; SSIM and PSNR compare frames K.. continued from
    the truth's first chunk with the truth. Also returns SSIM and PSNR of holding the last true context frame still:
    what a continuation must beat to have predicted any motion at all, and each model's generated videos (unclamped),
    for drift_and_speed to read again rather than make again."""
    Fr = truth.shape[1]
    ref, neighbour = truth[:, K:], truth.roll(-1, 0)               # row b of neighbour: video b + 1
    alternating = torch.where((torch.arange(Fr) % 2 == 1).view(1, Fr, 1, 1, 1), neighbour, truth)  # b, b+1, b, ...
    rows = {"ground truth (ceiling)": {**evaluate_videos(truth, prompts, JUDGED, judge=judge),
                                       **evaluate_videos(ref, prompts, COMPARED, references=ref)},
            "shuffled prompts (floor)": {**evaluate_videos(truth, prompts[1:] + prompts[:1], JUDGED[:2], judge=judge),
                                         **evaluate_videos(alternating, prompts, JUDGED[2:], judge=judge),
                                         **evaluate_videos(neighbour[:, K:], prompts, COMPARED, references=ref)}}
    made = {}
    for m in tqdm(list(loaded), desc="evaluating", leave=False):
        net, cfg = loaded[m]
        video, _ = generate(net, cfg, prompts, Fr, seeds, which=m, progress=False)
        made[m] = video
        cont = torch.cat([continue_videos(net, cfg, truth[i:i + 64], prompts[i:i + 64], seeds[i:i + 64], m)
                          for i in range(0, len(prompts), 64)])   # 64 at a time: memory flat in --videos
        rows[m] = {**evaluate_videos(video.clamp(-1, 1), prompts, JUDGED, judge=judge),   # clamped, as shown
                   **evaluate_videos(cont[:, K:].clamp(-1, 1), prompts, COMPARED, references=ref)}
    still = truth[:, K - 1:K].expand(-1, Fr - K, -1, -1, -1)       # (B, F - K, 3, H, W): the last context frame
    return rows, evaluate_videos(still, prompts, COMPARED, references=ref), made


def drift_and_speed(loaded, prompts, seeds, Fr, res, repeats, teacher_videos=None):
    """Drift: Self Forcing streamed to 4x the training length through the rolling cache, judged by 3-frame windows in
    the last quarter; with the teacher loaded, its own windows at the training length beside them (read from
    teacher_videos, table_rows' teacher videos of these prompts and seeds, when given). Speed: the same one-video clip
    through each sampler, medians of `repeats` runs. Either needs Self Forcing ({} without it, --models); the
    teacher's figures only with the teacher loaded."""
    if "self_forcing" not in loaded:
        return {}
    net, cfg = loaded["self_forcing"]
    objects = [i for i, p in enumerate(prompts) if toydata.parse_prompt(p)["scene"] == "object"]
    long_prompts, long_seeds = [prompts[i] for i in objects], [seeds[i] for i in objects]
    long, _ = generate(net, cfg, long_prompts, 4 * Fr, long_seeds, progress=False)
    # each rollout read once, whole and within the training length (the oracle judges a window by its video's end
    # colours, so the first Fr frames are read as a video of their own, as at 1x); the split below only slices
    late = [toydata.window_adherence(v, p) for v, p in zip(long, long_prompts)]
    early = [toydata.window_adherence(v[:Fr], p) for v, p in zip(long, long_prompts)]
    r = dict(drift_last_quarter=last_quarter(late), drift_videos=len(objects),
             drift_ground_truth=late_window_adherence(toydata.render_batch(long_prompts, long_seeds, 4 * Fr, res),
                                                      long_prompts))
    # where it is lost: the same rollouts' windows within the training length, and the last quarter for straight
    # lines and orbits apart (past the training length an orbit is continued from wherever it has got to on its
    # circle, which the models of a world whose orbits start near the top do not do: orbit_continuation)
    r["drift_first_length"] = window_share(early)
    r["drift_by_motion"] = {}
    for kind, orbit in (("straight", False), ("orbits", True)):
        pick = [i for i, p in enumerate(long_prompts)
                if (toydata.parse_prompt(p)["motion"] not in toydata.LINEAR_DIRECTIONS) == orbit]
        if pick:
            r["drift_by_motion"][kind] = dict(first_length=window_share([early[i] for i in pick]),
                                              last_quarter=last_quarter([late[i] for i in pick]), videos=len(pick))
    p1, s1 = [prompts[0]], [seeds[0]]
    if "teacher" in loaded:
        teacher, teacher_cfg = loaded["teacher"]
        # what the student was distilled from, judged the same way: the teacher's own 3-frame windows on the same
        # object prompts at the training length (the longest clip it makes), the reference the drift is read against;
        # the table's videos when it made them (a video does not depend on what it is batched with: the same ones)
        if teacher_videos is not None:
            short = teacher_videos[objects]                      # (len(objects), Fr, 3, H, W)
        else:
            short, _ = generate(teacher, teacher_cfg, long_prompts, Fr, long_seeds, which="teacher", progress=False)
        r["drift_teacher_first_length"] = window_share([toydata.window_adherence(v, p)
                                                        for v, p in zip(short, long_prompts)])
        # the teacher's sampler for the same clip: what the student's speed-up is against
        r["teacher_s"] = median_seconds(lambda: generate(teacher, teacher_cfg, p1, Fr, s1, which="teacher",
                                                         progress=False), repeats)
        r["teacher_steps"] = teacher_cfg["teacher_steps"]
    r["stream_s"] = median_seconds(lambda: generate(net, cfg, p1, Fr, s1, progress=False), repeats)
    r["recompute_4x_s"] = median_seconds(lambda: generate(net, cfg, p1, 4 * Fr, s1, kv_cache=False, progress=False),
                                         repeats)
    r["cached_4x_s"] = median_seconds(lambda: generate(net, cfg, p1, 4 * Fr, s1, progress=False), repeats)
    r["first_chunk_s"] = generate(net, cfg, p1, Fr, s1, progress=False)[1]["first_chunk_s"]
    return dict(r, stream_fps=Fr / r["stream_s"])


def main(argv=None):
    ap = OneLineParser(description="Oracle, CLIP score, frame consistency, SSIM/PSNR and speed of a run's models.")
    ap.add_argument("--out_dir", default="out/tiny", help="the training run folder (default out/tiny)")
    ap.add_argument("--videos", type=int, default=64, help="held-out (prompt, seed) pairs (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per timing; the median is reported")
    ap.add_argument("--clip", help="a pretrained CLIP folder on this machine, to judge with instead of the toy CLIP")
    ap.add_argument("--toy_clip", help="the toy CLIP file, trained there if missing "
                                       "(default: <out_dir>/../toyclip_<res>px_<frames>f.pt, _orbits<deg> added for "
                                       "a run with orbit_start_deg)")
    ap.add_argument("--clip_steps", type=int, default=TOY_CLIP_TRAINING["steps"], help="toy CLIP training steps")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="which of the run's models to judge, comma-separated (default all three). The teacher's "
                         "rows cost most of the time at many videos; drift needs self_forcing, speed both ends")
    ap.add_argument("--window", type=int, help="recent frames the rolling KV cache keeps at 4x (default: the run's, "
                                               "sample.rolling_cache)")
    ap.add_argument("--sink", type=int, help="first frames it never evicts (default: the run's, none unless its "
                                             "config set one)")
    args = ap.parse_args(argv)
    try:
        if args.videos < 1 or args.repeats < 1 or args.clip_steps < 1:
            raise ValueError("--videos, --repeats and --clip_steps must be at least 1")
        chosen = [m.strip() for m in args.models.split(",") if m.strip()]
        if not chosen or any(m not in MODELS for m in chosen):
            raise ValueError(f"--models takes a comma-separated list of {', '.join(MODELS)}, got {args.models!r}")
        loaded = {m: load_model(args.out_dir, m) for m in MODELS if m in chosen}   # table rows in training order
        for _, cfg in loaded.values():   # --window / --sink: the rolling cache of every stream past the training length
            cfg["window"], cfg["sink"] = rolling_cache(cfg, args.window, args.sink)
        Fr, res, K, window, sink = (next(iter(loaded.values()))[1][k]
                                    for k in ("num_frames", "resolution", "chunk", "window", "sink"))
        path = args.toy_clip or os.path.join(os.path.dirname(os.path.abspath(args.out_dir)), toy_clip_name(Fr, res))
        if not args.clip and not os.path.exists(path):
            print(f"training the toy CLIP judge once ({args.clip_steps} steps) into {path}", file=sys.stderr)
        judge = pretrained_clip(args.clip) if args.clip else toy_clip(path, Fr, res, steps=args.clip_steps)
    except (SampleError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    prompts, seeds = toydata.eval_set(args.videos, Fr, res)
    truth = toydata.render_batch(prompts, seeds, Fr, res)                           # (B, F, 3, H, W)
    rows, frozen, made = table_rows(loaded, judge, prompts, seeds, truth, K)
    retrieval = hard_negative_retrieval(judge, 400, Fr, res)
    r = drift_and_speed(loaded, prompts, seeds, Fr, res, args.repeats, made.get("teacher"))

    cols = [("all", "%"), ("colour", "%"), ("shape", "%"), ("motion", "%"), ("colour_from", "%"), ("colour_to", "%"),
            ("clip_score", ".1f"), ("frame_consistency", ".3f"), ("ssim", ".3f"), ("psnr", ".1f")]
    print(f"\n{args.videos} held-out videos, {Fr} frames at {res}x{res} (out_dir {args.out_dir}). Oracle percent "
          f"correct (all / colour / shape / motion / transition from / to), CLIP score and frame consistency of "
          f"videos generated from the prompt; SSIM and PSNR (dB) of frames {K}-{Fr - 1} continued from the true "
          f"first chunk, against the truth.")
    print(f"{'':<26}" + "".join(f"{h:>9}" for h in ["all", "colour", "shape", "motion", "from", "to", "CLIP",
                                                     "consist", "SSIM", "PSNR"]))
    for name, row in rows.items():
        values = [row["oracle"].get(k) if f == "%" else row[k] for k, f in cols]
        print(f"{name:<26}" + "".join(f"{'-' if v is None else f'{v:.1f}%' if f == '%' else f'{v:{f}}':>9}"
                                      for v, (_, f) in zip(values, cols)))
    print(f"holding the last true context frame still: SSIM {frozen['ssim']:.3f}, PSNR {frozen['psnr']:.1f} dB")
    which = f"pretrained CLIP {args.clip}" if args.clip else f"toy CLIP {path} ({judge['steps']} steps)"
    print(f"judge: {which}; top-1 among hard negatives on 400 held-out ground-truth videos: "
          + ", ".join(f"{k} {v:.1f}%" for k, v in retrieval.items()))
    if r:   # Self Forcing was judged (--models)
        kept = f"the first {sink} frames and the last {window}" if sink else f"the last {window} frames"
        print(f"\nSelf Forcing at {4 * Fr} frames (rolling cache: {kept}), "
              f"3-frame windows in the last quarter matching the prompt: {r['drift_last_quarter']:.1f}% (ground truth "
              f"{r['drift_ground_truth']:.1f}%, {r['drift_videos']} object prompts)")
        split = "; ".join(f"{k} {d['first_length']:.1f} -> {d['last_quarter']:.1f}% ({d['videos']})"
                          for k, d in r["drift_by_motion"].items())
        print(f"  windows within the first {Fr} frames -> in the last quarter: all {r['drift_first_length']:.1f} -> "
              f"{r['drift_last_quarter']:.1f}%; {split}")
        if "drift_teacher_first_length" in r:
            print(f"  the teacher's own {Fr}-frame videos, the same windows: {r['drift_teacher_first_length']:.1f}%")
        against = faster = ""
        if "teacher_s" in r:   # the teacher was judged too: its sampler timed on the same clip
            against = f"teacher {r['teacher_steps']}-step sampler {r['teacher_s'] * 1000:.0f} ms, "
            faster = f"{r['teacher_s'] / r['stream_s']:.1f}x faster, "
        print(f"speed, one {Fr}-frame clip, median of {args.repeats}: {against}Self Forcing 4-step streaming "
              f"{r['stream_s'] * 1000:.0f} ms ({faster}{r['stream_fps']:.0f} frames/s, first chunk "
              f"{r['first_chunk_s'] * 1000:.0f} ms)")
        print(f"speed, one {4 * Fr}-frame clip: KV cache {r['cached_4x_s'] * 1000:.0f} ms, recomputing the context "
              f"{r['recompute_4x_s'] * 1000:.0f} ms ({r['recompute_4x_s'] / r['cached_4x_s']:.1f}x)")
    for row in rows.values():   # JSON has no infinity: the ceiling's PSNR (identical frames) is written as null
        row["psnr"] = None if row["psnr"] == math.inf else row["psnr"]
    # the default table is eval.json; other counts, models or caches get a name of their own, so as not to overwrite it
    cache = "" if args.window is None and args.sink is None else f"_window{window}_sink{sink}"
    default = args.videos == ap.get_default("videos") and list(loaded) == MODELS and not cache
    name = "eval.json" if default else f"eval_{args.videos}_{'+'.join(loaded)}{cache}.json"
    with open(os.path.join(args.out_dir, name), "w") as f:
        json.dump(dict(videos=args.videos, models=list(loaded), rows=rows, hold_last_frame=frozen, judge=which,
                       judge_retrieval=retrieval, window=window, sink=sink, **r), f, indent=1)
    print(f"written to {os.path.join(args.out_dir, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
