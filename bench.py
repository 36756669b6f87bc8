"""
How fast is it, and how close to what the machine can do? One table, every ratio measured side by side in this
one run (medians of --repeats), so the ratios hold on a shared, noisy machine.

    python bench.py --out_dir out/tiny              # the trained tiny run (weights do not change the speed)
    python bench.py --config config/tiny.py          # no training needed: fresh weights of that config

What it measures (B = 1 for sampling except the --batch rows, each stage's own batch for training):
  KV cache vs recompute    streaming the student through the KV cache against recomputing the whole generated
                           context at every step, for 1x, 2x and 4x the training length (the gap grows with length)
  student vs teacher       Self Forcing's 4-step streaming against the teacher's chunk-wise CFG Euler sampler, same clip
  first chunk, FPS         time until the first K frames exist, and frames per second of the whole clip
  batch --batch            the 4x cache comparison, student vs teacher and FPS again with --batch videos in every
                           call, per video: how much of batch 1's time is the fixed cost of each small operation
  training iterations      one iteration of each stage; Self Forcing's (one critic step, and one generator step
                           every dfake_gen_update_ratio) against a teacher-forcing step (the ablation's baseline)
  small matmuls            one q/k/v projection timed at a student call's token count and at a teacher call's,
                           and their ratio: small products run slower per FLOP, part of batch 1's cost
  FLOP/s                   the teacher's training step: FLOPs counted by torch's FlopCounterMode (matmuls and
                           attention, forward + backward) over its median time, against this machine's ceiling,
                           measured here with a large float32 matrix product (its fastest of 20, before the
                           sampling rows and again after the training rows: the faster of the two)
  peak memory              the process's peak resident memory during sampling and during training (Linux: the
                           peak is reset between the two through /proc/self/clear_refs)
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import toydata
from evaluate import median_seconds
from model import CausalDiT, add_noise, euler_sample, stream_sample, student_sigmas
from sample import first_chunk_block, rolling_cache, teacher_order


def peak_rss_mb(reset=False):
    """Peak resident memory of this process in MB (Linux VmHWM). reset=True starts a new peak."""
    try:
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                                 # 5: reset the peak resident set size
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except OSError:  # not Linux: the peak since the process started
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_ceiling(n=1024, repeats=20):
    """FLOP/s of a large float32 matrix product, the most this machine's torch does with the cores it has: its
    FASTEST of `repeats` (a ceiling is the best the machine did; a median moved twofold between runs when a
    neighbour was busy for part of them)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / min(median_seconds(lambda: a @ b, 1) for _ in range(repeats))   # each after a warm-up


def linear_rate(layer, rows, repeats=20):
    """FLOP/s of one of the model's own linear layers on `rows` tokens (its fastest of `repeats`): the matrix
    products at the size a sampler's calls give them. The student's calls at batch 1 hold 16-48 tokens, the
    teacher's CFG calls 2 x 192: the same weights run at different speeds on a CPU's BLAS, which is part of why the
    student's batch-1 ratios fall short of the ratio of the work done."""
    x = torch.randn(rows, layer.in_features)
    with torch.inference_mode():
        seconds = min(median_seconds(lambda: layer(x), 5) for _ in range(repeats))
    return 2 * rows * layer.in_features * layer.out_features / seconds


def load_models(args):
    """(teacher, student, config): from a training run, or fresh weights of a config file's model."""
    import train  # its module globals are the default config; a config file's overrides go on top
    if args.out_dir:
        from sample import SampleError, load_model
        try:
            teacher, config = load_model(args.out_dir, "teacher")
            student, _ = load_model(args.out_dir, "self_forcing")
        except SampleError as e:
            sys.exit(f"error: {e}")
        for k, v in config.items():                      # the run's config drives train's step functions below
            if k in train._CONFIG_KEYS:
                setattr(train, k, v)
        return teacher, student, config
    from configurator import ConfigError, configure
    try:
        configure(vars(train), [args.config])
    except ConfigError as e:
        sys.exit(f"error: {e}")
    config = {k: getattr(train, k) for k in train._CONFIG_KEYS}
    torch.manual_seed(0)
    teacher = CausalDiT(train.model_config(config))
    student = CausalDiT(train.model_config(config))
    return teacher, student, config


def samplers(teacher, student, config, batch):
    """The two things the sampling rows time, for `batch` copies of one prompt: stream(frames, kv, **kw), the student
    through the KV cache (kv=True) or recomputing its context, and teach(), the teacher's chunk-wise CFG sampler on the
    training length. Each call draws the same noise (seed 0), so repeats time identical work."""
    F_, K, res = config["num_frames"], config["chunk"], config["resolution"]
    tokens = toydata.tokenize(["A red circle moving from left to right"] * batch)
    sig = student_sigmas(4, config["shift"])
    window, sink = rolling_cache(config)
    gen = lambda: torch.Generator().manual_seed(0)
    noise = torch.randn(batch, F_, 3, res, res, generator=gen())

    def stream(frames, kv, **kw):
        return stream_sample(student, tokens, frames, sig, generator=gen(), kv_cache=kv, window=window, sink=sink,
                             **kw)

    def teach():
        return euler_sample(teacher, tokens, noise, config["teacher_steps"], config["shift"], config["guidance"],
                            **teacher_order(config))
    return stream, teach


def sampling_rows(teacher, student, config, repeats):
    F_ = config["num_frames"]
    stream, teach = samplers(teacher, student, config, 1)
    rows, first = {}, []
    with torch.inference_mode():  # as sample.py generates
        for mult in (1, 2, 4):
            cached = median_seconds(lambda: stream(mult * F_, True), repeats)
            recompute = median_seconds(lambda: stream(mult * F_, False), repeats)
            rows[f"KV cache vs recompute, {mult * F_} frames"] = (
                f"{cached * 1000:.0f} ms vs {recompute * 1000:.0f} ms", f"{recompute / cached:.1f}x")
        t_teacher = median_seconds(teach, repeats)
        t_student = median_seconds(lambda: stream(F_, True), repeats)
        rows[f"student 4-step streaming vs teacher {config['teacher_steps']}-step CFG, {F_} frames"] = (
            f"{t_student * 1000:.0f} ms vs {t_teacher * 1000:.0f} ms", f"{t_teacher / t_student:.1f}x")

        done_k = first_chunk_block(student)            # the block that completes the first K frames

        def first_chunk():
            t0 = time.perf_counter()
            stream(F_, True, progress=lambda i, x: first.append(time.perf_counter() - t0) if i == done_k else None)
        median_seconds(first_chunk, repeats)
        rows["student: time to first chunk, frames per second"] = (
            f"{statistics.median(first[1:]) * 1000:.1f} ms", f"{F_ / t_student:.0f} fps")
    return rows


def throughput_rows(teacher, student, config, batch, repeats):
    """The 4x-length cache comparison and student vs teacher again, `batch` prompts in every call, in ms per video.
    At batch 1 the student's calls hold 16-48 tokens, and much of their time is the fixed cost of each of their
    ~270 tensor operations; a batch shares that cost, so these ratios approach the ratio of the work done."""
    F_ = config["num_frames"]
    stream, teach = samplers(teacher, student, config, batch)
    cached = median_seconds(lambda: stream(4 * F_, True), repeats) / batch             # seconds per video
    recompute = median_seconds(lambda: stream(4 * F_, False), repeats) / batch
    t_teacher = median_seconds(teach, repeats) / batch
    t_student = median_seconds(lambda: stream(F_, True), repeats) / batch
    return {
        f"batch {batch}, per video: KV cache vs recompute, {4 * F_} frames": (
            f"{cached * 1000:.0f} ms vs {recompute * 1000:.0f} ms", f"{recompute / cached:.1f}x"),
        f"batch {batch}, per video: student vs teacher, {F_} frames": (
            f"{t_student * 1000:.1f} ms vs {t_teacher * 1000:.0f} ms", f"{t_teacher / t_student:.1f}x"),
        f"batch {batch}: student frames per second": ("", f"{F_ / t_student:.0f} fps"),
    }


def training_steps(teacher, student, config):
    """One iteration of each stage as a function, built from train.py's own pieces (same losses, same batch)."""
    import train
    F_, res = config["num_frames"], config["resolution"]
    gen = torch.Generator().manual_seed(0)
    dev = torch.device("cpu")
    opt = lambda m, lr: torch.optim.AdamW(m.parameters(), lr=lr)
    teacher_opt, student_opt = opt(teacher, 1e-9), opt(student, 1e-9)   # tiny lr: timing must not wreck weights
    critic = type(teacher)(teacher.cfg)
    critic.load_state_dict(teacher.state_dict())
    critic_opt = opt(critic, 1e-9)

    def update(o, loss):
        o.zero_grad(set_to_none=True)
        loss.backward()
        o.step()

    def diffusion_step(model, o, B, mode):
        videos, prompts, _ = toydata.sample_batch(B, F_, res, gen)
        sigma = train.sample_sigma(B, gen)[:, None].expand(B, F_)                 # (B, F)
        x_t = add_noise(videos, torch.randn(videos.shape, generator=gen), sigma)
        clean = dict(clean=videos) if mode == "teacher_forcing" else {}
        update(o, F.mse_loss(model(x_t, 1000 * sigma, toydata.tokenize(prompts), mode=mode, **clean), videos))

    def sf_tokens():
        _, prompts, _ = toydata.sample_batch(config["sf_batch"], 1, 8, gen)        # prompts only, as in train.py
        return toydata.tokenize(prompts)

    def critic_step():  # train_self_forcing runs one every iteration, on a rollout without gradient
        tokens = sf_tokens()
        with torch.no_grad():
            x = train.self_forcing_rollout(student, tokens, gen, dev, grad=False)
        update(critic_opt, train.critic_loss(critic, x, tokens, gen, dev))

    def generator_step():  # ... and one of these every dfake_gen_update_ratio iterations
        tokens = sf_tokens()
        x = train.self_forcing_rollout(student, tokens, gen, dev, grad=True)
        update(student_opt, train.dmd_loss(x, tokens, teacher, critic, gen, dev))

    return {
        "teacher (bidirectional diffusion loss)": lambda: diffusion_step(teacher, teacher_opt, config["teacher_batch"],
                                                                         "bidirectional"),
        "ODE init ([clean | noisy] forward + backward)": lambda: diffusion_step(student, student_opt,
                                                                                config["ode_batch"], "teacher_forcing"),
        "teacher forcing (ablation baseline), SF batch": lambda: diffusion_step(student, student_opt,
                                                                                config["sf_batch"], "teacher_forcing"),
        "Self Forcing critic step, SF batch": critic_step,
        "Self Forcing generator step (rollout + DMD), SF batch": generator_step,
    }


def main(argv=None):
    from sample import OneLineParser  # argparse mistakes as one line, like every other CLI here
    ap = OneLineParser(description="Speed of sampling and training, as ratios measured in one run.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--out_dir", help="a training run folder (teacher.pt and self_forcing.pt)")
    src.add_argument("--config", help="a config file (e.g. config/tiny.py): fresh weights, no training needed")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per timing; the median is reported")
    ap.add_argument("--batch", type=int, default=16, help="videos per call for the throughput rows (1: skip them)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    if args.batch < 1:
        sys.exit("error: --batch must be at least 1")
    if not args.out_dir and not args.config:
        args.out_dir = "out/tiny"
    if args.config and not os.path.isfile(args.config):
        sys.exit(f"error: no config file {args.config}")
    torch.manual_seed(0)
    teacher, student, config = load_models(args)
    teacher.eval(), student.eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {config['resolution']}x"
          f"{config['resolution']}, {config['num_frames']} frames, chunk {config['chunk']}, "
          f"{teacher.num_params():,} parameters; medians of {args.repeats}")
    rows = {}
    first_ceiling = matmul_ceiling()
    peak_rss_mb(reset=True)
    rows.update(sampling_rows(teacher, student, config, args.repeats))
    rows["peak memory, sampling (process)"] = (f"{peak_rss_mb():.0f} MB", "")
    if args.batch > 1:  # the same comparisons with --batch videos in every call, per video
        peak_rss_mb(reset=True)
        with torch.inference_mode():
            rows.update(throughput_rows(teacher, student, config, args.batch, args.repeats))
        rows[f"peak memory, sampling batch {args.batch} (process)"] = (f"{peak_rss_mb():.0f} MB", "")
    peak_rss_mb(reset=True)
    steps = training_steps(teacher.train(), student.train(), config)
    times = {name: median_seconds(fn, args.repeats) for name, fn in steps.items()}
    for name, s in times.items():
        rows[f"training iteration: {name}"] = (f"{s * 1000:.0f} ms", "")
    sf = times["Self Forcing critic step, SF batch"] + \
        times["Self Forcing generator step (rollout + DMD), SF batch"] / config["dfake_gen_update_ratio"]
    tf = times["teacher forcing (ablation baseline), SF batch"]
    rows["Self Forcing iteration (critic + 1/ratio generator) vs teacher forcing"] = (
        f"{sf * 1000:.0f} ms vs {tf * 1000:.0f} ms", f"{sf / tf:.1f}x")
    with FlopCounterMode(display=False) as counter:
        steps["teacher (bidirectional diffusion loss)"]()
    flops = counter.get_total_flops()
    achieved = flops / times["teacher (bidirectional diffusion loss)"]
    # the ceiling once more, after the timings: a neighbour busy during the first measurement made it a low
    # ceiling (103 against 164-194 GFLOP/s on the same machine) and the step's share look high; the faster of the
    # two can only make the share smaller
    ceilings = (first_ceiling, matmul_ceiling())
    ceiling = max(ceilings)
    # 4 significant digits: a micro config on a busy machine does well under 0.1 GFLOP/s, which .1f printed as 0.0
    rows["teacher step: counted FLOPs / time vs matmul ceiling"] = (
        f"{achieved / 1e9:.4g} vs {ceiling / 1e9:.4g} GFLOP/s ({flops / 1e9:.1f} GFLOP/step; ceiling at start "
        f"/ end {ceilings[0] / 1e9:.4g} / {ceilings[1] / 1e9:.4g})",
        f"{100 * achieved / ceiling:.0f}%")
    rows["peak memory, training (process)"] = (f"{peak_rss_mb():.0f} MB", "")
    # the first block's q/k/v projection at the token counts of the samplers' calls (batch 1)
    N, K, F_ = student.cfg.tokens_per_frame, config["chunk"], config["num_frames"]
    small, large = (linear_rate(student.blocks[0].qkv, r) for r in (K * N, 2 * F_ * N))
    rows[f"q/k/v matmul on {K * N} tokens (a student call) vs {2 * F_ * N} (a teacher CFG call)"] = (
        f"{small / 1e9:.4g} vs {large / 1e9:.4g} GFLOP/s", f"{small / large:.2f}x")
    width = max(len(k) for k in rows)
    for name, (value, ratio) in rows.items():
        print(f"{name:<{width}}  {value:>34}  {ratio:>8}")
    return rows


if __name__ == "__main__":
    main()
