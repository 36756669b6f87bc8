"""
The paper's ablation on toy data (DESIGN §9): Self Forcing against teacher forcing (TF) and diffusion forcing (DF),
each trained with the diffusion loss (sampled with many Euler steps) and with DMD (4-step students),
chunk-wise (K = 3) and frame-wise (K = 1). One command trains every row, evaluates it, and writes the table and
the figures into out/ablation/:

    python ablation.py                          # every row from scratch (README: the time on 2 CPU cores)
    python ablation.py --teacher out/tiny       # start from a finished tiny run's teacher and ODE pairs

What the rows share, so that they differ only in what the paper compares:
  - one teacher (config/tiny.py's, chunk-wise) and one set of ODE pairs (its chunk-wise sampler);
  - per setting, one ODE init, from which the three DMD rows (Self Forcing, TF+DMD, DF+DMD) take sf_iters DMD
    steps each; their generator's context is its own rollout / the clean truth / the noised truth;
  - the TF and DF rows start from the teacher and take diffusion_iters diffusion-loss steps (config/ablation.py),
    about the training time of the ODE init plus the DMD stage (the table reports the measured seconds).
Seeds (SEEDS, 3 for every row) vary the last stage only: its data, noise and exit steps.
Re-running skips finished rows (train.py resumes an interrupted one) and re-evaluates. Every row is a plain
train.py run in its own folder, so `python sample.py --out_dir out/ablation/<row> [--model diffusion]` works on it.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import torch

import toydata
from evaluate import (TOY_CLIP_TRAINING, continue_videos, evaluate_videos, late_window_adherence, median_seconds,
                      toy_clip, toy_clip_name)
from plot import drift_curves, plot_ablation
from sample import generate, load_model

SETTINGS = {"chunk-wise": 3, "frame-wise": 1}
# (row name, train.py method, the row's own settings): the paper's rows, in its order. The diffusion rows'
# steps buy about the seconds a DMD row spends after the teacher (ODE pairs 118 s + ODE init 160 x 0.40 s + DMD
# 200 x 0.28-0.35 s, about 245 s on 2 cores): a teacher-forcing step costs 0.42 s ([clean | noisy] doubles the
# sequence), a diffusion-forcing step 0.20 s. The table reports every row's measured training seconds.
ROWS = [("teacher forcing", "teacher_forcing", ["--diffusion_iters=590"]),
        ("diffusion forcing", "diffusion_forcing", ["--diffusion_iters=1250"]),
        ("TF + DMD", "tf_dmd", []), ("DF + DMD", "df_dmd", []), ("Self Forcing", "self_forcing", [])]
SEEDS = 3   # per row (one seed's score on 64 videos moves by about 6 points; README, "The paper's ablation")
HERE = os.path.dirname(os.path.abspath(__file__))


def train(out_dir, log_path, row, overrides, own=()):
    """One train.py run into out_dir: config/ablation.py, the row's own settings, the user's overrides (config files
    or --key=value), then what makes the row (method, chunk, seed). Its output goes to log_path."""
    cmd = [sys.executable, os.path.join(HERE, "train.py"), os.path.join(HERE, "config", "ablation.py"), *own,
           *overrides, f"--out_dir={out_dir}", *row]
    t0 = time.time()
    with open(log_path, "a") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"error: {' '.join(cmd)} failed; see {log_path}")
    return time.time() - t0


def copy_in(src_dir, dst_dir, names):
    # a stage finished elsewhere: train.py finds the file and skips the stage (it notes the settings that differ)
    os.makedirs(dst_dir, exist_ok=True)
    for n in names:
        if not os.path.exists(os.path.join(dst_dir, n)):
            shutil.copy(os.path.join(src_dir, n), os.path.join(dst_dir, n))


def stage_seconds(run_dir, stage):
    # a stage's wall seconds from a run's summary.json (None if that run did not do the stage)
    path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get(stage, {}).get("seconds")


def training_curve(row_dir, init_dir, pairs_s):
    """[(seconds of training after the teacher, oracle all-correct %)] from train.py's logs, on its train_s clock
    (oracle checks excluded). DMD rows start after the ODE pairs and the ODE init, whose check is in init_dir's log
    (the row that trained it); diffusion rows (init_dir None) start from the teacher at 0."""
    def checks(d, stage):
        with open(os.path.join(d, "log.jsonl")) as f:
            return [r for r in map(json.loads, f) if r["stage"] == stage and "oracle" in r]
    points, offset = [], 0.0
    if init_dir:
        init = checks(init_dir, "ode_init")[-1]
        offset = pairs_s + init["train_s"]
        points.append((offset, init["oracle"]["all"]))
    for r in checks(row_dir, "self_forcing" if init_dir else "diffusion"):
        points.append((offset + r["train_s"], r["oracle"]["all"]))
    return points


@torch.no_grad()
def evaluate_row(row_dir, which, judge, prompts, seeds, truth, repeats):
    """The table's numbers for one trained row: oracle, CLIP score and frame consistency of videos from the prompt;
    SSIM/PSNR of continuing the truth's first chunk; drift to 4x the training length; seconds per clip."""
    net, cfg = load_model(row_dir, which)
    Fr, K = cfg["num_frames"], cfg["chunk"]
    video, _ = generate(net, cfg, prompts, Fr, seeds, which=which, progress=False)
    r = evaluate_videos(video.clamp(-1, 1), prompts, ("oracle", "clip_score", "frame_consistency"), judge=judge)
    cont = continue_videos(net, cfg, truth, prompts, seeds, which)
    r.update(evaluate_videos(cont[:, K:].clamp(-1, 1), prompts, ("ssim", "psnr"), references=truth[:, K:]))
    objects = [i for i, p in enumerate(prompts) if toydata.parse_prompt(p)["scene"] == "object"]
    long_p, long_s = [prompts[i] for i in objects], [seeds[i] for i in objects]
    long, _ = generate(net, cfg, long_p, 4 * Fr, long_s, which=which, progress=False)
    r["drift"] = {k: v.tolist() for k, v in drift_curves(long, long_p).items()}
    r["drift_last_quarter"] = late_window_adherence(long, long_p)
    r["clip_s"] = median_seconds(lambda: generate(net, cfg, prompts[:1], Fr, seeds[:1], which=which,
                                                  progress=False), repeats)
    return r


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results, settings):
    """Markdown, shaped like the paper's ablation table: a block per setting, a row per method; seeds as mean +- sd."""
    cols = [("oracle all-correct %", ".1f", lambda r: r["oracle"]["all"]),
            ("motion %", ".1f", lambda r: r["oracle"]["motion"]), ("CLIP", ".1f", lambda r: r["clip_score"]),
            ("consistency", ".3f", lambda r: r["frame_consistency"]), ("SSIM", ".3f", lambda r: r["ssim"]),
            ("PSNR dB", ".1f", lambda r: r["psnr"]),
            ("4x drift, last quarter %", ".1f", lambda r: r["drift_last_quarter"]),
            ("train s", ".0f", lambda r: r["train_s"]), ("ms per clip", ".0f", lambda r: 1000 * r["clip_s"])]
    lines = ["| setting | method | seeds | " + " | ".join(c for c, _, _ in cols) + " |",
             "|" + " --- |" * (len(cols) + 3)]
    for setting in settings:
        for name, _, _ in ROWS:
            runs = results[setting][name]
            cells = []
            for _, fmt, get in cols:
                m, sd = mean_sd([get(r) for r in runs])
                cells.append(f"{m:{fmt}}" + (f" ± {sd:{fmt}}" if len(runs) > 1 else ""))
            lines.append(f"| {setting} | {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_rows(args, settings):
    """Train (or skip, if finished) the shared teacher and every row. Returns {setting: {row name: [(row folder,
    the folder whose ODE init it shares, or None for a diffusion row)] per seed}} and the ODE pairs' seconds."""
    shared = os.path.join(args.out_dir, "shared")
    log_path = os.path.join(args.out_dir, "train_log.txt")
    os.makedirs(shared, exist_ok=True)
    if args.teacher:
        copy_in(args.teacher, shared, ["teacher.pt", "ode_pairs.pt"])
    # the teacher and the ODE pairs, once (no ODE init, no DMD steps, no oracle checks)
    print(f"shared teacher and ODE pairs -> {shared}", flush=True)
    train(shared, log_path, ["--ode_iters=0", "--sf_iters=0", "--eval_interval=0", "--eval_videos=0"], args.overrides)
    # the ODE pairs' seconds count in the DMD rows' training time; if they were copied in, their run timed them
    pairs_s = stage_seconds(shared, "ode_pairs") or (args.teacher and stage_seconds(args.teacher, "ode_pairs")) or 0.0

    rows = {}
    for setting in settings:
        K = SETTINGS[setting]
        init_dir = None                                  # the setting's first DMD row trains the shared ODE init
        for name, method, own in sorted(ROWS, key=lambda r: r[1] != "self_forcing"):
            for seed in range(args.seeds or SEEDS):
                d = os.path.join(args.out_dir, f"{setting}_{method}_seed{seed}")
                dmd = method not in ("teacher_forcing", "diffusion_forcing")
                copy_in(shared, d, ["teacher.pt"] + (["ode_pairs.pt"] if dmd else []))
                if dmd and init_dir:
                    copy_in(init_dir, d, ["ode_init.pt"])
                print(f"[{setting}] {name}, seed {seed} -> {d}", flush=True)
                train(d, log_path, [f"--method={method}", f"--chunk={K}", f"--seed={1337 + seed}"], args.overrides,
                      own)
                if dmd and not init_dir:
                    init_dir = d
                rows.setdefault(setting, {}).setdefault(name, []).append((d, init_dir if dmd else None))
    return rows, pairs_s


def evaluate_rows(args, rows, pairs_s):
    """Every row on the same held-out prompts, seeds and judge; plus the ground truth's drift curve (the ceiling)."""
    cfg = load_model(os.path.join(args.out_dir, "shared"), "teacher")[1]
    Fr, res = cfg["num_frames"], cfg["resolution"]
    judge = toy_clip(os.path.join(os.path.dirname(os.path.abspath(args.out_dir)), toy_clip_name(Fr, res)), Fr, res,
                     steps=args.clip_steps)
    prompts, seeds = toydata.eval_set(args.videos, Fr, res)
    truth = toydata.render_batch(prompts, seeds, Fr, res)
    results = {}
    for setting, by_name in rows.items():
        for name, runs in by_name.items():
            for d, init_dir in runs:
                print(f"evaluating {d}", flush=True)
                r = evaluate_row(d, "self_forcing" if init_dir else "diffusion", judge, prompts, seeds, truth,
                                 args.repeats)
                curve = training_curve(d, init_dir, pairs_s)
                r.update(curve=curve, train_s=curve[-1][0] if curve else float("nan"), out_dir=d)
                results.setdefault(setting, {}).setdefault(name, []).append(r)
    objects = [(p, s) for p, s in zip(prompts, seeds) if toydata.parse_prompt(p)["scene"] == "object"]
    ground = toydata.render_batch([p for p, _ in objects], [s for _, s in objects], 4 * Fr, res)  # the drift ceiling
    truth_drift = {k: v.tolist() for k, v in drift_curves(ground, [p for p, _ in objects]).items()}
    return results, truth_drift, Fr


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train and evaluate every row of the Self Forcing ablation.")
    ap.add_argument("--out_dir", default="out/ablation")
    ap.add_argument("--teacher", help="a finished tiny run whose teacher.pt and ode_pairs.pt every row starts from")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: chunk-wise,frame-wise")
    ap.add_argument("--seeds", type=int, default=None, help="override the seeds of every row (quick checks)")
    ap.add_argument("--videos", type=int, default=64, help="held-out (prompt, seed) pairs per row")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    ap.add_argument("--clip_steps", type=int, default=TOY_CLIP_TRAINING["steps"], help="toy CLIP training steps, if "
                    "out/toyclip_<res>px_<frames>f.pt must be trained first")
    ap.add_argument("overrides", nargs="*", help="train.py config files or --key=value settings for every row, "
                    "after a -- (e.g. -- config/micro.py --eval_interval=2 for a test in seconds)")
    args = ap.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        sys.exit(f"error: unknown setting {bad[0] if bad else ''!r}; choose from {', '.join(SETTINGS)}")
    if min(args.videos, args.repeats, args.clip_steps, args.seeds or 1) < 1:
        sys.exit("error: --videos, --repeats, --clip_steps and --seeds must be at least 1")
    missing = [n for n in ("teacher.pt", "ode_pairs.pt") if args.teacher and
               not os.path.isfile(os.path.join(args.teacher, n))]
    if missing:
        sys.exit(f"error: --teacher {args.teacher} has no {' or '.join(missing)}: finish `python train.py "
                 f"config/tiny.py --out_dir={args.teacher}` first")
    t_all = time.time()
    rows, pairs_s = train_rows(args, settings)
    train_s = time.time() - t_all
    results, truth_drift, Fr = evaluate_rows(args, rows, pairs_s)
    md = table(results, list(results))
    minutes = (time.time() - t_all) / 60
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(dict(results=results, ground_truth_drift=truth_drift, minutes=minutes, train_minutes=train_s / 60,
                       videos=args.videos, frames=Fr), f, indent=1)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(md + "\n")
    paths = plot_ablation(results, truth_drift, Fr, os.path.join(args.out_dir, "ablation.png"))
    print("\n" + md)
    print(f"\n{args.videos} held-out videos per row; ablation done in {minutes:.1f} min "
          f"(training {train_s / 60:.1f}); wrote {args.out_dir}/results.md, results.json, {', '.join(paths)}")


if __name__ == "__main__":
    main()
