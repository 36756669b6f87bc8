"""
The whole Self Forcing training story, top to bottom (Huang et al. 2025, arXiv 2506.08009).

    python train.py config/tiny.py                  # 2-core CPU, about 13 minutes
    python train.py config/tiny.py --sf_iters=400   # any config key can be overridden

Four stages, each checkpointed into out_dir. Re-running the same command skips finished stages and
resumes an interrupted one from its last checkpoint.

  1. teacher      a bidirectional DiT trained with the rectified-flow loss (+ prompt dropout for CFG)  teacher.pt
  2. ODE pairs    the teacher's Euler sampler, keeping the states at the student's 4 sigmas           ode_pairs.pt
  3. ODE init     a causal student initialised from the teacher, regressing x0 from those states     ode_init.pt
  4. Self Forcing the student rolls out its own chunks through the KV cache (Algorithm 1) and is
                  trained with distribution matching (DMD) against the teacher, with an online critic self_forcing.pt
"""
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
from tqdm import tqdm

import toydata
from configurator import ConfigError, configure
from model import CausalDiT, ModelConfig, add_noise, euler_sample, shift_sigma, stream_sample, student_sigmas

# -----------------------------------------------------------------------------
# default config: the tiny CPU run. config/*.py files hold only the values they change.
# I/O
out_dir = "out/tiny"
seed = 1337
device = "auto"              # auto picks cuda -> mps -> cpu
compile = False              # torch.compile the models (GPU runs)
log_interval = 25            # iterations between log lines
eval_interval = 500          # iterations between oracle checks (32 videos) during a stage (0: only at its end)
eval_videos = 64             # held-out (prompt, seed) pairs for the oracle check at the end of each stage
ckpt_interval = 200          # iterations between checkpoints inside a stage (a finished stage always saves)
stop_after = ""              # "stage:N" exits after iteration N of that stage, as if interrupted (for tests)
# the toy world
resolution = 32
num_frames = 12              # training length F
chunk = 3                    # K frames per autoregressive chunk (1 = frame-wise)
# model (the same architecture serves teacher, critic and student)
patch = 8
width = 128
depth = 4
heads = 4
text_depth = 2
# flow matching: ONE timestep shift, used by the teacher, the ODE pairs, the student's steps, DMD and sampling
shift = 3.0
guidance = 4.0               # CFG scale, standard form uncond + g (cond - uncond) (official code's g' = g - 1)
teacher_steps = 16           # Euler steps of the teacher sampler; a multiple of 4 puts the student's sigmas on its grid
# stage 1: teacher
teacher_iters = 3000
teacher_batch = 16
teacher_lr = 1e-3
cfg_dropout = 0.1            # fraction of prompts replaced by the empty prompt, so the model also learns uncond
teacher_frame_noise = 0.0    # fraction of videos with an independent noise level per frame (rest: one per video);
                             # 0.5 gave no clear gain at 1,500 steps here (README, "Results")
ema_decay = 0.995
warmup_iters = 100
# stage 2: ODE pairs
ode_pairs = 256              # videos sampled by the teacher (stored in float16)
# stage 3: causal ODE init
ode_iters = 300
ode_batch = 16
ode_lr = 3e-4
# stage 4: Self Forcing (DMD)
sf_iters = 200               # critic steps; the generator steps every dfake_gen_update_ratio of them
sf_batch = 8
gen_lr = 5e-5
critic_lr = 2e-4
dfake_gen_update_ratio = 5   # official value
sf_ema_decay = 0.99
grad_clip = 1.0
# sampling long videos with the rolling KV cache (also stored in checkpoints for sample.py)
window = 0                   # context frames kept in the cache; 0 = num_frames - chunk (what training saw)
sink = 0                     # frames from the start that are never evicted
# -----------------------------------------------------------------------------


def main():
    try:
        configure(globals(), sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"error: {e}")
    config = {k: v for k, v in globals().items() if k in _CONFIG_KEYS}
    check_config(config)
    os.makedirs(out_dir, exist_ok=True)
    dev = pick_device(device)
    print(f"out_dir {out_dir} | device {dev} | {resolution}x{resolution}, {num_frames} frames, chunk {chunk}")
    t_all = time.time()
    teacher = train_teacher(config, dev)
    pairs = make_ode_pairs(config, teacher, dev)
    student = train_ode_init(config, teacher, pairs, dev)
    train_self_forcing(config, teacher, student, dev)
    print(f"\n{'stage':<14}{'seconds':>9}{'peak MB':>9}  oracle all-correct (held-out)")
    for name, r in SUMMARY.items():
        print(f"{name:<14}{r.get('seconds', float('nan')):>9.0f}{r.get('peak_mb', 0):>9}  {r.get('oracle', {}).get('all', '-')}")
    print(f"all stages done in {time.time() - t_all:.0f} s; try: python sample.py --out_dir {out_dir} "
          f"--prompt \"A red circle moving from left to right\"")


_CONFIG_KEYS = [k for k, v in dict(globals()).items()
               if not k.startswith("_") and isinstance(v, (int, float, bool, str, type(None)))]


def check_config(c):
    # fail before minutes of training, with a message that says what to change
    problems = []
    if c["resolution"] % c["patch"]:
        problems.append(f"resolution {c['resolution']} is not divisible by patch {c['patch']}")
    if c["num_frames"] % c["chunk"]:
        problems.append(f"num_frames {c['num_frames']} is not divisible by chunk {c['chunk']}")
    if c["teacher_steps"] % 4:
        problems.append(f"teacher_steps {c['teacher_steps']} must be a multiple of 4 (student sigmas on its grid)")
    if c["shift"] <= 0:
        problems.append(f"shift must be > 0, got {c['shift']}")
    if problems:
        sys.exit("error: " + "; ".join(problems))


def pick_device(name):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(dev):
    # bf16 autocast on GPU only: CPU bf16 matmuls are slow on most laptops and the KV-cache identity tests are fp32
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")


def model_config(c):
    return ModelConfig(resolution=c["resolution"], patch=c["patch"], chunk=c["chunk"], width=c["width"],
                       depth=c["depth"], heads=c["heads"], text_depth=c["text_depth"],
                       vocab_size=len(toydata.VOCAB), max_text_len=toydata.MAX_TEXT_LEN)


# -----------------------------------------------------------------------------
# checkpoints: one file per stage, written atomically (temp file + rename), read with weights_only=True

def ckpt_path(name):
    return os.path.join(out_dir, f"{name}.pt")


def save_ckpt(name, state):
    path = ckpt_path(name)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic on POSIX: a reader sees the old file or the new one, never half of one


def load_ckpt(name):
    """The stage's checkpoint dict, or None if it was never written."""
    path = ckpt_path(name)
    if not os.path.exists(path):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        sys.exit(f"error: cannot read checkpoint {path} ({type(e).__name__}); delete it to redo that stage")


def stage_state(config, **parts):
    return dict(config=config, model_config=asdict(model_config(config)), vocab=list(toydata.VOCAB), **parts)


def checkpoint(stage, it, total, state_fn):
    """After iteration `it` (0-based) of a stage: save every ckpt_interval iterations, honour stop_after."""
    n = it + 1
    stop = stop_after == f"{stage}:{n}"
    if n < total and (n % ckpt_interval == 0 or stop):
        save_ckpt(stage, state_fn(n, False))
    if stop:
        print(f"[{stage}] stopping after iteration {n} (stop_after={stop_after})")
        sys.exit(0)


def peak_mb():
    # peak resident memory of this process so far (Linux reports KiB); stages run in order, so the value printed
    # at the end of a stage is the peak up to and including it
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(stage, it, **values):
    # one JSON object per line: plot.py reads this file
    rec = dict(stage=stage, iter=it, time=round(time.time(), 3), **values)
    with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")


def lr_at(it, base, total):
    # linear warmup, then cosine decay to 10% (nanoGPT's schedule)
    if it < warmup_iters:
        return base * (it + 1) / warmup_iters
    frac = (it - warmup_iters) / max(1, total - warmup_iters)
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, frac))))


@torch.no_grad()
def ema_update(ema, model, decay):
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def check_finite(loss, stage, it):
    if not torch.isfinite(loss):
        sys.exit(f"error: {stage} loss became {loss.item()} at iteration {it}; the last good checkpoint is "
                 f"{ckpt_path(stage)}. Lower the learning rate and re-run to resume.")


def batch_tokens(prompts, dev):
    return toydata.tokenize(prompts).to(dev)


def dropout_prompts(tokens, p, gen):
    # replace a fraction p of prompts by the empty prompt (all pad): the same network then also predicts uncond
    drop = torch.rand(tokens.shape[0], generator=gen) < p                       # (B,)
    return torch.where(drop[:, None].to(tokens.device), torch.zeros_like(tokens), tokens)


def sample_sigma(n, gen):
    # per-video noise level: uniform, warped by the ONE timestep shift (more time at high noise)
    return shift_sigma(torch.rand(n, generator=gen), shift)                     # (B,)


# -----------------------------------------------------------------------------
# the oracle check: sample held-out (prompt, seed) pairs and read the attributes back from the frames

@torch.no_grad()
def oracle_check(sample_fn, dev, n):
    """Percent of held-out videos whose oracle reading matches the prompt (per attribute and all)."""
    prompts, seeds = toydata.eval_set(n, num_frames, resolution)
    gen = torch.Generator().manual_seed(12345)  # same noise for every model: comparisons are paired
    videos = []
    for i in range(0, n, 32):
        tokens = batch_tokens(prompts[i:i + 32], dev)
        videos.append(sample_fn(tokens, gen).float().cpu())
    videos = torch.cat(videos)                                                  # (n, F, C, H, W)
    hits = {}
    for v, p in zip(videos, prompts):
        for k, ok in toydata.adherence(v, p).items():
            hits.setdefault(k, []).append(float(ok))
    return {k: round(100 * sum(x) / len(x), 1) for k, x in hits.items()}, videos, prompts


def teacher_sampler(model, dev):
    def fn(tokens, gen):
        noise = torch.randn(tokens.shape[0], num_frames, 3, resolution, resolution, generator=gen).to(dev)
        with autocast(dev):
            return euler_sample(model, tokens, noise, teacher_steps, shift, guidance)
    return fn


def student_sampler(model, dev):
    sig = student_sigmas(4, shift)
    def fn(tokens, gen):
        with autocast(dev):
            return stream_sample(model, tokens, num_frames, sig, generator=gen)
    return fn


SUMMARY = {}  # stage -> seconds, peak memory, final oracle result; printed at the end and saved as summary.json


def note(stage, **values):
    SUMMARY.setdefault(stage, {}).update(values)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(SUMMARY, f, indent=1)


def stage_done(stage, t0, count, unit):
    """One line and one summary entry when a stage finishes: how much it did, how long, peak memory."""
    seconds, mb = time.time() - t0, peak_mb()
    note(stage, seconds=round(seconds, 1), **{unit: count}, peak_mb=round(mb))
    print(f"[{stage}] {count} {unit} in {seconds:.0f} s, peak memory {mb:.0f} MB")


def report(stage, it, result, videos, prompts):
    note(stage, oracle=result, oracle_iter=it)
    print(f"[{stage}] oracle on {len(prompts)} held-out videos: " + ", ".join(f"{k} {v}%" for k, v in result.items()))
    log(stage, it, oracle=result)
    try:
        from sample import save_strip
        save_strip(videos[:8], prompts[:8], os.path.join(out_dir, "samples", f"{stage}_{it:06d}.png"))
    except ImportError:
        pass


# -----------------------------------------------------------------------------
# Stage 1: the teacher. A bidirectional DiT learns the rectified flow x_t = (1 - s) x0 + s eps on toy videos.
# The network predicts x0 directly (DESIGN §2: predicting v failed in pixel space with patch 8).

def train_teacher(config, dev):
    ck = load_ckpt("teacher")
    model = CausalDiT(model_config(config)).to(dev)
    if ck is not None and ck["done"]:
        model.load_state_dict(ck["ema"])
        print(f"[teacher] finished earlier ({ckpt_path('teacher')}), skipping")
        return model.eval()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=teacher_lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    start = 0
    if ck is not None:  # resume an interrupted run exactly: weights, EMA, optimizer, data/noise RNG
        model.load_state_dict(ck["model"]); ema.load_state_dict(ck["ema"]); opt.load_state_dict(ck["opt"])
        gen.set_state(ck["rng"]); start = ck["iter"]
        print(f"[teacher] resuming at iteration {start}")

    def state(it, done):
        return stage_state(config, model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                           rng=gen.get_state(), iter=it, done=done)

    fwd = torch.compile(model) if compile else model
    t0 = time.time()
    for it in tqdm(range(start, teacher_iters), desc="teacher", initial=start, total=teacher_iters, mininterval=2):
        videos, prompts, _ = toydata.sample_batch(teacher_batch, num_frames, resolution, gen)
        x0 = videos.to(dev)                                                     # (B, F, C, H, W)
        tokens = dropout_prompts(batch_tokens(prompts, dev), cfg_dropout, gen)  # (B, Lt)
        B = x0.shape[0]
        sigma = sample_sigma(B, gen)[:, None].expand(B, num_frames)            # (B, F) one level per video ...
        # ... except for a fraction of the videos, whose frames get independent levels: a noisy frame next to a
        # clean one can only be recovered from how frames relate, which teaches motion far sooner
        own = torch.rand(B, generator=gen) < teacher_frame_noise                # (B,)
        sigma = torch.where(own[:, None], sample_sigma(B * num_frames, gen).view(B, num_frames), sigma).to(dev)
        eps = torch.randn(x0.shape, generator=gen).to(dev)
        x_t = add_noise(x0, eps, sigma)
        t = 1000 * sigma                                                        # (B, F)
        for g in opt.param_groups:
            g["lr"] = lr_at(it, teacher_lr, teacher_iters)
        with autocast(dev):
            pred = fwd(x_t, t, tokens, mode="bidirectional")
        per_video = (pred.float() - x0).pow(2).mean(dim=(1, 2, 3, 4))           # (B,)
        loss = per_video.mean()
        check_finite(loss, "teacher", it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        ema_update(ema, model, min(ema_decay, (1 + it) / (10 + it)))  # EMA warmup: early averages not stuck at init
        if it % log_interval == 0 or it == teacher_iters - 1:
            # the loss by noise level tells more than its mean: low-noise steps are easy, high-noise ones are not
            s = sigma.mean(1)                                                   # (B,) a video's mean level
            bins = {f"loss_s{lo:.2f}": per_video[(s >= lo) & (s < lo + 0.25)].mean().item()
                    for lo in (0.0, 0.25, 0.5, 0.75) if ((s >= lo) & (s < lo + 0.25)).any()}
            log("teacher", it, loss=loss.item(), lr=opt.param_groups[0]["lr"], elapsed=time.time() - t0, **bins)
        if eval_interval and it > start and it % eval_interval == 0:
            report("teacher", it, *oracle_check(teacher_sampler(ema.eval(), dev), dev, min(32, eval_videos)))
        checkpoint("teacher", it, teacher_iters, state)
    save_ckpt("teacher", state(teacher_iters, True))
    stage_done("teacher", t0, teacher_iters - start, "iterations")
    ema.eval()
    if eval_videos:
        report("teacher", teacher_iters, *oracle_check(teacher_sampler(ema, dev), dev, eval_videos))
    return ema


# -----------------------------------------------------------------------------
# Stage 2: ODE pairs. Run the teacher's deterministic Euler sampler and keep, per video, the states at the
# student's 4 sigmas and the final x0. teacher_steps is a multiple of 4 and both grids are uniform before
# the same shift, so the student's sigmas lie exactly on the teacher's grid.

@torch.no_grad()
def generate_ode_pairs(teacher, prompts, noise, dev):
    """Returns states (P, 5, F, C, H, W): x at the student's sigmas [s_0..s_3] and x0 at index 4."""
    grid = shift_sigma(torch.linspace(1, 0, teacher_steps + 1), shift)         # (S+1,) from 1 down to 0
    keep = [i * teacher_steps // 4 for i in range(4)] + [teacher_steps]          # grid indices of the student sigmas
    assert torch.allclose(grid[keep[:4]], torch.tensor(student_sigmas(4, shift)), atol=1e-6), "grids disagree"
    states = []
    for i in tqdm(range(0, len(prompts), 64), desc="ODE pairs", mininterval=2):
        tokens = batch_tokens(prompts[i:i + 64], dev)
        with autocast(dev):
            traj = euler_sample(teacher, tokens, noise[i:i + 64].to(dev), teacher_steps, shift, guidance,
                                return_trajectory=True)                         # list of S+1 (B, F, C, H, W)
        states.append(torch.stack([traj[k].float().cpu() for k in keep], dim=1).half())  # (B, 5, F, C, H, W)
    return torch.cat(states)


def make_ode_pairs(config, teacher, dev):
    ck = load_ckpt("ode_pairs")
    if ck is not None:
        print(f"[ode_pairs] {len(ck['prompts'])} pairs from {ckpt_path('ode_pairs')}, skipping")
        return ck
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed + 1)
    _, prompts, _ = toydata.sample_batch(ode_pairs, 1, 8, gen)  # only the prompts are used (the frames are tiny)
    noise = torch.randn(ode_pairs, num_frames, 3, resolution, resolution, generator=gen)
    states = generate_ode_pairs(teacher, prompts, noise, dev)
    ck = dict(prompts=list(prompts), states=states, done=True)
    save_ckpt("ode_pairs", ck)
    stage_done("ode_pairs", t0, ode_pairs, "pairs")
    log("ode_pairs", 0, seconds=time.time() - t0)
    return ck


# -----------------------------------------------------------------------------
# Stage 3: causal ODE init. The student starts as a copy of the teacher but attends block-causally. Each chunk
# independently takes one of the 4 stored noisy states; the student regresses the teacher's final x0.

def train_ode_init(config, teacher, pairs, dev):
    ck = load_ckpt("ode_init")
    student = copy.deepcopy(teacher).requires_grad_(True).train()   # the EMA teacher was frozen
    if ck is not None and ck["done"]:
        student.load_state_dict(ck["model"])
        print(f"[ode_init] finished earlier ({ckpt_path('ode_init')}), skipping")
        return student
    opt = torch.optim.AdamW(student.parameters(), lr=ode_lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 2)
    start = 0
    if ck is not None:
        student.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); gen.set_state(ck["rng"])
        start = ck["iter"]
        print(f"[ode_init] resuming at iteration {start}")

    def state(it, done):
        return stage_state(config, model=student.state_dict(), opt=opt.state_dict(), rng=gen.get_state(),
                           iter=it, done=done)

    sig = torch.tensor(student_sigmas(4, shift))                                # (4,)
    states, prompts = pairs["states"], pairs["prompts"]
    n_chunks = num_frames // chunk
    t0 = time.time()
    for it in tqdm(range(start, ode_iters), desc="ODE init", initial=start, total=ode_iters, mininterval=2):
        idx = torch.randint(len(prompts), (ode_batch,), generator=gen)         # (B,)
        level = torch.randint(4, (ode_batch, n_chunks), generator=gen)          # (B, n_chunks) state per chunk
        level_f = level.repeat_interleave(chunk, dim=1)                         # (B, F)
        batch = states[idx].float()                                             # (B, 5, F, C, H, W)
        x = torch.gather(batch, 1, level_f[:, None, :, None, None, None].expand(-1, 1, -1, *batch.shape[3:]))[:, 0]
        x, x0 = x.to(dev), batch[:, 4].to(dev)                                  # (B, F, C, H, W) each
        t = (1000 * sig[level_f]).to(dev)                                       # (B, F)
        tokens = batch_tokens([prompts[i] for i in idx.tolist()], dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(it, ode_lr, ode_iters)
        with autocast(dev):
            pred = student(x, t, tokens, mode="causal")
        loss = F.mse_loss(pred.float(), x0)
        check_finite(loss, "ode_init", it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
        opt.step()
        if it % log_interval == 0 or it == ode_iters - 1:
            log("ode_init", it, loss=loss.item(), lr=opt.param_groups[0]["lr"], elapsed=time.time() - t0)
        checkpoint("ode_init", it, ode_iters, state)
    save_ckpt("ode_init", state(ode_iters, True))
    stage_done("ode_init", t0, ode_iters - start, "iterations")
    student.eval()
    if eval_videos:
        report("ode_init", ode_iters, *oracle_check(student_sampler(student, dev), dev, eval_videos))
    return student.train()


# -----------------------------------------------------------------------------
# Stage 4: Self Forcing. The student generates every chunk from its OWN previous outputs (through the KV cache),
# exactly as at inference, and the whole clip is judged by distribution matching against the teacher.

def self_forcing_rollout(generator, tokens, gen, dev, grad=True):
    """Algorithm 1 of the paper (Self Forcing training), for one batch. Returns the clip X (B, F, C, H, W).

    Require: the student's denoising sigmas t_1..t_T (T = 4), N chunks, generator G_theta
      initialise the output X = [] and the KV cache KV = []
      sample ONE exit step s ~ Uniform{1..T}, shared by every chunk of the rollout
      for i = 1..N:
          x ~ N(0, I)                                     fresh noise for chunk i
          for j = T..s  (from the noisiest step down to the exit step):
              if j == s:
                  with gradient:     x0_hat = G_theta(x; t_j, KV)
                  X.append(x0_hat)
                  without gradient:  KV.append(G_theta^KV(x0_hat; t = 0, KV))     the clean re-fill
              else:
                  without gradient:  x0_hat = G_theta(x; t_j, KV)
                  eps ~ N(0, I);  x = (1 - t_{j-1}) x0_hat + t_{j-1} eps           re-noise, NOT an Euler step
    Only the exit step carries gradient, so memory is one forward per chunk; the cache is always detached.
    """
    sig = student_sigmas(4, shift)                                              # [s_0 = 1, ..., s_3], decreasing
    B = tokens.shape[0]
    exit_step = int(torch.randint(4, (1,), generator=gen))
    cache = generator.new_cache(tokens, window=None, sink=0)
    out = []
    for start in range(0, num_frames, chunk):
        x = torch.randn(B, chunk, 3, resolution, resolution, generator=gen).to(dev)     # (B, K, C, H, W)
        for j in range(exit_step + 1):
            t = torch.full((B, chunk), 1000 * sig[j], device=dev)               # (B, K)
            with torch.set_grad_enabled(grad and j == exit_step), autocast(dev):
                x0_hat = generator.forward_chunk(x, t, cache, start)
            if j < exit_step:
                eps = torch.randn(x.shape, generator=gen).to(dev)
                x = add_noise(x0_hat.detach(), eps, torch.full((B,), sig[j + 1], device=dev))
        out.append(x0_hat.float())
        with autocast(dev):
            generator.append_to_cache(x0_hat.detach(), cache, start)            # no grad inside
    return torch.cat(out, dim=1)                                                # (B, F, C, H, W)


def cfg_x0(model, x_t, t, tokens, g):
    # classifier-free guidance on x0 predictions; cond and uncond in one batch
    empty = torch.zeros_like(tokens)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([tokens, empty]), mode="bidirectional")
    cond, uncond = both.float().chunk(2)
    return uncond + g * (cond - uncond)


def dmd_loss(x, tokens, teacher, critic, gen, dev):
    """Distribution matching distillation (DMD) loss on a generated clip x (B, F, C, H, W) that carries grad.

    Noise x at one sigma per video; the real score (teacher, with CFG) and the fake score (critic, trained on the
    generator's own samples) each predict x0. Their difference, normalised per sample, is the gradient of the
    reverse KL between the generator's distribution and the teacher's: it pushes x toward what the teacher would
    make of it and away from what the generator currently makes.
    """
    B = x.shape[0]
    sigma = sample_sigma(B, gen).clamp(0.02, 0.98).to(dev)                     # (B,)
    eps = torch.randn(x.shape, generator=gen).to(dev)
    with torch.no_grad():
        x_t = add_noise(x.detach(), eps, sigma)
        t = (1000 * sigma)[:, None].expand(-1, num_frames)                      # (B, F)
        with autocast(dev):
            real = cfg_x0(teacher, x_t, t, tokens, guidance)
            fake = critic(x_t, t, tokens, mode="bidirectional").float()
        norm = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1)
        grad = (fake - real) / norm.clamp_min(1e-6)
    # d/dx of 0.5 * ||x - sg(x - grad)||^2 is exactly grad: the usual way to inject a custom gradient
    return 0.5 * F.mse_loss(x, (x - grad).detach())


def critic_loss(critic, x, tokens, gen, dev):
    # the fake score learns the generator's current distribution with the same rectified-flow loss as the teacher
    B = x.shape[0]
    sigma = sample_sigma(B, gen).to(dev)                                        # (B,)
    eps = torch.randn(x.shape, generator=gen).to(dev)
    t = (1000 * sigma)[:, None].expand(-1, num_frames)                          # (B, F)
    with autocast(dev):
        pred = critic(add_noise(x, eps, sigma), t, tokens, mode="bidirectional")
    return F.mse_loss(pred.float(), x)


def train_self_forcing(config, teacher, student, dev):
    ck = load_ckpt("self_forcing")
    if ck is not None and ck["done"]:
        print(f"[self_forcing] finished earlier ({ckpt_path('self_forcing')}), skipping")
        return
    teacher.requires_grad_(False).eval()              # the real score is frozen
    generator = student.train()
    critic = copy.deepcopy(teacher).requires_grad_(True).train()    # the fake score starts as the teacher
    ema = copy.deepcopy(generator).requires_grad_(False)
    # betas (0, 0.999) as in the official code: DMD gradients change direction fast, momentum only lags them
    opt_g = torch.optim.AdamW(generator.parameters(), lr=gen_lr, betas=(0.0, 0.999), weight_decay=0.0)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=critic_lr, betas=(0.0, 0.999), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 3)
    start = 0
    if ck is not None:
        generator.load_state_dict(ck["model"]); critic.load_state_dict(ck["critic"]); ema.load_state_dict(ck["ema"])
        opt_g.load_state_dict(ck["opt"]); opt_c.load_state_dict(ck["opt_critic"]); gen.set_state(ck["rng"])
        start = ck["iter"]
        print(f"[self_forcing] resuming at iteration {start}")

    def state(it, done):
        return stage_state(config, model=generator.state_dict(), ema=ema.state_dict(), critic=critic.state_dict(),
                           opt=opt_g.state_dict(), opt_critic=opt_c.state_dict(), rng=gen.get_state(),
                           iter=it, done=done)

    t0 = time.time()
    g_loss = float("nan")
    for it in tqdm(range(start, sf_iters), desc="Self Forcing", initial=start, total=sf_iters, mininterval=2):
        _, prompts, _ = toydata.sample_batch(sf_batch, 1, 8, gen)               # prompts only: no real videos used
        tokens = batch_tokens(prompts, dev)
        # generator step (every dfake_gen_update_ratio iterations): roll out WITH gradient, DMD loss
        if it % dfake_gen_update_ratio == 0:
            x = self_forcing_rollout(generator, tokens, gen, dev, grad=True)
            loss = dmd_loss(x, tokens, teacher, critic, gen, dev)
            check_finite(loss, "self_forcing", it)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
            opt_g.step()
            ema_update(ema, generator, sf_ema_decay)
            g_loss = loss.item()
        # critic step (every iteration): a fresh rollout without gradient, rectified-flow loss on it
        with torch.no_grad():
            x = self_forcing_rollout(generator, tokens, gen, dev, grad=False)
        c_loss = critic_loss(critic, x, tokens, gen, dev)
        check_finite(c_loss, "self_forcing", it)
        opt_c.zero_grad(set_to_none=True)
        c_loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), grad_clip)
        opt_c.step()
        if it % log_interval == 0 or it == sf_iters - 1:
            log("self_forcing", it, dmd_loss=g_loss, critic_loss=c_loss.item(), elapsed=time.time() - t0)
        if eval_interval and it > start and it % eval_interval == 0:
            report("self_forcing", it, *oracle_check(student_sampler(ema.eval(), dev), dev, min(32, eval_videos)))
        checkpoint("self_forcing", it, sf_iters, state)
    save_ckpt("self_forcing", state(sf_iters, True))
    stage_done("self_forcing", t0, sf_iters - start, "iterations")
    if eval_videos:
        report("self_forcing", sf_iters, *oracle_check(student_sampler(ema.eval(), dev), dev, eval_videos))


if __name__ == "__main__":
    main()
