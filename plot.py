"""
Pictures of a training run: what the models make, how one chunk is denoised, where attention may look, how long
rollouts drift, and how training went.

    python plot.py out/tiny            # every figure below into out/tiny/plots/ (under a minute on 2 CPU cores)
    python plot.py --out_dir out/tiny --prompts 6 --drift_videos 48     # more prompts in the grids, smoother drift

  curves.png          each stage's losses against iterations (the teacher's by noise level), and the held-out
                      oracle adherence that train.py measured along the way
  grid.png / .gif     the last trained model's videos for several prompts and seeds: frames across, videos down
  compare.png / .gif  ground truth, teacher, ODE init and Self Forcing on the same prompts and seeds
  trajectory.png      one chunk through the student's 4 steps (x_t in, predicted x0 out), and the teacher's
                      many-step Euler sampler seen at the same noise levels
  masks.png           model.py's attention patterns, frame by frame
  drift.png           oracle adherence frame by frame for rollouts 4x longer than training; ground truth on top

From Python (videos are (F, 3, H, W) or (B, F, 3, H, W) in [-1, 1], as everywhere in this repo):

    from plot import display_video
    from sample import generate_video
    display_video(generate_video("A red circle moving from left to right"))   # inline in Jupyter, else a GIF file

Figures are drawn 700 px wide, the width they get in the README, so the text sizes here are what a reader sees.
"""
import io
import json
import math
import os
import sys
import tempfile
import textwrap
import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import sample
import toydata
from model import (add_noise, cfg_context, cfg_x0, euler_sample, euler_sigmas, frame_blocks, make_attention_mask,
                   prefill, sampler_windows, stream_layout, stream_sample, student_sigmas)
from sample import CHECKPOINTS, OneLineParser, SampleError, generate, load_model, to_uint8, upscale

WIDTH, GIF_WIDTH, DPI = 7.0, 4.2, 100      # inches; 700 px in the README, GIFs smaller to stay well under 1 MB
NAMES = {"teacher": "teacher", "ode": "ODE init", "self_forcing": "Self Forcing", "diffusion": "TF/DF baseline"}


def new_figure(height, width=WIDTH):
    # a Figure with its own Agg canvas instead of pyplot: no global backend switch, so importing plot.py in a
    # notebook leaves the notebook's inline plotting alone
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def short(label, width=None):
    """'A red circle moving from left to right (noise seed 0)' -> 'red circle, left to right (seed 0)', wrapped
    to lines of `width` characters: titles for small tiles."""
    text = label[2:] if label.startswith("A ") else label[3:] if label.startswith("An ") else label
    text = text.replace(" moving from ", ", ").replace(" moving ", ", ").replace("noise seed ", "seed ")
    text = text.replace("Color gradient transitioning from ", "gradient, ")
    return textwrap.fill(text.replace("seed ", "seed\u00a0"), width) if width else text   # no break in "seed 0"


# -----------------------------------------------------------------------------
# Videos: files, film strips, grids, side-by-side comparisons, notebooks

def save_video(video, path, fps=8, scale=8):
    """sample.save_video: <stem>.mp4, .gif and .png for one video (F, C, H, W); path may end in .gif/.mp4/.png."""
    stem, ext = os.path.splitext(path)
    return sample.save_video(video, stem if ext.lower() in (".gif", ".mp4", ".png") else path, fps, scale)


def draw_strip(ax, video, chunk=None):
    """A video as a film strip on ax, frames left to right; a thick white line between chunks shows which
    frames the model denoised together. Returns the frame width in pixels."""
    frames = to_uint8(video)                                                   # (F, H, W, C)
    F, H, W, _ = frames.shape
    ax.imshow(np.concatenate(list(frames), axis=1), interpolation="nearest")  # (H, F*W, C)
    for f in range(1, F):
        thick = bool(chunk) and f % chunk == 0
        ax.axvline(f * W - 0.5, color="white" if thick else "0.45", lw=1.5 if thick else 0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    return W


def film_strips(items, path, chunk=None, title=""):
    """A PNG of film strips, one per (video, title, row label) in items, frames aligned across all of them."""
    F = items[0][0].shape[0]
    fig = new_figure(0.5 + len(items) * (WIDTH / (F + 2.5 * any(lab for _, _, lab in items)) + 0.1)
                     + 0.22 * sum(bool(t) for _, t, _ in items))
    axes = fig.subplots(len(items), 1, squeeze=False)[:, 0]
    for ax, (video, text, label) in zip(axes, items):
        W = draw_strip(ax, video, chunk)
        ax.set_title(text or "", fontsize=9, loc="left")
        ax.set_ylabel(label or "", fontsize=9, rotation=0, ha="right", va="center")
    step = 1 if F <= 16 else 4        # frame numbers under the last strip
    axes[-1].set_xticks([f * W + W / 2 - 0.5 for f in range(0, F, step)], range(0, F, step), fontsize=8)
    axes[-1].set_xlabel("frame", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def write_gif(videos, path, ncols, titles, ylabels=None, fps=4):
    """Several videos playing side by side as one GIF: tiles in rows of ncols, a title over each."""
    import imageio.v2 as imageio
    frames = [to_uint8(v) for v in videos]                                     # each (F, H, W, C)
    F, nrows = frames[0].shape[0], math.ceil(len(videos) / ncols)
    assert all(f.shape[0] == F for f in frames), "the videos of one GIF need the same number of frames"
    fig = new_figure(GIF_WIDTH / ncols * nrows * 1.15 + 0.25, GIF_WIDTH)
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=dict(xticks=[], yticks=[])).ravel()
    images = [ax.imshow(fr[0], interpolation="nearest") for ax, fr in zip(axes, frames)]
    for i, ax in enumerate(axes):
        if i >= len(videos):
            ax.set_axis_off()
            continue
        ax.set_title(titles[i], fontsize=7)
        ax.set_ylabel(ylabels[i] if ylabels else "", fontsize=7)
    header, out = fig.suptitle("", fontsize=9), []
    for f in range(F):   # one layout, F redraws: only the pixels and the frame counter change
        for im, fr in zip(images, frames):
            im.set_data(fr[f])
        header.set_text(f"frame {f + 1} of {F}")
        fig.canvas.draw()
        out.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    imageio.mimsave(path, out, duration=1000 / fps, loop=0)
    return path


def video_grid(videos, labels, path, chunk=None, title="", ncols=4):
    """Many videos at once: <stem>.png, a labelled film strip per video (frames across, videos down), and
    <stem>.gif, the videos playing in a grid. Returns both paths."""
    assert len(videos) == len(labels), f"{len(videos)} videos but {len(labels)} labels"
    stem = os.path.splitext(path)[0]
    png = film_strips([(v, label, None) for v, label in zip(videos, labels)], stem + ".png", chunk, title)
    return png, write_gif(videos, stem + ".gif", min(ncols, len(videos)), [short(lab, 20) for lab in labels])


def compare_videos(rows, labels, path, chunk=None, title=""):
    """Side by side, aligned frame by frame. rows: {name: videos (B, F, C, H, W)}, the same B prompts and seeds
    in every row; labels: B titles. Writes <stem>.png (per prompt a strip per name) and <stem>.gif (prompts
    down, names across). Returns both paths."""
    stem, names, B = os.path.splitext(path)[0], list(rows), len(labels)
    assert all(len(v) == B for v in rows.values()), f"every row needs one video per label ({B})"
    items = [(rows[n][b], labels[b] if n == names[0] else None, n) for b in range(B) for n in names]
    png = film_strips(items, stem + ".png", chunk, title)
    titles = [n if b == 0 else "" for b in range(B) for n in names]                  # names over the top row
    ylabels = [short(labels[b], 16) if n == names[0] else "" for b in range(B) for n in names]   # prompts down
    return png, write_gif([v for v, _, _ in items], stem + ".gif", len(names), titles, ylabels)


def in_notebook():
    """True inside a Jupyter kernel; False in plain python or an IPython terminal, which cannot show images."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


def display_video(video, path=None, fps=8, scale=4):
    """Show one video (F, C, H, W): inline as an animated GIF in a notebook; elsewhere write the GIF to `path`
    (default: a new temporary file) and print where it went. Returns that path, or None when shown inline."""
    import imageio.v2 as imageio
    buf = io.BytesIO()
    imageio.mimsave(buf, list(upscale(to_uint8(video), scale)), format="GIF", duration=1000 / fps, loop=0)
    if in_notebook():
        from IPython.display import Image, display
        display(Image(data=buf.getvalue(), format="gif"))
        return None
    path = path or os.path.join(tempfile.mkdtemp(prefix="display_video_"), "video.gif")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    print(f"not in a notebook, so the video went to a file: {path}")
    return path


# -----------------------------------------------------------------------------
# Training curves, from train.py's log.jsonl: one JSON object per line, {"stage", "iter", "time", ...values}

NOT_CURVES = {"stage", "iter", "time", "elapsed", "lr", "seconds", "oracle"}
STAGE_TITLES = {"teacher": "teacher: rectified-flow loss by noise level",
                "ode_init": "ODE init: MSE to the teacher's x0", "self_forcing": "Self Forcing: DMD and critic losses"}


def read_log(path):
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass                      # a last line still being written by a running training
    return records


def smooth(y, n=5):
    # a centred moving average: a minibatch loss is too noisy to show its trend raw
    if len(y) < 4 * n:
        return np.asarray(y)
    return np.convolve(np.pad(y, (n // 2, n - 1 - n // 2), mode="edge"), np.ones(n) / n, mode="valid")


def plot_curves(log_path, out):
    """A panel per stage with every value it logged against iterations (raw faint, smoothed solid), and a panel
    of the oracle checks against wall time. Stages come from the log, so a new stage gets its panel too.
    Returns the path, or None while no value has two points yet."""
    records = read_log(log_path)
    if not records:
        raise SampleError(f"{log_path} holds no log records yet")
    series = {}                                                     # stage -> {key: ([iter], [value])}
    for r in records:
        for k, v in r.items():
            if k not in NOT_CURVES and isinstance(v, (int, float)) and math.isfinite(v):
                xs, ys = series.setdefault(r["stage"], {}).setdefault(k, ([], []))
                xs.append(r["iter"])
                ys.append(v)
    series = {s: c for s, c in series.items() if max(len(xs) for xs, _ in c.values()) > 1}   # curves, not points
    checks = [r for r in records if isinstance(r.get("oracle"), dict)]
    n = len(series) + bool(checks)
    if n == 0:
        return None                                                 # too early in training: nothing to draw yet
    fig = new_figure(2.7 * math.ceil(n / 2))
    axes = fig.subplots(math.ceil(n / 2), 2, squeeze=False).ravel()
    for ax, (stage, curves) in zip(axes, series.items()):
        bins = sorted(k for k in curves if k.startswith("loss_s"))   # "loss_s0.25": videos with sigma in [0.25, 0.5)
        lows = [float(k[len("loss_s"):]) for k in bins]
        width = min([b - a for a, b in zip(lows, lows[1:])] + [1 - lows[-1]]) if bins else 0
        for i, (k, (xs, ys)) in enumerate(curves.items()):
            label, colour = k, f"C{i}"
            if k in bins:
                j = bins.index(k)
                label, colour = f"σ in [{lows[j]:.2f}, {lows[j] + width:.2f})", f"C{j}"
            elif k == "loss" and bins:
                label, colour = "all noise levels", "black"
            ax.plot(xs, ys, color=colour, alpha=0.2, lw=0.8)
            ax.plot(xs, smooth(ys), color=colour, lw=1.6, label=label)
        values = [y for _, ys in curves.values() for y in ys]
        if min(values) > 0 and max(values) / min(values) > 20:   # log scale only where values span decades
            ax.set_yscale("log")
        ax.set_title(STAGE_TITLES.get(stage, f"{stage}: " + ", ".join(curves)), fontsize=9)
        ax.set_xlabel("iteration", fontsize=9)
        if len(curves) > 1:
            ax.legend(fontsize=7)
    if checks:
        ax, t0 = axes[len(series)], records[0]["time"] - records[0].get("elapsed", 0)
        minutes = lambda r: (r["time"] - t0) / 60
        for i, stage in enumerate(dict.fromkeys(r["stage"] for r in records)):   # shade and name each stage
            rs = [r for r in records if r["stage"] == stage]
            lo = min(minutes(r) - r.get("elapsed", r.get("seconds", 0)) / 60 for r in rs)
            hi = max(minutes(r) for r in rs)
            ax.axvspan(lo, hi, color=f"C{i}", alpha=0.1, lw=0)
            ax.text((lo + hi) / 2, 101, stage, fontsize=7, rotation=90, ha="center", va="bottom")
        for k, style in [("all", "k-o"), ("colour", "C3--s"), ("shape", "C2--^"), ("motion", "C0--v")]:
            pts = [(minutes(r), r["oracle"][k]) for r in checks if k in r["oracle"]]
            if pts:
                ax.plot(*zip(*pts), style, ms=4, lw=1.5 if k == "all" else 1, label="all correct" if k == "all" else k)
        ax.set_ylim(0, 100)
        ax.set_xlabel("minutes since training started", fontsize=9)
        ax.set_ylabel("% of held-out videos right", fontsize=9)
        ax.set_title("oracle adherence during training", fontsize=9, pad=50)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=8)
    for ax in axes[n:]:
        ax.set_axis_off()
    return save(fig, out)


# -----------------------------------------------------------------------------
# Attention masks: model.make_attention_mask with ONE token per frame is exactly the frame-level pattern

MASK_COLOURS = np.array([[242, 242, 242], [158, 202, 225], [8, 81, 156], [253, 141, 60]], np.uint8)
MASK_LEGEND = ["masked out", "visible", "visible: own block", "visible: sink frame (never evicted)"]


def mask_picture(visible, num_frames, chunk=None, sink=0, first_frame=False):
    """(n, n) bool frame mask -> (n, n) ints: 0 masked, 1 visible, 2 the query's own block (if chunk: a chunk, or
    with first_frame frame 0 alone and frames 1..K-1), 3 a sink frame. Row/column i of a [clean | noisy] mask
    (n = 2 num_frames) is frame i % num_frames of its half."""
    n = visible.shape[0]
    frame = torch.arange(n) % num_frames
    pic = visible.long()
    pic[visible & (frame[None, :] < sink) & (torch.arange(n)[None, :] < num_frames)] = 3
    if chunk:
        block = frame_blocks(num_frames, chunk, first_frame)[frame]                   # (n,) block of each row
        pic[visible & (block[:, None] == block[None, :])] = 2
    return pic.numpy()


def plot_masks(path, num_frames=12, chunk=3, window=None, sink=None, long_frames=None, first_frame=False):
    """Four panels, query frames down, key frames across: bidirectional, block-causal, teacher forcing
    [clean | noisy], and streaming long_frames frames through a rolling KV cache (window + sink). first_frame:
    the student's blocks start with frame 0 alone (ModelConfig.first_frame). Returns {panel: the (n, n) picture
    drawn}, so a test can hold the picture against make_attention_mask."""
    F, K, ff = num_frames, chunk, first_frame
    alone = " (frame 0 alone)" if ff else ""
    # unless told: the first chunk as sink frames (what config/orbits_long.py keeps; the picture shows what a sink is)
    # and recent frames up to training's context, sample.rolling_cache's rule
    window, sink = sample.rolling_cache(dict(num_frames=F, chunk=K, sink=K), window, sink)
    long_frames = long_frames or 2 * F
    panels = {  # name: (frame mask, frames per half, chunk to mark, sink, title)
        "bidirectional": (make_attention_mask(F, 1, K, "bidirectional"), F, None, 0,
                          "bidirectional (teacher, critic)\nevery frame sees every frame"),
        "block-causal": (make_attention_mask(F, 1, K, "causal", first_frame=ff), F, K, 0,
                         f"block-causal, chunks of {K}{alone}\nblock i sees blocks ≤ i"),
        "teacher forcing": (make_attention_mask(F, 1, K, "teacher_forcing", first_frame=ff), F, K, 0,
                            "teacher forcing [clean | noisy] (ODE init)\nnoisy block i sees clean blocks < i"),
        "streaming": (make_attention_mask(long_frames, 1, K, "causal", window, sink, ff), long_frames, K, sink,
                      f"streaming {long_frames} frames: KV cache of\nthe last {window} frames"
                      + (f" + {sink} sink frames" if sink else "")),
    }
    fig, drawn = new_figure(7.6), {}
    for ax, (name, (vis, frames, k, s, title)) in zip(fig.subplots(2, 2).ravel(), panels.items()):
        pic = drawn[name] = mask_picture(vis, frames, k, s, ff)
        n = len(pic)
        ax.imshow(MASK_COLOURS[pic], interpolation="nearest")
        for b in range(K, n, K) if k else []:   # chunk boundaries
            ax.axhline(b - 0.5, color="white", lw=0.8)
            ax.axvline(b - 0.5, color="white", lw=0.8)
        ticks = list(range(0, n, K if n <= 24 else 2 * K))
        ax.set_xticks(ticks, [t % frames for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [t % frames for t in ticks], fontsize=7)
        halves = " clean | noisy" if n > frames else ""
        for at in [frames - 0.5] if halves else []:
            ax.axhline(at, color="black", lw=1.5)
            ax.axvline(at, color="black", lw=1.5)
        ax.set_xlabel(f"key frame (attended to){':' + halves if halves else ''}", fontsize=9)
        ax.set_ylabel(f"query frame{':' + halves if halves else ''}", fontsize=9)
        ax.set_title(title, fontsize=9)
    fig.legend([Patch(color=c / 255, ec="0.5") for c in MASK_COLOURS], MASK_LEGEND, loc="outside lower center",
               ncols=2, fontsize=8)
    save(fig, path)
    return drawn


# -----------------------------------------------------------------------------
# The denoising trajectory of one chunk: the student's 4 steps against the teacher's Euler sampler

@torch.no_grad()
def student_trajectory(model, config, prompt, seed=0, chunk_index=0):
    """The few-step sampler on one chunk, step by step, as model.stream_sample runs it: a list of
    (sigma, x_t, x0_hat), each (K, C, H, W). The earlier chunks are streamed first and sit in the KV cache. With
    ModelConfig.first_frame the first chunk is two blocks, frame 0 alone and then the rest: their steps side by side."""
    K, F, res, sig = config["chunk"], config["num_frames"], config["resolution"], student_sigmas(4, config["shift"])
    start = chunk_index * K
    assert 0 <= start < F, f"chunk {chunk_index} is outside the {F} frames"
    # all the noise at once, (S, 1, F, C, H, W), as stream_sample draws it: the chunk then ends exactly as in the
    # video sample.generate makes for this prompt and seed
    noise = torch.randn(len(sig), 1, F, 3, res, res, generator=torch.Generator().manual_seed(seed))
    tokens = toydata.tokenize([prompt])
    cache = model.new_cache(tokens)
    if start:
        prefill(model, cache, stream_sample(model, tokens, start, sig, noise=noise[:, :, :start]))  # (1, start, ...)
    blocks = [(a, m) for a, m in sampler_windows(F, K, first_frame=model.cfg.first_frame) if start <= a < start + K]
    xs, x0s = [[] for _ in sig], [[] for _ in sig]                             # per step, per block
    for a, m in blocks:
        x = noise[0, :, a:a + m]                                               # (1, m, C, H, W)
        for j, s in enumerate(sig):
            x0 = model.forward_chunk(x, torch.full((1, m), 1000 * s), cache, a)   # (1, m, C, H, W)
            xs[j].append(x[0])
            x0s[j].append(x0[0])
            if j + 1 < len(sig):   # re-noise the prediction with FRESH noise to the next level (not an Euler step)
                x = add_noise(x0, noise[j + 1, :, a:a + m], sig[j + 1])
        if a + m < start + K:      # frame 0 is finished before frames 1..K-1 start
            model.append_to_cache(x0, cache, a)
    return [(s, torch.cat(xs[j]), torch.cat(x0s[j])) for j, s in enumerate(sig)]


@torch.no_grad()
def teacher_trajectory(model, config, prompt, seed=0, frames=slice(0, 3)):
    """The teacher's chunk-wise Euler sampler, seen every steps/4 steps, i.e. exactly at the student's sigmas:
    a list of (sigma, x_t, x0_hat) of the chunk `frames`, and that chunk at the end (sample.generate's video)."""
    n, g, F, res = (config[k] for k in ("teacher_steps", "guidance", "num_frames", "resolution"))
    order = sample.teacher_order(config)                                        # chunk, first_frame
    tokens = toydata.tokenize([prompt])
    noise = torch.randn(F, 3, res, res, generator=torch.Generator().manual_seed(seed))[None]   # (1, F, C, H, W)
    traj = euler_sample(model, tokens, noise, n, config["shift"], g, return_trajectory=True, **order)
    # traj (n+1, 1, F, C, H, W): each window's own state at every grid point of its own pass
    sigmas, ctx = euler_sigmas(n, config["shift"]), cfg_context(model, tokens, g)
    all_windows = sampler_windows(F, order["chunk"], first_frame=order["first_frame"])
    windows = [(a, m) for a, m in all_windows if frames.start <= a < frames.stop]
    assert windows and sum(m for _, m in windows) == frames.stop - frames.start, \
        f"frames {frames} are not whole windows of the teacher's sampler {all_windows}"
    steps = []
    for i in range(0, n, max(1, n // 4)):     # the teacher's own x0 prediction at the states it passed through:
        x0s = []
        for a, m in windows:                  # (the first chunk is two windows: frame 0 alone, then the rest)
            x = torch.cat([traj[-1, :, :a], traj[i, :, a:a + m], noise[:, a + m:]], 1)  # finished, window, noise
            t = 1000 * stream_layout(torch.full((1, F), sigmas[i]), a, m)         # (1, F) past 0, window s, future 1
            x0s.append(cfg_x0(model, x, t, ctx, g)[0, a:a + m])                   # (m, C, H, W)
        steps.append((sigmas[i], traj[i, 0, frames], torch.cat(x0s)))
    return steps, traj[-1, 0, frames]


def plot_trajectory(path, config, prompt, seed=0, student=None, teacher=None, chunk_index=0):
    """Rows: the student's x_t (in) and x0_hat (out) at each of its 4 steps, then the teacher's at the same
    sigmas; the last column is where each sampler ends. Either model may be None."""
    K, every, rows, notes = config["chunk"], max(1, config["teacher_steps"] // 4), [], []
    start = chunk_index * K
    if student is not None:
        steps = student_trajectory(student, config, prompt, seed, chunk_index)
        rows += [("student\nx_t in", [x for _, x, _ in steps] + [None]),
                 ("student\nx̂0 out", [x0 for _, _, x0 in steps] + [steps[-1][2]])]
        notes.append("student: 4 steps" + (f" with frames 0-{start - 1} in the KV cache" if start else "")
                     + "; between steps x̂0 is re-noised with FRESH noise to the next σ")
    if teacher is not None:
        steps, end = teacher_trajectory(teacher, config, prompt, seed, slice(start, start + K))
        rows += [("teacher\nx_t", [x for _, x, _ in steps] + [None]),
                 ("teacher\nx̂0", [x0 for _, _, x0 in steps] + [end])]
        notes.append(f"teacher: {config['teacher_steps']} Euler steps on this chunk, the chunks before it finished "
                     f"(CFG {config['guidance']:g}), seen every {every} steps")
    assert rows, "plot_trajectory needs a student or a teacher"
    fig = new_figure(1.0 + 0.62 * len(rows))
    axes = fig.subplots(len(rows), 5, squeeze=False)
    for r, (label, cells) in enumerate(rows):
        for c, frames in enumerate(cells):
            if frames is None:
                axes[r, c].set_axis_off()
            else:
                draw_strip(axes[r, c], frames)
        axes[r, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
        axes[r, 4].set_title("output" if cells[4] is not None else "", fontsize=8)
    for c, (s, _, _) in enumerate(steps):
        who = ([f"student step {c + 1}"] if student is not None else []) + \
              ([f"teacher step {c * every + 1}"] if teacher is not None else [])
        axes[0, c].set_title("\n".join([f"σ = {s:.2f}"] + who), fontsize=8)
    fig.suptitle(f'"{prompt}", seed {seed}: frames {start}-{start + K - 1}', fontsize=10)
    fig.supxlabel("\n".join(notes), fontsize=8)
    return save(fig, path)


# -----------------------------------------------------------------------------
# Drift: does a rollout longer than training still show its prompt, frame after frame?

def drift_curves(videos, prompts, window=3):
    """{attribute: array over window starts i of the % of videos whose frames [i, i + window) show the prompt's
    value}, read by toydata.read_video_windows, so "all" is toydata.window_adherence averaged over videos."""
    hits = []                                                          # per video, per window: {attribute: bool}
    for v, p in zip(videos, prompts):
        want = toydata.parse_prompt(p)
        readings = toydata.read_video_windows(v, window, reference=p)
        hits.append([{k: r.get(k) == val for k, val in want.items()} for r in readings])
    keys = list(hits[0][0])
    assert all(list(h[0]) == keys for h in hits), "drift_curves needs prompts of one kind (objects)"
    curves = {k: np.array([[w[k] for w in h] for h in hits], float) for k in keys}       # each (B, windows)
    curves["all"] = np.prod(list(curves.values()), axis=0)
    return {k: 100 * c.mean(0) for k, c in curves.items()}


def plot_drift(curves, train_frames, path, window=3, note=""):
    """curves: {name: drift_curves(...)}. A panel per attribute: adherence against the frame each window ends at,
    a dotted line at the training length; "ground truth" is drawn dashed black, the ceiling."""
    fig = new_figure(5.2)
    axes = fig.subplots(2, 3).ravel()
    colours = iter(["C3", "C0", "C2", "C1", "C4"])
    styles = {name: "k--" if name == "ground truth" else next(colours) for name in curves}
    for ax, (key, title) in zip(axes, [("scene", "one object in view"), ("colour", "colour"), ("shape", "shape"),
                                       ("motion", "motion"), ("all", "all correct")]):
        for name, c in curves.items():
            ax.plot(np.arange(len(c[key])) + window - 1, c[key], styles[name], lw=1.3, label=name,
                    zorder=3 if name == "ground truth" else 2)
        ax.axvline(train_frames - 0.5, color="0.5", lw=1, ls=":")
        ax.set_ylim(-3, 103)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[3:5]:
        ax.set_xlabel(f"frame (last of a {window}-frame window)", fontsize=8)
    for ax in axes[::3]:
        ax.set_ylabel("% of videos right", fontsize=9)
    fig.suptitle(f"drift: does each {window}-frame stretch still show the prompt? (oracle, "
                 f"{len(next(iter(curves.values()))['all']) + window - 1}-frame rollouts)", fontsize=10)
    axes[5].set_axis_off()
    axes[5].legend(*axes[0].get_legend_handles_labels(), loc="upper left", fontsize=8, frameon=False)
    axes[5].text(0, 0.05, f"dotted: the training length,\n{train_frames} frames; past it the\nmodels stream "
                 f"through the\nrolling KV cache" + (f"\n\n{note}" if note else ""), fontsize=8)
    return save(fig, path)


def plot_ablation(results, truth_drift, train_frames, path, window=3):
    """ablation.py's figure. results[setting][row] = list over seeds of dicts with 'drift' (drift_curves of 4x-long
    rollouts) and 'curve' ([(training seconds after the teacher, oracle all-correct %)]). Top: drift of all-correct
    and of motion alone, a column per setting (seeds averaged); bottom: quality against training time."""
    settings = list(results)
    fig = new_figure(7.6)
    axes = fig.subplots(3, len(settings), squeeze=False)
    colours = {"teacher forcing": "C0", "diffusion forcing": "C2", "TF + DMD": "C9", "DF + DMD": "C8",
               "Self Forcing": "C3"}
    for col, setting in enumerate(settings):
        for row, key in enumerate(("all", "motion")):
            ax = axes[row, col]
            x = np.arange(len(truth_drift[key])) + window - 1
            ax.plot(x, truth_drift[key], "k--", lw=1.2, label="ground truth")
            for name, runs in results[setting].items():
                ax.plot(x, np.mean([r["drift"][key] for r in runs], 0), color=colours.get(name), lw=1.3,
                        label=f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            ax.axvline(train_frames - 0.5, color="0.5", lw=1, ls=":")
            ax.set_ylim(-3, 103)
            ax.set_title(f"{setting}: {'all attributes' if key == 'all' else 'motion'} right "
                         f"({window}-frame windows)", fontsize=8)
            ax.set_xlabel(f"frame (dotted: training length {train_frames})", fontsize=8)
            ax.tick_params(labelsize=8)
        ax = axes[2, col]
        for name, runs in results[setting].items():
            if name not in ("Self Forcing", "teacher forcing", "diffusion forcing"):
                continue
            for i, r in enumerate(runs):
                xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
                ax.plot(xs, ys, "o-", color=colours[name], lw=1, ms=3, alpha=0.8, label=name if i == 0 else None)
        ax.set_title(f"{setting}: quality against training time", fontsize=9)
        ax.set_xlabel("seconds of training after the shared teacher", fontsize=8)
        ax.set_ylim(-3, 103)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[:, 0]:
        ax.set_ylabel("% of videos (oracle)", fontsize=9)
    axes[0, -1].legend(fontsize=7, frameon=False, loc="upper right")
    return [save(fig, path)]


# -----------------------------------------------------------------------------
# The command line: every figure of one training run

def plot_all(out_dir, num_prompts=4, drift_videos=24):
    """Write every figure into <out_dir>/plots/. Returns (paths written, what was skipped and why)."""
    if not os.path.isdir(out_dir):
        raise SampleError(f"no folder {out_dir}: train first with `python train.py config/tiny.py --out_dir={out_dir}`")
    log_path = os.path.join(out_dir, "log.jsonl")
    if not os.path.isfile(log_path):
        raise SampleError(f"no training log {log_path}: is {out_dir} a folder that train.py wrote?")
    present = [m for m in CHECKPOINTS if os.path.exists(os.path.join(out_dir, CHECKPOINTS[m]))]
    if not present:
        raise SampleError(f"no checkpoint in {out_dir} (none of {', '.join(CHECKPOINTS.values())}): train first "
                          f"with `python train.py config/tiny.py --out_dir={out_dir}`")
    models = {m: load_model(out_dir, m) for m in present}                      # which -> (model, config)
    skipped = [f"{NAMES[m]} in every figure ({CHECKPOINTS[m]} missing)" for m in CHECKPOINTS
               if m not in models and m != "diffusion"]   # diffusion.pt: only the ablation's baseline rows have one
    final = present[-1]                                                        # the last stage trained
    config = models[final][1]
    F, K, res = config["num_frames"], config["chunk"], config["resolution"]
    plots, written, t0 = os.path.join(out_dir, "plots"), [], time.perf_counter()

    def made(*paths):   # report each file with its size and the seconds its figure took
        nonlocal t0
        for p in paths:
            print(f"wrote {p} ({os.path.getsize(p) / 1024:.0f} KB, {time.perf_counter() - t0:.1f} s)")
        written.extend(paths)
        t0 = time.perf_counter()

    if plot_curves(log_path, os.path.join(plots, "curves.png")):
        made(os.path.join(plots, "curves.png"))
    else:
        skipped.append(f"curves.png ({log_path} has no value logged twice yet)")
    plot_masks(os.path.join(plots, "masks.png"), F, K, *sample.rolling_cache(config),
               first_frame=models[final][0].cfg.first_frame)
    made(os.path.join(plots, "masks.png"))

    # the same prompts everywhere (eval_set's fixed, varied order); seed s renders the ground truth and is the
    # models' noise seed
    prompts, seeds = toydata.eval_set(num_prompts, F)[0], list(range(num_prompts))
    grid_p, grid_s = [p for p in prompts for s in (0, 1)], [s for _ in prompts for s in (0, 1)]
    videos, _ = generate(*models[final], grid_p, F, grid_s, which=final, progress=False)
    made(*video_grid(videos, [f"{p} (noise seed {s})" for p, s in zip(grid_p, grid_s)], os.path.join(plots, "grid"),
                     K, f"{NAMES[final]}: two noise seeds per prompt; thick lines separate chunks"))
    rows = {"ground truth": toydata.render_batch(prompts, seeds, F, res)}
    for m in present:
        rows[NAMES[m]] = generate(*models[m], prompts, F, seeds, which=m, progress=False)[0]
    made(*compare_videos(rows, [f"{p} (seed {s})" for p, s in zip(prompts, seeds)], os.path.join(plots, "compare"),
                         K, "the same prompt and seed in every row of a block"))

    student = models.get("self_forcing", models.get("ode", (None,)))[0]
    made(plot_trajectory(os.path.join(plots, "trajectory.png"), config, prompts[0], 0, student,
                         models.get("teacher", (None,))[0], chunk_index=min(1, F // K - 1)))

    streamers = [m for m in ("self_forcing", "ode") if m in models]   # the bidirectional teacher cannot stream
    if not streamers:
        return written, skipped + ["drift.png (needs ode_init.pt or self_forcing.pt: the teacher does not stream)"]
    objects = [p for p in toydata.eval_set(3 * drift_videos, F)[0] if toydata.parse_prompt(p)["scene"] == "object"]
    long_p = objects[:drift_videos]
    curves = {"ground truth": drift_curves(toydata.render_batch(long_p, range(len(long_p)), 4 * F, res), long_p)}
    for m in streamers:
        net, cfg = models[m]
        # one batched stream rather than sample.generate's stream per video: same sampler, a fraction of the time
        window, sink = sample.rolling_cache(cfg)
        long = stream_sample(net, toydata.tokenize(long_p), 4 * F, student_sigmas(4, cfg["shift"]),
                             generator=torch.Generator().manual_seed(0), window=window, sink=sink)
        curves[NAMES[m]] = drift_curves(long, long_p)
    made(plot_drift(curves, F, os.path.join(plots, "drift.png"),
                    note=f"{len(long_p)} object prompts,\n{4 * F} frames (4x training)"))
    return written, skipped


def main(argv=None):
    ap = OneLineParser(description="Plot a training run: curves, videos, a denoising trajectory, the "
                                             "attention masks and drift over long rollouts, into <out_dir>/plots/.")
    ap.add_argument("out_dir", nargs="?", help="the training run folder, e.g. out/tiny")
    ap.add_argument("--out_dir", dest="out_dir_flag", metavar="OUT_DIR", help="the same, as an option")
    ap.add_argument("--prompts", type=int, default=4, help="prompts in the grid and the comparison (default 4)")
    ap.add_argument("--drift_videos", type=int, default=24, help="object prompts in the drift curves (default 24)")
    args = ap.parse_args(argv)
    out_dir, t = args.out_dir_flag or args.out_dir, time.perf_counter()
    try:
        if not out_dir:
            raise SampleError("name the training run folder: python plot.py out/tiny")
        if args.prompts < 1 or args.drift_videos < 1:
            raise SampleError("--prompts and --drift_videos must be at least 1")
        written, skipped = plot_all(out_dir, args.prompts, args.drift_videos)
    except SampleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for s in skipped:
        print(f"skipped: {s}")
    print(f"{len(written)} files in {os.path.join(out_dir, 'plots')} in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
