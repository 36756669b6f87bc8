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
import os
import sys
import time

import numpy as np
import torch

import toydata
from model import CausalDiT, ModelConfig, euler_sample, stream_sample, student_sigmas

CHECKPOINTS = {"teacher": "teacher.pt", "ode": "ode_init.pt", "self_forcing": "self_forcing.pt"}


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
    iio.imwrite(path, np.concatenate([r for row in rows for r in (row, gap)][:-1], axis=0))
    if labels is not None:
        with open(os.path.splitext(path)[0] + ".txt", "w") as f:
            f.write("\n".join(labels) + "\n")  # the prompts, top to bottom
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

def load_model(out_dir, which="self_forcing", device="cpu"):
    """The model of one stage (EMA weights where the stage keeps them) and the training config it was made with."""
    if which not in CHECKPOINTS:
        raise SampleError(f"--model must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    path = os.path.join(out_dir, CHECKPOINTS[which])
    if not os.path.exists(path):
        raise SampleError(f"no checkpoint {path}: train first with `python train.py config/tiny.py "
                          f"--out_dir={out_dir}`")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SampleError(f"cannot read checkpoint {path} ({type(e).__name__}): is it truncated or not ours?")
    if not isinstance(ck, dict) or "model_config" not in ck or "model" not in ck:
        raise SampleError(f"{path} is not a checkpoint written by train.py")
    if not ck.get("done", False):
        print(f"note: {path} is from an unfinished run (iteration {ck.get('iter')})", file=sys.stderr)
    if list(ck["vocab"]) != list(toydata.VOCAB):
        raise SampleError(f"{path} was trained with another vocabulary than this toydata.py")
    model = CausalDiT(ModelConfig(**ck["model_config"]))
    model.load_state_dict(ck["ema"] if "ema" in ck else ck["model"])
    return model.to(device).eval(), ck["config"]


# -----------------------------------------------------------------------------
# generation

@torch.no_grad()
def generate(model, config, prompts, num_frames, seeds, which="self_forcing", kv_cache=True, steps=None,
             guidance=None, window=None, sink=None, progress=True):
    """Videos (B, F, C, H, W) in [-1, 1] for a list of prompts and one seed per prompt, plus timing info."""
    for p in prompts:
        toydata.parse_prompt(p)  # raises ValueError naming an unknown word
    K, res = config["chunk"], config["resolution"]
    if num_frames < K or num_frames % K:
        raise SampleError(f"--num_frames must be a positive multiple of the chunk size {K}, got {num_frames}")
    device = next(model.parameters()).device
    tokens = toydata.tokenize(prompts).to(device)
    # each video's noise comes from its own seed, so a video does not depend on what it was batched with
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    if window is None:  # the rolling cache keeps as much context as training ever showed the model
        window = config.get("window") or config["num_frames"] - K
    sink = config.get("sink", 0) if sink is None else sink
    t0 = time.perf_counter()
    first = []
    if which == "teacher":
        # the bidirectional teacher denoises all frames together: nothing streams, the first chunk comes last
        noise = torch.stack([torch.randn(num_frames, 3, res, res, generator=g) for g in gens]).to(device)
        video = euler_sample(model, tokens, noise, steps or config["teacher_steps"], config["shift"],
                             config["guidance"] if guidance is None else guidance)
        first.append(time.perf_counter() - t0)
    else:
        from tqdm import tqdm
        bar = tqdm(total=num_frames, desc="streaming", unit="frame", disable=not progress, leave=False)
        def on_chunk(*_):
            first.append(time.perf_counter() - t0)
            bar.update(K)
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


def generate_video(prompt, out_dir="out/tiny", num_frames=None, seed=0, kv_cache=True, model="self_forcing",
                   steps=None, guidance=None, device="cpu"):
    """One video (F, 3, H, W) in [-1, 1] for `prompt`, streamed by the model trained in `out_dir`."""
    net, config = load_model(out_dir, model, device)
    video, _ = generate(net, config, [prompt], num_frames or config["num_frames"], [seed], which=model,
                        kv_cache=kv_cache, steps=steps, guidance=guidance, progress=False)
    return video[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Stream toy videos from a trained Self Forcing model.")
    ap.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    ap.add_argument("--prompts_file", help="a text file with one prompt per line")
    ap.add_argument("--out_dir", default="out/tiny", help="the training run folder (default out/tiny)")
    ap.add_argument("--model", default="self_forcing", choices=list(CHECKPOINTS))
    ap.add_argument("--num_frames", type=int, help="frames to generate (default: the training length)")
    ap.add_argument("--num_samples", type=int, default=1, help="videos per prompt (seeds seed, seed+1, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="denoising steps (student default 4, teacher: its training config)")
    ap.add_argument("--guidance", type=float, help="CFG scale for the teacher (default: the training config)")
    ap.add_argument("--window", type=int, help="context frames kept by the rolling KV cache")
    ap.add_argument("--sink", type=int, help="first frames never evicted from the cache")
    ap.add_argument("--no_kv_cache", action="store_true", help="recompute the whole context at every step")
    ap.add_argument("--save_dir", help="where videos go (default <out_dir>/samples)")
    ap.add_argument("--grid", help="also write every video as one PNG film strip (a row per video) to this path")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        prompts = list(args.prompt or [])
        if args.prompts_file:
            if not os.path.isfile(args.prompts_file):
                raise SampleError(f"prompts file not found: {args.prompts_file}")
            with open(args.prompts_file) as f:
                prompts += [line.strip() for line in f if line.strip()]
        if not prompts:
            raise SampleError("give --prompt \"A red circle moving from left to right\" or --prompts_file FILE")
        if args.num_samples < 1:
            raise SampleError(f"--num_samples must be at least 1, got {args.num_samples}")
        net, config = load_model(args.out_dir, args.model, args.device)
        num_frames = args.num_frames or config["num_frames"]
        all_prompts = [p for p in prompts for _ in range(args.num_samples)]
        seeds = [args.seed + i for _ in prompts for i in range(args.num_samples)]
        video, info = generate(net, config, all_prompts, num_frames, seeds, which=args.model,
                               kv_cache=not args.no_kv_cache, steps=args.steps, guidance=args.guidance,
                               window=args.window, sink=args.sink)
    except (SampleError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_dir = args.save_dir or os.path.join(args.out_dir, "samples")
    for v, p, s in zip(video, all_prompts, seeds):
        slug = "_".join(p.lower().split())[:60]
        paths = save_video(v, os.path.join(save_dir, f"{args.model}_{slug}_seed{s}"))
        print(f"{p!r} seed {s}: {', '.join(paths)}")
    if args.grid:
        print(f"grid: {save_strip(video, [f'{p} (seed {s})' for p, s in zip(all_prompts, seeds)], args.grid)}")
    print(f"{len(all_prompts)} video(s) x {num_frames} frames in {info['seconds']:.2f} s: "
          f"first chunk after {1000 * info['first_chunk_s']:.0f} ms, {info['fps']:.1f} frames/s "
          f"({'KV cache' if not args.no_kv_cache else 'recompute'}, {args.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
