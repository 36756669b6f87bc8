"""
Stream a video from a trained model, chunk by chunk, through the KV cache.

    python sample.py --prompt "A red circle moving from left to right"
    python sample.py --prompt "A blue square moving clockwise" --num_frames 48 --seed 3
    python sample.py --prompts_file prompts.txt --model teacher

From Python:

    from sample import generate_video
    video = generate_video("A red circle moving from left to right", out_dir="out/tiny", seed=0)  # (F, 3, H, W)

Writes an MP4, a GIF and a PNG film strip per video into <out_dir>/samples/, and prints the time to the first
chunk and the frames per second of the streaming.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

import toydata
from model import (CausalDiT, ModelConfig, euler_sample, sampler_windows, stream_euler_sample, stream_sample,
                   student_sigmas, videos_per_call)

CHECKPOINTS = {"teacher": "teacher.pt", "ode": "ode_init.pt", "self_forcing": "self_forcing.pt",
               "diffusion": "diffusion.pt"}   # the last: the ablation's teacher-/diffusion-forcing baselines


class SampleError(Exception):
    """A problem the user can fix (missing checkpoint, bad prompt, bad frame count): printed as one line."""


# -----------------------------------------------------------------------------
# writing videos: MP4 for players, GIF for READMEs, a PNG strip to look at every frame at once

def to_uint8(video):
    """(F, C, H, W) in [-1, 1] -> (F, H, W, C) uint8."""
    v = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(0, 2, 3, 1).cpu().numpy()                                  # (F, H, W, C)


def upscale(frames, factor):
    # nearest-neighbour, so a 32x32 video stays crisp when shown large
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def save_strip(videos, labels, path, scale=2):
    """PNG film strip: frames across, videos down. videos (B, F, C, H, W) or a list of (F, C, H, W)."""
    import imageio.v3 as iio
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rows = []
    for v in videos:
        frames = upscale(to_uint8(v), scale)                                    # (F, h, w, C)
        pad = np.zeros((frames.shape[0], frames.shape[1], 2, 3), np.uint8) + 64  # grey 2-px gutter between frames
        rows.append(np.concatenate(list(np.concatenate([frames, pad], axis=2)), axis=1))  # (h, F*(w+2), C)
    gap = np.full((2, rows[0].shape[1], 3), 64, np.uint8)
    # temp file + rename, as train.py does for checkpoints: a run killed mid-write never leaves half a picture
    iio.imwrite(path + ".tmp", np.concatenate([r for row in rows for r in (row, gap)][:-1], axis=0), extension=".png")
    os.replace(path + ".tmp", path)
    if labels is not None:
        txt = os.path.splitext(path)[0] + ".txt"
        with open(txt + ".tmp", "w") as f:
            f.write("\n".join(labels) + "\n")  # the prompts, top to bottom
        os.replace(txt + ".tmp", txt)
    return path


def save_video(video, stem, fps=8, scale=8):
    """Write <stem>.mp4, <stem>.gif and <stem>.png for one video (F, C, H, W) in [-1, 1]. Returns the paths."""
    import imageio.v2 as imageio
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    frames = upscale(to_uint8(video), scale)                                    # (F, H*s, W*s, C)
    paths = [stem + ".gif", stem + ".png"]
    imageio.mimsave(stem + ".gif", list(frames), duration=1000 / fps, loop=0)
    save_strip(video[None], None, stem + ".png", scale=max(1, scale // 2))
    try:
        imageio.mimsave(stem + ".mp4", list(frames), fps=fps, macro_block_size=1)
        paths.insert(0, stem + ".mp4")
    except Exception as e:  # no ffmpeg on this machine: the GIF and PNG are still written
        print(f"(no MP4: {type(e).__name__}: {e})", file=sys.stderr)
    return paths


# -----------------------------------------------------------------------------
# loading a trained model

# the training settings generate() reads from a checkpoint
NEEDED_CONFIG = ("chunk", "resolution", "num_frames", "teacher_steps", "shift", "guidance")


def load_model(out_dir, which="self_forcing", device="cpu"):
    """The model of one stage (EMA weights where the stage keeps them) and the training config it was made with.
    A file that is missing, truncated, foreign or made for another model.py raises SampleError naming it."""
    if which not in CHECKPOINTS:
        raise SampleError(f"--model must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    device = check_device(device)
    path = os.path.join(out_dir, CHECKPOINTS[which])
    if not os.path.isfile(path):
        raise SampleError(f"no checkpoint {path}: train first with `python train.py config/tiny.py "
                          f"--out_dir={out_dir}`")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: loading runs no code
    except Exception as e:
        raise SampleError(f"cannot read checkpoint {path} ({type(e).__name__}): is it truncated or not ours?")
    if not (isinstance(ck, dict) and isinstance(ck.get("model_config"), dict) and isinstance(ck.get("config"), dict)
            and isinstance(ck.get("model"), dict) and "vocab" in ck):
        raise SampleError(f"{path} is not a checkpoint written by train.py")
    missing = [k for k in NEEDED_CONFIG if k not in ck["config"]]
    if missing:
        raise SampleError(f"{path} is not a checkpoint written by train.py (its config lacks {', '.join(missing)})")
    if not ck.get("done", False):
        print(f"note: {path} is from an unfinished run (iteration {ck.get('iter')})", file=sys.stderr)
    if list(ck["vocab"]) != list(toydata.VOCAB):
        raise SampleError(f"{path} was trained with another vocabulary than this toydata.py")
    try:
        model = CausalDiT(ModelConfig(**ck["model_config"]))
    except (TypeError, ValueError) as e:  # a field this model.py does not know, or values it rejects
        raise SampleError(f"{path} holds a model config this model.py cannot build: {e}") from None
    state = ck["ema"] if "ema" in ck else ck["model"]
    problem = state_dict_mismatch(model, state)
    if problem:
        raise SampleError(f"{path} does not fit this model.py ({problem}): it was trained with another version; "
                          f"retrain, or sample with the code it was trained with")
    model.load_state_dict(state)
    # the world the run learned (train.py's orbit_start_deg; older checkpoints: 180, anywhere), so that ground truth
    # rendered beside its samples (evaluate.py, plot.py) is drawn from that world and not the default one
    start = ck["config"].get("orbit_start_deg", 180.0)
    if not toydata.orbit_start_ok(start):
        raise SampleError(f"{path} holds orbit_start_deg {start!r}; train.py allows 0 to 180")
    toydata.ORBIT_START_DEG = float(start)
    return model.to(device).eval(), ck["config"]


def state_dict_mismatch(model, state):
    """'' if `state` fits `model` exactly, else which keys are missing, unexpected or shaped differently."""
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        return "its weights are not a dict of tensors"
    want = model.state_dict()
    diffs = {"missing": [k for k in want if k not in state],
             "unexpected": [k for k in state if k not in want],
             "other shape": [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in want.items()
                             if k in state and state[k].shape != v.shape]}
    return "; ".join(f"{kind}: {', '.join(keys[:3])}{f' and {len(keys) - 3} more' if len(keys) > 3 else ''}"
                     for kind, keys in diffs.items() if keys)


def teacher_order(config):
    """How a checkpoint's teacher makes a clip: euler_sample's chunk and first_frame (train.py teacher_chunk,
    teacher_first_frame). Checkpoints from before teacher_first_frame existed sample chunk by chunk (False)."""
    return dict(chunk=config.get("teacher_chunk") or config["chunk"],
                first_frame=config.get("teacher_first_frame", False))


def rolling_cache(config, window=None, sink=None):
    """(window, sink) of the rolling KV cache that streams past the training length: the first `sink` frames are never
    evicted (the run's train.py sink: none by default) and the `window` most recent ones are kept beside them; window
    0 in the config means num_frames - K - sink, so the cache never holds more than the num_frames - K frames of
    context training showed the model (but at least one chunk of recent ones). A sink of the first chunk shows a 4x
    rollout where its video began: in a world whose orbits all start near the top of their circle, where and which
    way its orbit began (config/orbits_long.py keeps it; README, "The first chunk kept"). window/sink given: used as
    they are (sample.py and evaluate.py --window / --sink)."""
    for name, given in (("window", window), ("sink", sink)):   # (train.py checks its config's)
        if given is not None and given < 0:
            raise SampleError(f"--{name} must be >= 0, got {given}")
    sink = config.get("sink", 0) if sink is None else sink
    if window is None:
        window = config.get("window") or max(config["num_frames"] - config["chunk"] - sink, config["chunk"])
    return window, sink


def first_chunk_block(model):
    """The index of the streamed block after which the first K frames exist (stream_sample's progress index):
    0, or 1 when the student makes frame 0 alone (ModelConfig.first_frame). Time to first chunk is read there."""
    K = model.cfg.chunk
    return len(sampler_windows(K, K, first_frame=model.cfg.first_frame)) - 1


def check_device(name):
    """torch.device(name), or SampleError if it is not a device name or not available on this machine."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise SampleError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps)") from None
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if not {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}.get(dev.type, False):
        raise SampleError(f"--device {name}: not available on this machine (try --device cpu)")
    return dev


def check_prompts(prompts):
    """Every prompt parses, or ValueError naming the first bad word (from toydata.parse_prompt)."""
    for p in prompts:
        toydata.parse_prompt(p)


# -----------------------------------------------------------------------------
# generation

@torch.inference_mode()  # no_grad, and none of autograd's bookkeeping: the student's small calls run 10-20% faster
def generate(model, config, prompts, num_frames, seeds, which="self_forcing", kv_cache=True, steps=None,
             guidance=None, window=None, sink=None, progress=True):
    """Videos (B, F, C, H, W) in [-1, 1] for a list of prompts and one seed per prompt, plus timing info. (Made in
    inference mode: clone them before using them in a computation that needs gradients.)"""
    check_prompts(prompts)  # raises ValueError naming an unknown word
    K, res = config["chunk"], config["resolution"]
    if num_frames < K or num_frames % K:
        raise SampleError(f"--num_frames must be a positive multiple of the chunk size {K}, got {num_frames}")
    if steps is not None and steps < 1:
        raise SampleError(f"--steps must be at least 1, got {steps}")
    if guidance is not None and not math.isfinite(guidance):
        raise SampleError(f"--guidance must be a finite number, got {guidance}")
    window, sink = rolling_cache(config, window, sink)
    if len(seeds) != len(prompts) or not all(0 <= int(s) < 2 ** 63 for s in seeds):
        raise SampleError(f"need one seed in [0, 2**63) per prompt, got {len(seeds)} seeds for {len(prompts)} prompts")
    device = next(model.parameters()).device
    tokens = toydata.tokenize(prompts).to(device)
    # each video's noise comes from its own seed, so a video does not depend on what it was batched with
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    t0 = time.perf_counter()
    first = []
    if which in ("teacher", "diffusion"):
        # the bidirectional teacher samples chunk by chunk too (train.py, teacher_stream), but every chunk takes
        # all its Euler steps over the whole clip; the ablation's diffusion baselines stream through the KV cache,
        # with the teacher's many Euler steps and CFG per chunk. Either makes a clip in one call: time to first
        # chunk = all of it. A few videos a call (model.videos_per_call): on a CPU a big batch runs slower per video.
        noise = torch.stack([torch.randn(num_frames, 3, res, res, generator=g) for g in gens]).to(device)
        S, scale = steps or config["teacher_steps"], config["guidance"] if guidance is None else guidance
        if which == "teacher":
            make = lambda tok, z: euler_sample(model, tok, z, S, config["shift"], scale, **teacher_order(config))
        else:
            make = lambda tok, z: stream_euler_sample(model, tok, z, S, config["shift"], scale, window=window,
                                                      sink=sink)
        n = videos_per_call(device)
        video = torch.cat([make(tokens[i:i + n], noise[i:i + n]) for i in range(0, len(prompts), n)])
        first.append(time.perf_counter() - t0)
    else:
        from tqdm import tqdm
        bar = tqdm(total=num_frames, desc="streaming", unit="frame", disable=not progress, leave=False)
        done_k = first_chunk_block(model)
        def on_chunk(i, x0):  # after each block (a chunk; with first_frame, frame 0 alone and then frames 1..K-1)
            bar.update(x0.shape[1])
            if i == done_k:   # the first K frames exist: the first chunk
                first.append(time.perf_counter() - t0)
        sig = student_sigmas(steps or 4, config["shift"])
        videos = []
        for b, g in enumerate(gens):  # one stream per video keeps each one reproducible from its seed alone
            videos.append(stream_sample(model, tokens[b:b + 1], num_frames, sig, generator=g, kv_cache=kv_cache,
                                        window=window, sink=sink, progress=on_chunk if b == 0 else None))
        bar.close()
        video = torch.cat(videos)
    seconds = time.perf_counter() - t0
    info = dict(seconds=seconds, first_chunk_s=first[0] if first else seconds,
                fps=num_frames * len(prompts) / seconds)
    return video.float().cpu(), info


def read_prompts(path):
    """The non-empty lines of a UTF-8 text file."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except (FileNotFoundError, IsADirectoryError):
        raise SampleError(f"prompts file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise SampleError(f"prompts file {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise SampleError(f"cannot read prompts file {path}: {e.strerror}") from None


def generate_video(prompt, out_dir="out/tiny", num_frames=None, seed=0, kv_cache=True, model="self_forcing",
                   steps=None, guidance=None, device="cpu"):
    """One video (F, 3, H, W) in [-1, 1] for `prompt`, streamed by the model trained in `out_dir`."""
    net, config = load_model(out_dir, model, device)
    video, _ = generate(net, config, [prompt], num_frames or config["num_frames"], [seed], which=model,
                        kv_cache=kv_cache, steps=steps, guidance=guidance, progress=False)
    return video[0]


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints the whole usage block first; one line saying what is wrong is easier to act on
        self.exit(2, f"error: {message} (see python {self.prog} --help)\n")


def main(argv=None):
    ap = OneLineParser(description="Stream toy videos from a trained Self Forcing model.")
    ap.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    ap.add_argument("--prompts_file", help="a text file with one prompt per line")
    ap.add_argument("--out_dir", default="out/tiny", help="the training run folder (default out/tiny)")
    ap.add_argument("--model", default="self_forcing", choices=list(CHECKPOINTS))
    ap.add_argument("--num_frames", type=int, help="frames to generate (default: the training length)")
    ap.add_argument("--num_samples", type=int, default=1, help="videos per prompt (seeds seed, seed+1, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="denoising steps (student default 4, teacher: its training config)")
    ap.add_argument("--guidance", type=float, help="CFG scale for the teacher (default: the training config)")
    ap.add_argument("--window", type=int, help="recent frames kept by the rolling KV cache (default: num_frames - "
                                               "chunk - sink of the training config)")
    ap.add_argument("--sink", type=int, help="first frames never evicted from the cache (default: the training "
                                             "config's, none unless it set one)")
    ap.add_argument("--no_kv_cache", action="store_true", help="recompute the whole context at every step")
    ap.add_argument("--save_dir", help="where videos go (default <out_dir>/samples)")
    ap.add_argument("--grid", help="also write every video as one PNG film strip (a row per video) to this path")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        # argparse before Python 3.12 drops a "--" value and hands over an empty list (--prompt=--): "" then
        prompts = [p if isinstance(p, str) else " ".join(p) for p in args.prompt or []]
        if args.prompts_file:
            prompts += read_prompts(args.prompts_file)
        if not prompts:
            raise SampleError("give --prompt \"A red circle moving from left to right\" or --prompts_file FILE")
        check_prompts(prompts)  # before loading anything: a typo is reported at once
        if args.num_samples < 1:
            raise SampleError(f"--num_samples must be at least 1, got {args.num_samples}")
        if not 0 <= args.seed < 2 ** 63 - args.num_samples:
            raise SampleError(f"--seed must lie in [0, 2**63), got {args.seed}")
        if args.num_frames is not None and args.num_frames < 1:
            raise SampleError(f"--num_frames must be at least 1, got {args.num_frames}")
        net, config = load_model(args.out_dir, args.model, args.device)
        save_dir = args.save_dir or os.path.join(args.out_dir, "samples")
        for folder in (save_dir, os.path.dirname(args.grid or "") or "."):
            try:  # before generating: a path that cannot be written is reported at once
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise SampleError(f"cannot create {folder}: {e.strerror}") from None
        num_frames = args.num_frames or config["num_frames"]
        all_prompts = [p for p in prompts for _ in range(args.num_samples)]
        seeds = [args.seed + i for _ in prompts for i in range(args.num_samples)]
        video, info = generate(net, config, all_prompts, num_frames, seeds, which=args.model,
                               kv_cache=not args.no_kv_cache, steps=args.steps, guidance=args.guidance,
                               window=args.window, sink=args.sink)
    except (SampleError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        for v, p, s in zip(video, all_prompts, seeds):
            slug = "_".join(p.lower().split())[:60]
            paths = save_video(v, os.path.join(save_dir, f"{args.model}_{slug}_seed{s}"))
            print(f"{p!r} seed {s}: {', '.join(paths)}")
        if args.grid:
            print(f"grid: {save_strip(video, [f'{p} (seed {s})' for p, s in zip(all_prompts, seeds)], args.grid)}")
    except OSError as e:  # an unwritable or impossible path: say which
        print(f"error: cannot write {e.filename or save_dir}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"{len(all_prompts)} video(s) x {num_frames} frames in {info['seconds']:.2f} s: "
          f"first chunk after {1000 * info['first_chunk_s']:.0f} ms, {info['fps']:.1f} frames/s "
          f"({'KV cache' if not args.no_kv_cache else 'recompute'}, {args.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
