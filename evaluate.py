"""
Evaluate the models of a training run with the oracle, and time them.

    python evaluate.py --out_dir out/tiny                 # table for teacher, ODE init and Self Forcing
    python evaluate.py --out_dir out/tiny --videos 128    # more held-out videos, tighter numbers

What the table says (every number is measured by this command, on held-out seeds it never trained on):
  oracle all-correct   percent of videos whose frames the oracle (toydata.read_video) reads back as exactly
                       the prompt: scene, colour, shape and motion (or both colours of a transition)
  colour/shape/motion  the same per attribute, over the object prompts
  ground truth         the renderer's own videos: the ceiling (the oracle is exact on them, so 100%)
  shuffled prompts     ground-truth videos judged against another video's prompt: the floor
  4x length, last 1/4  Self Forcing streamed to 4x the training length through the rolling KV cache: percent
                       of 3-frame windows in the last quarter whose attributes match the prompt (drift)
  speed                seconds for the same clip, medians of several repeats in this one run, so the ratios
                       hold even on a busy machine

Still to come (see the issues): CLIP score, frame consistency, SSIM/PSNR against ground truth.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

import toydata
from sample import SampleError, generate, load_model

MODELS = ["teacher", "ode", "self_forcing"]


def oracle_scores(videos, prompts):
    """Percent correct per attribute and for all of them at once. videos (B, F, 3, H, W) in [-1, 1]."""
    assert len(videos) == len(prompts), f"{len(videos)} videos but {len(prompts)} prompts"
    hits = {}
    for v, p in zip(videos, prompts):
        for k, ok in toydata.adherence(v, p).items():
            hits.setdefault(k, []).append(float(ok))
    return {k: 100 * sum(x) / len(x) for k, x in hits.items()}


def late_window_adherence(videos, prompts, window=3):
    """Percent of `window`-frame windows in the last quarter of each video whose attributes match the prompt."""
    hits = []
    for v, p in zip(videos, prompts):
        per_start = toydata.window_adherence(v, p, window=window)             # one bool per start frame
        hits += [float(ok) for ok in per_start[len(per_start) * 3 // 4:]]
    return 100 * sum(hits) / max(1, len(hits))


def median_seconds(fn, repeats):
    """Median wall time of fn() over `repeats` calls, after one warm-up call (first calls allocate)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Oracle scores and speed of a training run's models.")
    ap.add_argument("--out_dir", default="out/tiny", help="the training run folder (default out/tiny)")
    ap.add_argument("--videos", type=int, default=64, help="held-out (prompt, seed) pairs (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per timing; the median is reported")
    args = ap.parse_args(argv)
    if args.videos < 1 or args.repeats < 1:
        print("error: --videos and --repeats must be at least 1", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    try:
        loaded = {m: load_model(args.out_dir, m) for m in MODELS}
    except SampleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = loaded["self_forcing"][1]
    F, res, K = config["num_frames"], config["resolution"], config["chunk"]
    prompts, seeds = toydata.eval_set(args.videos, F, res)
    rows = {}
    truth = toydata.render_batch(prompts, seeds, F, res)
    rows["ground truth (ceiling)"] = oracle_scores(truth, prompts)
    shuffled = prompts[1:] + prompts[:1]          # every video judged against its neighbour's prompt
    rows["shuffled prompts (floor)"] = oracle_scores(truth, shuffled)
    for m in MODELS:
        net, cfg = loaded[m]
        video, _ = generate(net, cfg, prompts, F, seeds, which=m, progress=False)
        rows[m] = oracle_scores(video, prompts)
    # drift: Self Forcing streamed to 4x the training length through the rolling cache
    net, cfg = loaded["self_forcing"]
    long_prompts = [p for p in prompts if toydata.parse_prompt(p)["scene"] == "object"]
    long, _ = generate(net, cfg, long_prompts, 4 * F, seeds[:len(long_prompts)], progress=False)
    drift = late_window_adherence(long, long_prompts)
    drift_truth = late_window_adherence(toydata.render_batch(long_prompts, seeds[:len(long_prompts)], 4 * F, res),
                                        long_prompts)
    # speed: the same one-video clip through each sampler, medians of --repeats runs
    p1, s1 = [prompts[0]], [seeds[0]]
    teacher_net, teacher_cfg = loaded["teacher"]
    t_teacher = median_seconds(lambda: generate(teacher_net, teacher_cfg, p1, F, s1, which="teacher",
                                                progress=False), args.repeats)
    t_stream = median_seconds(lambda: generate(net, cfg, p1, F, s1, progress=False), args.repeats)
    t_recompute = median_seconds(lambda: generate(net, cfg, p1, 4 * F, s1, kv_cache=False, progress=False),
                                 args.repeats)
    t_cached = median_seconds(lambda: generate(net, cfg, p1, 4 * F, s1, progress=False), args.repeats)
    _, info = generate(net, cfg, p1, F, s1, progress=False)

    keys = ["all", "colour", "shape", "motion", "colour_from", "colour_to"]
    print(f"\n{args.videos} held-out videos, {F} frames at {res}x{res} (out_dir {args.out_dir})")
    print(f"{'':<26}" + "".join(f"{k:>12}" for k in keys))
    for name, r in rows.items():
        print(f"{name:<26}" + "".join(f"{r.get(k, float('nan')):>11.1f}%" for k in keys))
    print(f"\nSelf Forcing at {4 * F} frames (rolling cache), 3-frame windows in the last quarter matching the "
          f"prompt: {drift:.1f}% (ground truth {drift_truth:.1f}%, {len(long_prompts)} object prompts)")
    print(f"speed, one {F}-frame clip, median of {args.repeats}: teacher {teacher_cfg['teacher_steps']}-step "
          f"sampler {t_teacher * 1000:.0f} ms, Self Forcing 4-step streaming {t_stream * 1000:.0f} ms "
          f"({t_teacher / t_stream:.1f}x faster, {F / t_stream:.0f} frames/s, first chunk "
          f"{info['first_chunk_s'] * 1000:.0f} ms)")
    print(f"speed, one {4 * F}-frame clip: KV cache {t_cached * 1000:.0f} ms, recomputing the context "
          f"{t_recompute * 1000:.0f} ms ({t_recompute / t_cached:.1f}x)")
    result = dict(videos=args.videos, rows=rows, drift_last_quarter=drift, drift_ground_truth=drift_truth,
                  teacher_s=t_teacher, stream_s=t_stream, stream_fps=F / t_stream,
                  first_chunk_s=info["first_chunk_s"], cached_4x_s=t_cached, recompute_4x_s=t_recompute)
    with open(os.path.join(args.out_dir, "eval.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
