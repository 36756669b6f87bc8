"""
The whole Self Forcing training story, top to bottom (Huang et al. 2025, arXiv 2506.08009).

    python train.py config/tiny.py                  # 2-core CPU: about 15 min (README)
    python train.py config/tiny.py --sf_iters=400   # any config key can be overridden

Four stages, each checkpointed into out_dir. Re-running the same command skips finished stages and
resumes an interrupted one from its last checkpoint.

  1. teacher      a bidirectional DiT trained with the rectified-flow loss (+ prompt dropout for CFG)  teacher.pt
  2. ODE pairs    the teacher's Euler sampler, keeping the states at the student's 4 sigmas           ode_pairs.pt
  3. ODE init     a causal student initialised from the teacher, regressing x0 from those states     ode_init.pt
  4. Self Forcing the student rolls out its own chunks through the KV cache (Algorithm 1) and is
                  trained with distribution matching (DMD) against the teacher, with an online critic self_forcing.pt

The paper's baselines (ablation.py runs them all) switch stage 4 with `method`: tf_dmd / df_dmd keep stages 2-4
but condition the generator on ground-truth context; teacher_forcing / diffusion_forcing replace stages 2-4 by
one diffusion-loss stage on a causal student                                                          diffusion.pt
"""
import copy
import contextlib
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import toydata
from configurator import ConfigError, configure
from model import (CausalDiT, ModelConfig, add_noise, euler_sample, frame_blocks, sampler_windows, shift_sigma,
                   stream_euler_sample, stream_layout, stream_sample, student_sigmas, videos_per_call)

# -----------------------------------------------------------------------------
# default config: the tiny CPU run. config/*.py files hold only the values they change.
# I/O
out_dir = "out/tiny"
seed = 1337
device = "auto"              # auto picks cuda -> mps -> cpu
compile = False              # torch.compile the models (GPU runs)
log_interval = 25            # iterations between log lines
eval_interval = 1500         # iterations between oracle checks (32 videos) during a stage (0: only at its end)
eval_videos = 64             # held-out (prompt, seed) pairs for the oracle check at the end of each stage
ckpt_interval = 200          # iterations between checkpoints inside a stage (a finished stage always saves)
stop_after = ""              # "stage:N" exits after iteration N of that stage, as if interrupted (for tests)
# the toy world
resolution = 32
num_frames = 12              # training length F
chunk = 3                    # K frames per autoregressive chunk (1 = frame-wise)
orbit_start_deg = 180.0      # an orbit starts within this many degrees of the top of its circle (toydata's
                             # ORBIT_START_DEG); 180: anywhere, the default world. 30: config/orbits_top.py (README)
# model (the same architecture serves teacher, critic and student)
patch = 8
width = 128
depth = 4
heads = 4
text_depth = 2
# flow matching: ONE timestep shift, used by the teacher, the ODE pairs, the student's steps, DMD and sampling
shift = 3.0
guidance = 1.5               # CFG scale, standard form uncond + g (cond - uncond) (official code's g' = g - 1);
                             # it sets the teacher's samples, the ODE pairs and DMD's real score. With the word code
                             # a strong push rounds the squares: same teacher, 64 held-out, all-correct 51.6% at 3,
                             # 59.4% at 2, 62.5% at 1.5, and students made at 1.5 gain more still (README)
teacher_steps = 12           # Euler steps of the teacher sampler; a multiple of 4 puts the student's sigmas on its grid
# stage 1: teacher
teacher_iters = 2800         # 0.2-0.4 s a step on 2 cores. The shapes come last, from about step 1,400: 2,000 steps,
teacher_batch = 16           # or 8 videos a step, end with no triangle drawn (README, "Less teacher")
teacher_lr = 1e-3
cfg_dropout = 0.1            # fraction of prompts replaced by the empty prompt, so the model also learns uncond
teacher_frame_noise = 0.0    # fraction of videos with an independent noise level per frame (rest: one per video);
                             # 0.5 taught the direction words nothing measurable in 1,400 steps (notes in README)
teacher_stream = 0.5         # fraction of videos in the streaming layout: one window of the sampler noisy, the
                             # frames before it clean (t = 0), those after it noise (t = 1000); the teacher samples so
teacher_first_frame = True   # the teacher makes frame 0 alone, then the rest of the first chunk, and trains on those
                             # windows too: the sign of a motion (False: the first chunk mostly stands still, README)
student_first_frame = True   # the causal student makes them so too: frame 0 alone, frames 1..K-1, then chunks of K
                             # (its masks, ODE init, rollout and streaming; False: the paper's equal chunks, whose
                             # first chunk goes the asked way in about a third of the videos, README)
ema_decay = 0.995
warmup_iters = 100
# stage 2: ODE pairs
ode_pairs = 192              # videos sampled by the teacher (stored in float16); about 0.5 s a video on 2 cores.
                             # 96 left the students 9 points below the teacher (the shapes), 192 about 3 (README)
# stage 3: causal ODE init
ode_iters = 160              # 480 wins back the students' colour transitions (ODE inits miss 6 of 168 instead of 30,
                             # three seeds) and moves nothing else measurable, for 3.5-7 more minutes (README)
ode_batch = 16
ode_lr = 3e-4
# stage 4: Self Forcing (DMD)
sf_iters = 200               # critic steps; the generator steps every dfake_gen_update_ratio of them
sf_batch = 8
gen_lr = 5e-4                # Adam moves each weight about lr a step, so 40 generator steps at 5e-5 moved the student
                             # 0.1% and it scored what its ODE init did; at 5e-4 Self Forcing gained 6-11 points on
                             # the 64 held-out videos over its ODE init, two seeds (README, "The DMD stage at work")
critic_lr = 2e-4
dmd_stream = 0.0             # fraction of the videos that DMD and the critic noise in the teacher's streaming layout
                             # (clean past, one noisy window, pure-noise future) instead of one level for the whole
                             # clip (the paper's). Orbits near the top: 0.5 or 1 kept 9-10 orbits of 48 against 4-6
                             # (tiny teacher); with config/orbits_top.py's, over three seeds, 17.3 against 8.7 and
                             # 74.0 against 72.7% on 512 held-out videos, so that config sets 0.5; in the default
                             # world it changes nothing measured (README, "DMD in the teacher's layout")
dfake_gen_update_ratio = 5   # official value
sf_ema_decay = 0.99
grad_clip = 1.0
# the ablation (ablation.py): what trains the causal student after the teacher. "self_forcing": the paper's method.
# "tf_dmd" / "df_dmd": the same ODE init and DMD, but the generator makes each chunk with ground-truth context
# (clean / noised) instead of its own rollout. "teacher_forcing" / "diffusion_forcing": no ODE init and no DMD; the
# student starts from the teacher, learns with the diffusion loss on ground truth (clean / noisy context, each chunk
# its own level) for diffusion_iters, and samples with teacher_steps Euler steps and CFG (stage "diffusion")
method = "self_forcing"
diffusion_iters = 500
teacher_chunk = 0            # chunk of the teacher's streaming layout and sampler; 0 = chunk (frame-wise ablation
                             # rows keep the chunk-wise teacher: sampled frame by frame it moves objects far less)
# sampling long videos with the rolling KV cache (also stored in checkpoints for sample.py)
window = 0                   # recent frames kept in the cache; 0 = num_frames - chunk - sink (at least chunk): with
                             # the sink, as much context as training ever showed (sample.rolling_cache)
sink = 0                     # first frames never evicted. Keeping the first chunk (3) helps where every orbit starts
                             # the same way (config/orbits_long.py) and costs straight lines elsewhere (README)
# -----------------------------------------------------------------------------


def main():
    try:
        configure(globals(), sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"error: {e}")
    config = {k: v for k, v in globals().items() if k in _CONFIG_KEYS}
    check_config(config)
    toydata.ORBIT_START_DEG = float(orbit_start_deg)  # the world every stage draws its videos from
    dev = pick_device(device)
    if "RANK" in os.environ:  # launched by torchrun: one process per device, as in nanoGPT
        dev = setup_ddp(dev)
    torch.manual_seed(seed)   # the models' initial weights: the same in every run with this seed, and on every rank
    prepare_out_dir()
    print(f"out_dir {out_dir} | device {dev} | {resolution}x{resolution}, {num_frames} frames, chunk {chunk}")
    t_all = time.time()
    try:
        teacher = train_teacher(config, dev)
        if method in DIFFUSION_METHODS:
            train_diffusion(config, teacher, dev)
        else:
            pairs = make_ode_pairs(config, teacher, dev)
            student = train_ode_init(config, teacher, pairs, dev)
            train_self_forcing(config, teacher, student, dev)
    except KeyboardInterrupt:
        sys.exit(f"\ninterrupted: re-run the same command to resume from the last checkpoint in {out_dir}")
    print(f"\n{'stage':<14}{'seconds':>9}{'peak MB':>9}  oracle all-correct (held-out)")
    for name, r in SUMMARY.items():
        print(f"{name:<14}{r.get('seconds', float('nan')):>9.0f}{r.get('peak_mb', 0):>9}  {r.get('oracle', {}).get('all', '-')}")
    which = " --model diffusion" if method in DIFFUSION_METHODS else ""
    print(f"all stages done in {time.time() - t_all:.0f} s; try: python sample.py --out_dir {out_dir}{which} "
          f"--prompt \"A red circle moving from left to right\"")
    if dist.is_initialized():
        dist.barrier()  # leave together: once (1 run in ~20) a rank that tore gloo down alone aborted at exit
        dist.destroy_process_group()


DMD_METHODS, DIFFUSION_METHODS = ("self_forcing", "tf_dmd", "df_dmd"), ("teacher_forcing", "diffusion_forcing")
_CONFIG_KEYS = [k for k, v in dict(globals()).items()
               if not k.startswith("_") and isinstance(v, (int, float, bool, str, type(None)))]


def check_config(c):
    # fail before minutes of training, with a message that says what to change
    problems = [f"{k} must be >= {lo}, got {c[k]}" for lo, keys in _AT_LEAST.items() for k in keys if c[k] < lo]
    problems += [f"{k} must lie in [0, 1], got {c[k]}" for k in _FRACTIONS if not 0 <= c[k] <= 1]
    problems += [f"{k} must be a positive finite number, got {c[k]}" for k in _POSITIVE if not 0 < c[k] < math.inf]
    if problems:  # the checks below divide by these values
        sys.exit("error: " + "; ".join(problems))
    if not c["out_dir"]:
        problems.append("out_dir must not be empty")
    if not math.isfinite(c["guidance"]):
        problems.append(f"guidance must be finite, got {c['guidance']}")
    if c["stop_after"] and not re.fullmatch(r"(teacher|ode_init|self_forcing|diffusion):[1-9][0-9]*", c["stop_after"]):
        problems.append(f"stop_after must look like teacher:N, ode_init:N, self_forcing:N or diffusion:N, "
                        f"got {c['stop_after']!r}")
    if not device_available(c["device"]):
        problems.append(f"device {c['device']!r} is not available here (try --device=auto or --device=cpu)")
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's process count: each rank takes a slice of every batch
    problems += [f"{k} {c[k]} does not split evenly over {world} processes"
                 for k in ("teacher_batch", "ode_batch", "sf_batch") if c[k] % world]
    try:
        model_config(c)  # the model's own checks (head size and the like)
    except ValueError as e:
        problems.append(str(e))
    if c["resolution"] % c["patch"]:
        problems.append(f"resolution {c['resolution']} is not divisible by patch {c['patch']}")
    if c["num_frames"] % c["chunk"]:
        problems.append(f"num_frames {c['num_frames']} is not divisible by chunk {c['chunk']}")
    if c["method"] not in DMD_METHODS + DIFFUSION_METHODS:
        problems.append(f"method must be one of {', '.join(DMD_METHODS + DIFFUSION_METHODS)}, got {c['method']!r}")
    if c["num_frames"] % (c["teacher_chunk"] or c["chunk"]):
        problems.append(f"num_frames {c['num_frames']} is not divisible by teacher_chunk {c['teacher_chunk']}")
    if c["teacher_steps"] % 4:
        problems.append(f"teacher_steps {c['teacher_steps']} must be a multiple of 4 (student sigmas on its grid)")
    if not toydata.orbit_start_ok(c["orbit_start_deg"]):
        problems.append(f"orbit_start_deg must lie in [0, 180], got {c['orbit_start_deg']}")
    if c["shift"] <= 0:
        problems.append(f"shift must be > 0, got {c['shift']}")
    if problems:
        sys.exit("error: " + "; ".join(problems))


_AT_LEAST = {1: ("resolution", "patch", "num_frames", "chunk", "width", "depth", "heads", "teacher_steps",
                 "teacher_batch", "ode_pairs", "ode_batch", "sf_batch", "dfake_gen_update_ratio", "log_interval",
                 "ckpt_interval"),
             0: ("text_depth", "teacher_iters", "ode_iters", "sf_iters", "warmup_iters", "eval_interval",
                 "eval_videos", "window", "sink", "diffusion_iters", "teacher_chunk")}
_FRACTIONS = ("cfg_dropout", "teacher_frame_noise", "teacher_stream", "ema_decay", "sf_ema_decay")
_POSITIVE = ("shift", "teacher_lr", "ode_lr", "gen_lr", "critic_lr", "grad_clip")


def device_available(name):
    if name == "auto":
        return True
    try:
        kind = torch.device(name).type
    except RuntimeError:  # not a device name at all
        return False
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}.get(kind, False)


def pick_device(name):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_ddp(dev):
    """One process per device, started by torchrun (nanoGPT's recipe): NCCL between GPUs, gloo between CPU processes.
    Every rank builds the same models from the same seed and reads the same checkpoints; rank 0 alone writes files
    and prints. Returns this rank's device."""
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if not is_master():
        sys.stdout = open(os.devnull, "w")  # one voice: the other ranks would print the same lines again
    return dev


def is_master():
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def part(x):
    """This rank's slice of a global batch (a tensor or a list); all of it without DDP. Every rank draws the whole
    batch from the same generator, so the generators stay in step (rank 0's checkpoint holds everyone's RNG state)
    and the slices together are exactly the batch one process would train on."""
    if not dist.is_initialized():
        return x
    n = len(x) // world_size()
    return x[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def randn_part(shape, gen):
    """Gaussian noise for this rank's slice of shape (b, ...): drawn as the global batch's noise, then sliced."""
    return part(torch.randn(world_size() * shape[0], *shape[1:], generator=gen))


def ddp_wrap(model, dev):
    # DDP averages the gradients over ranks inside backward(); a single process trains the model itself
    if not dist.is_initialized():
        return model
    return DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def average_grads(model):
    """What DDP does inside backward, by hand, for the Self Forcing generator: its rollout calls the model many times
    through forward_chunk and the KV cache, which DDP's forward() wrapper never sees."""
    if dist.is_initialized():
        for p in model.parameters():
            if p.grad is not None:  # the same parameters are used on every rank, so this skips the same ones
                dist.all_reduce(p.grad)
                p.grad /= world_size()


def autocast(dev):
    # bf16 autocast on GPU only: CPU bf16 matmuls are slow on most laptops and the KV-cache identity tests are fp32
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")


def model_config(c):
    return ModelConfig(resolution=c["resolution"], patch=c["patch"], chunk=c["chunk"], width=c["width"],
                       first_frame=c.get("student_first_frame", False),  # a config from before it: equal chunks
                       depth=c["depth"], heads=c["heads"], text_depth=c["text_depth"],
                       vocab_size=len(toydata.VOCAB), max_text_len=toydata.MAX_TEXT_LEN)


# -----------------------------------------------------------------------------
# checkpoints: one file per stage, written atomically (temp file + rename), read with weights_only=True

def ckpt_path(name):
    return os.path.join(out_dir, f"{name}.pt")


def prepare_out_dir():
    """Create out_dir, delete the temp files of a run that was killed while writing, keep earlier stages' summary."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot create out_dir {out_dir}: {e.strerror}")
    if not is_master():
        return
    for folder in (out_dir, os.path.join(out_dir, "samples")):
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".tmp"):  # only ever renamed into place once complete: this one never was
                os.remove(os.path.join(folder, name))
                print(f"removed {os.path.join(folder, name)}, left half-written by a killed run")
    try:
        with open(os.path.join(out_dir, "summary.json")) as f:
            SUMMARY.update(json.load(f))
    except (OSError, ValueError):
        pass  # no summary yet (or an unreadable one from an older version): this run writes a new one


def all_finite(x):
    # walks a state dict; integer tensors (RNG states, token ids) are finite by nature
    if torch.is_tensor(x):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, dict):
        return all(all_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(all_finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def save_ckpt(name, state):
    """Rank 0 writes; a state holding NaN or inf is never written, so the file on disk is always the last good one."""
    if not is_master():
        return
    path = ckpt_path(name)
    bad = [k for k, v in state.items() if not all_finite(v)]
    if bad:
        sys.exit(f"error: not saving {path}: {', '.join(bad)} hold NaN or inf; the last good checkpoint is kept")
    tmp = path + ".tmp"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic on POSIX: a reader sees the old file or the new one, never half of one
    except OSError as e:
        sys.exit(f"error: cannot write {path} ({e.strerror}); the last good checkpoint is kept")


def load_ckpt(name, config):
    """The stage's checkpoint dict, or None if it was never written. A file that is not one of ours, or that was made
    for another model, stops the run with one line naming it."""
    if dist.is_initialized():
        dist.barrier()  # all ranks start a stage together, once rank 0 has written the files of the last one
    path = ckpt_path(name)
    if not os.path.exists(path):
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: loading runs no code
    except Exception as e:  # truncated, corrupted, or a pickle of something other than tensors and plain containers
        sys.exit(f"error: cannot read checkpoint {path} ({type(e).__name__}): it is truncated, corrupted or not "
                 f"written by train.py; delete it to redo that stage")
    if not (isinstance(ck, dict) and "done" in ck and isinstance(ck.get("config", {}), dict)
            and isinstance(ck.get("model_config", {}), dict)):
        sys.exit(f"error: {path} is not a checkpoint written by train.py; delete it or use another out_dir")
    check_same_setup(path, ck, config)
    return ck


# settings that change how a run is watched, not what it trains: a resume with other values is not worth a note
_RUN_KEYS = ("out_dir", "device", "compile", "log_interval", "eval_interval", "eval_videos", "ckpt_interval",
             "stop_after")


def check_same_setup(path, ck, config):
    """A checkpoint made with other settings: stop if its weights cannot fit this model, else say what differs."""
    now = asdict(model_config(config))
    was = ck.get("model_config", now)
    # the chunk (and first_frame) only set attention masks, not weights: a frame-wise student may start from a
    # chunk-wise teacher
    differ = [f"{k} {was.get(k)!r} there, {v!r} here" for k, v in now.items()
              if was.get(k) != v and k not in ("chunk", "first_frame")]
    if list(ck.get("vocab", toydata.VOCAB)) != list(toydata.VOCAB):
        differ.append("the toydata vocabulary")
    if differ:
        sys.exit(f"error: {path} was made for another model ({'; '.join(differ)}): use the config it was trained "
                 f"with, or another out_dir")
    old = ck.get("config", {})
    changed = [f"{k} {old[k]!r} -> {v!r}" for k, v in config.items() if k in old and old[k] != v and k not in _RUN_KEYS]
    if changed:
        print(f"note: {path} was written with other settings, continuing with this run's: {', '.join(changed)}")


@contextlib.contextmanager
def restoring(name):
    """Restoring a stage from its checkpoint: a missing entry or a tensor that does not fit this model.py ends the
    run with one line naming the file, not a traceback."""
    try:
        yield
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        why = " ".join(str(e).split())[:400]  # load_state_dict lists missing/unexpected keys over many lines
        sys.exit(f"error: {ckpt_path(name)} does not fit this run ({type(e).__name__}: {why}); delete it to redo "
                 f"that stage, or use another out_dir")


def stage_state(config, **parts):
    return dict(config=config, model_config=asdict(model_config(config)), vocab=list(toydata.VOCAB), **parts)


def resumable(stage, ck, config, gen, **parts):
    """A stage's training state: parts (name -> model or optimizer) and its data/noise generator. Restores them from
    an unfinished checkpoint ck (an interrupted run continues exactly) and returns (first iteration, state(it, done)),
    the function that packs them for save_ckpt under the same names."""
    start = 0
    if ck is not None:
        with restoring(stage):
            for name, obj in parts.items():
                obj.load_state_dict(ck[name])
            gen.set_state(ck["rng"]); start = ck["iter"]
        print(f"[{stage}] resuming at iteration {start}")

    def state(it, done):
        return stage_state(config, **{name: p.state_dict() for name, p in parts.items()}, rng=gen.get_state(),
                           iter=it, done=done)
    return start, state


def after_iteration(stage, it, start, total, state_fn, sampler, t0):
    """The end of every training iteration: an oracle check every eval_interval iterations (sampler() makes the
    check's sample function, from the EMA weights where the stage keeps them), then checkpoint()."""
    if eval_interval and it > start and it % eval_interval == 0:
        report(stage, it, sampler(), min(32, eval_videos), t0)
    checkpoint(stage, it, total, state_fn)


def finish_stage(stage, start, total, state_fn, sampler, t0):
    """The final checkpoint, the stage's summary line, and its oracle check on eval_videos held-out videos."""
    save_ckpt(stage, state_fn(total, True))
    stage_done(stage, t0, total - start, "iterations")
    if eval_videos:
        report(stage, total, sampler(), eval_videos, t0)


def checkpoint(stage, it, total, state_fn):
    """After iteration `it` (0-based) of a stage: save every ckpt_interval iterations, honour stop_after."""
    n = it + 1
    stop = stop_after == f"{stage}:{n}"
    if stop or (n < total and n % ckpt_interval == 0):  # at n == total the stage's final save follows its loop
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
    if not is_master():
        return
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


def check_finite(value, stage, it, what="loss"):
    """Stop before a NaN or inf reaches the weights (this runs before optimizer.step), so the checkpoint on disk is
    the last good state."""
    value = value.detach().float().clone()
    if dist.is_initialized():
        dist.all_reduce(value)  # a NaN on any rank stops every rank, or the others would wait for it forever
    if not torch.isfinite(value):
        kept = (f"{ckpt_path(stage)} keeps the last good state" if os.path.exists(ckpt_path(stage))
                else f"no {stage} checkpoint was written yet")
        sys.exit(f"error: {stage} {what} became {value.item()} at iteration {it}; {kept}. Lower the learning rate "
                 f"and re-run the same command to resume.")


def update(stage, it, loss, model, opt, what=("loss", "gradient norm"), sync=False):
    """One optimizer step on loss: stop if the loss is not finite, backward, (sync: average the gradients over DDP
    ranks by hand), clip the gradient norm (stop if it is not finite), step. what names the two in error messages."""
    check_finite(loss, stage, it, what[0])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync:
        average_grads(model)
    check_finite(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip), stage, it, what[1])
    opt.step()


def batch_tokens(prompts, dev):
    return toydata.tokenize(prompts).to(dev)


def dropout_prompts(tokens, p, gen):
    # replace a fraction p of prompts by the empty prompt (all pad): the same network then also predicts uncond
    drop = torch.rand(tokens.shape[0], generator=gen) < p                       # (B,)
    return torch.where(drop[:, None].to(tokens.device), torch.zeros_like(tokens), tokens)


def sample_sigma(n, gen):
    # per-video noise level: uniform, warped by the ONE timestep shift (more time at high noise)
    return shift_sigma(torch.rand(n, generator=gen), shift)                     # (B,)


def stream_some(sigma, fraction, gen):
    """sigma (B, F) -> (B, F) with that fraction of the videos in the chunk-wise sampler's layout (stream_layout):
    clean past, one of the sampler's windows (model.sampler_windows, chosen uniformly; with teacher_first_frame,
    frame 0 alone and frames 1-2 after it are two of them) at the video's level, pure-noise future. The teacher
    trains on it; dmd_stream has DMD and the critic judge in it."""
    B = sigma.shape[0]
    wins = torch.tensor(sampler_windows(num_frames, teacher_k(), first_frame=teacher_first_frame))  # (n, 2)
    stream = torch.rand(B, generator=gen) < fraction                            # (B,)
    now, length = wins[torch.randint(len(wins), (B,), generator=gen)].unbind(1)  # 2 x (B,)
    return torch.where(stream[:, None], stream_layout(sigma, now, length), sigma)


# -----------------------------------------------------------------------------
# the oracle check: sample held-out (prompt, seed) pairs and read the attributes back from the frames

@torch.no_grad()
def oracle_check(sample_fn, n):
    """Percent of held-out videos whose oracle reading matches the prompt (per attribute and all)."""
    prompts, seeds = toydata.eval_set(n, num_frames, resolution)
    gen = torch.Generator().manual_seed(12345)  # same noise for every model: comparisons are paired
    videos = []
    for i in range(0, n, 32):
        videos.append(sample_fn(prompts[i:i + 32], gen).float().cpu())
    videos = torch.cat(videos)                                                  # (n, F, C, H, W)
    hits = {}
    for v, p in zip(videos, prompts):
        for k, ok in toydata.adherence(v, p).items():
            hits.setdefault(k, []).append(float(ok))
    return {k: round(100 * sum(x) / len(x), 1) for k, x in hits.items()}, videos, prompts


def teacher_k():
    return teacher_chunk or chunk  # the teacher's streaming chunk (config: teacher_chunk)


def teacher_sampler(model, dev):
    def fn(prompts, gen):
        tokens = batch_tokens(prompts, dev)
        noise = torch.randn(len(prompts), num_frames, 3, resolution, resolution, generator=gen).to(dev)
        with autocast(dev):
            return euler_sample(model, tokens, noise, teacher_steps, shift, guidance, chunk=teacher_k(),
                                first_frame=teacher_first_frame)
    return fn


def student_sampler(model, dev):
    sig = student_sigmas(4, shift)
    def fn(prompts, gen):
        with autocast(dev):
            return stream_sample(model, batch_tokens(prompts, dev), num_frames, sig, generator=gen)
    return fn


SUMMARY = {}  # stage -> seconds, peak memory, final oracle result; printed at the end and saved as summary.json


def note(stage, **values):
    SUMMARY.setdefault(stage, {}).update(values)
    if is_master():
        path = os.path.join(out_dir, "summary.json")
        with open(path + ".tmp", "w") as f:
            json.dump(SUMMARY, f, indent=1)
        os.replace(path + ".tmp", path)  # atomic, like the checkpoints


def stage_done(stage, t0, count, unit):
    """One line and one summary entry when a stage finishes: how much it did, how long, peak memory."""
    seconds, mb = time.time() - t0, peak_mb()
    note(stage, seconds=round(seconds, 1), **{unit: count}, peak_mb=round(mb))
    print(f"[{stage}] {count} {unit} in {seconds:.0f} s, peak memory {mb:.0f} MB")


EVAL_S = {}  # stage -> seconds its oracle checks took so far: kept off the training-time axis (ablation figure)


def report(stage, it, sample_fn, n, t0):
    """Oracle check of a stage's model on n held-out videos, after iteration it of the stage that started at t0.
    Logs the result with train_s, the stage's seconds so far without the oracle checks."""
    if not is_master():
        return
    t = time.time()
    result, videos, prompts = oracle_check(sample_fn, n)
    train_s = t - t0 - EVAL_S.get(stage, 0.0)
    EVAL_S[stage] = EVAL_S.get(stage, 0.0) + time.time() - t
    note(stage, oracle=result, oracle_iter=it)
    print(f"[{stage}] oracle on {len(prompts)} held-out videos: " + ", ".join(f"{k} {v}%" for k, v in result.items()))
    log(stage, it, oracle=result, train_s=round(train_s, 2))
    try:
        from sample import save_strip
        save_strip(videos[:8], prompts[:8], os.path.join(out_dir, "samples", f"{stage}_{it:06d}.png"))
    except ImportError:
        pass


# -----------------------------------------------------------------------------
# Stage 1: the teacher. A bidirectional DiT learns the rectified flow x_t = (1 - s) x0 + s eps on toy videos.
# The network predicts x0 directly (DESIGN §2: predicting v failed in pixel space with patch 8).

def train_teacher(config, dev):
    ck = load_ckpt("teacher", config)
    model = CausalDiT(model_config(config)).to(dev)
    if ck is not None and ck["done"]:
        with restoring("teacher"):
            model.load_state_dict(ck["ema"])
        print(f"[teacher] finished earlier ({ckpt_path('teacher')}), skipping")
        return model.eval()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=teacher_lr, betas=(0.9, 0.99), weight_decay=0.0, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    start, state = resumable("teacher", ck, config, gen, model=model, ema=ema, opt=opt)

    fwd = ddp_wrap(torch.compile(model) if compile else model, dev)
    t0 = time.time()
    for it in tqdm(range(start, teacher_iters), desc="teacher", initial=start, total=teacher_iters, mininterval=2,
                   disable=not is_master()):
        videos, prompts, _ = toydata.sample_batch(teacher_batch, num_frames, resolution, gen)
        x0 = videos.to(dev)                                                     # (B, F, C, H, W)
        tokens = dropout_prompts(batch_tokens(prompts, dev), cfg_dropout, gen)  # (B, Lt)
        B = x0.shape[0]
        sigma = sample_sigma(B, gen)[:, None].expand(B, num_frames)            # (B, F) one level per video ...
        # ... except for a fraction of the videos, whose frames get independent levels: a noisy frame next to a
        # clean one can only be recovered from how frames relate, which teaches motion far sooner
        own = torch.rand(B, generator=gen) < teacher_frame_noise                # (B,)
        sigma = torch.where(own[:, None], sample_sigma(B * num_frames, gen).view(B, num_frames), sigma)
        # ... and the streaming layout of the chunk-wise sampler: clean past, one noisy window, pure-noise future.
        # A clean past anchors the object, and predicting the future from it is where "from left to right" pays:
        # the tiny teacher learns the direction words this way within a few hundred steps, and not at all (3,000
        # steps) when every frame is equally noisy (README, "Why the teacher samples chunk by chunk")
        sigma = stream_some(sigma, teacher_stream, gen).to(dev)
        weight = (sigma > 0).float()                                            # (B, F) the clean past teaches nothing
        eps = torch.randn(x0.shape, generator=gen).to(dev)
        x_t = add_noise(x0, eps, sigma)
        t = 1000 * sigma                                                        # (B, F)
        for g in opt.param_groups:
            g["lr"] = lr_at(it, teacher_lr, teacher_iters)
        with autocast(dev):
            pred = fwd(part(x_t), part(t), part(tokens), mode="bidirectional")  # this rank's slice (all of it alone)
        per_frame = (pred.float() - part(x0)).pow(2).mean(dim=(2, 3, 4))       # (B, F)
        w = part(weight)
        per_video = (per_frame * w).sum(1) / w.sum(1).clamp(min=1)              # (B,)
        loss = per_video.mean()
        update("teacher", it, loss, model, opt)
        ema_update(ema, model, min(ema_decay, (1 + it) / (10 + it)))  # EMA warmup: early averages not stuck at init
        if it % log_interval == 0 or it == teacher_iters - 1:
            # the loss by noise level tells more than its mean: low-noise steps are easy, high-noise ones are not
            s = part(sigma).mean(1)                                             # (B,) a video's mean level
            bins = {f"loss_s{lo:.2f}": per_video[(s >= lo) & (s < lo + 0.25)].mean().item()
                    for lo in (0.0, 0.25, 0.5, 0.75) if ((s >= lo) & (s < lo + 0.25)).any()}
            log("teacher", it, loss=loss.item(), lr=opt.param_groups[0]["lr"], elapsed=time.time() - t0, **bins)
        after_iteration("teacher", it, start, teacher_iters, state, lambda: teacher_sampler(ema.eval(), dev), t0)
    finish_stage("teacher", start, teacher_iters, state, lambda: teacher_sampler(ema.eval(), dev), t0)
    return ema.eval()


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
    n = videos_per_call(dev)                                                       # 16 on a CPU: faster per video
    for i in tqdm(range(0, len(prompts), n), desc="ODE pairs", mininterval=2, disable=not is_master()):
        tokens = batch_tokens(prompts[i:i + n], dev)
        with autocast(dev):
            traj = euler_sample(teacher, tokens, noise[i:i + n].to(dev), teacher_steps, shift, guidance,
                                return_trajectory=True, chunk=teacher_k(),
                                first_frame=teacher_first_frame)                # (S+1, B, F, C, H, W)
        states.append(torch.stack([traj[k].float().cpu() for k in keep], dim=1).half())  # (B, 5, F, C, H, W)
    return torch.cat(states)


def make_ode_pairs(config, teacher, dev):
    ck = load_ckpt("ode_pairs", config)
    if ck is not None:
        with restoring("ode_pairs"):  # pairs made for another frame count or resolution cannot train this student
            shape = (5, num_frames, 3, resolution, resolution)
            if tuple(ck["states"].shape[1:]) != shape or len(ck["prompts"]) != len(ck["states"]):
                raise ValueError(f"{len(ck['prompts'])} prompts and states {tuple(ck['states'].shape)}, "
                                 f"this run needs states (P, {', '.join(map(str, shape))})")
        print(f"[ode_pairs] {len(ck['prompts'])} pairs from {ckpt_path('ode_pairs')}, skipping")
        return ck
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed + 1)
    _, prompts, _ = toydata.sample_batch(ode_pairs, 1, 8, gen)  # only the prompts are used (the frames are tiny)
    noise = torch.randn(ode_pairs, num_frames, 3, resolution, resolution, generator=gen)
    states = generate_ode_pairs(teacher, prompts, noise, dev)
    ck = stage_state(config, prompts=list(prompts), states=states, done=True)
    save_ckpt("ode_pairs", ck)
    stage_done("ode_pairs", t0, ode_pairs, "pairs")
    log("ode_pairs", 0, seconds=time.time() - t0)
    return ck


# -----------------------------------------------------------------------------
# Stage 3: causal ODE init. The student starts as a copy of the teacher but attends block-causally. Each block
# (a chunk; with student_first_frame frame 0 and frames 1..K-1 are two, as the teacher made them) independently
# takes one of the 4 stored noisy states, with the clean blocks before it in view (the layout the teacher made
# them in, and the one streaming gives); the student regresses the teacher's final x0.

def train_ode_init(config, teacher, pairs, dev):
    ck = load_ckpt("ode_init", config)
    student = copy.deepcopy(teacher).requires_grad_(True).train()   # the EMA teacher was frozen
    if ck is not None and ck["done"]:
        with restoring("ode_init"):
            student.load_state_dict(ck["model"])
        print(f"[ode_init] finished earlier ({ckpt_path('ode_init')}), skipping")
        return student
    opt = torch.optim.AdamW(student.parameters(), lr=ode_lr, betas=(0.9, 0.99), weight_decay=0.0, foreach=True)
    gen = torch.Generator().manual_seed(seed + 2)
    start, state = resumable("ode_init", ck, config, gen, model=student, opt=opt)

    sig = torch.tensor(student_sigmas(4, shift))                                # (4,)
    states, prompts = pairs["states"], pairs["prompts"]
    blocks = frame_blocks(num_frames, chunk, student.cfg.first_frame)          # (F,) block of each frame
    fwd = ddp_wrap(student, dev)
    t0 = time.time()
    for it in tqdm(range(start, ode_iters), desc="ODE init", initial=start, total=ode_iters, mininterval=2,
                   disable=not is_master()):
        idx = torch.randint(len(prompts), (ode_batch,), generator=gen)         # (B,)
        level = torch.randint(4, (ode_batch, int(blocks[-1]) + 1), generator=gen)  # (B, blocks) state per block
        level_f = level[:, blocks]                                              # (B, F)
        batch = states[idx].float()                                             # (B, 5, F, C, H, W)
        x = torch.gather(batch, 1, level_f[:, None, :, None, None, None].expand(-1, 1, -1, *batch.shape[3:]))[:, 0]
        x, x0 = x.to(dev), batch[:, 4].to(dev)                                  # (B, F, C, H, W) each
        t = (1000 * sig[level_f]).to(dev)                                       # (B, F)
        tokens = batch_tokens([prompts[i] for i in idx.tolist()], dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(it, ode_lr, ode_iters)
        # the teacher made chunk i with the FINISHED chunks < i in view (chunk-wise sampler), and the student
        # will stream with its finished chunks in the cache: so chunk i sees the clean past, the [clean | noisy]
        # layout, not the other chunks' noisy states
        with autocast(dev):
            pred = fwd(part(x), part(t), part(tokens), mode="teacher_forcing", clean=part(x0))
        loss = F.mse_loss(pred.float(), part(x0))
        update("ode_init", it, loss, student, opt)
        if it % log_interval == 0 or it == ode_iters - 1:
            log("ode_init", it, loss=loss.item(), lr=opt.param_groups[0]["lr"], elapsed=time.time() - t0)
        # the check samples the student as it trains (no EMA in this stage; no dropout, so train mode samples alike)
        after_iteration("ode_init", it, start, ode_iters, state, lambda: student_sampler(student, dev), t0)
    finish_stage("ode_init", start, ode_iters, state, lambda: student_sampler(student.eval(), dev), t0)
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
    # the chunks (blocks) as the student streams them: with first_frame, frame 0 alone, then frames 1..K-1
    for start, n in sampler_windows(num_frames, chunk, first_frame=generator.cfg.first_frame):
        x = randn_part((B, n, 3, resolution, resolution), gen).to(dev)           # (B, n, C, H, W)
        for j in range(exit_step + 1):
            t = torch.full((B, n), 1000 * sig[j], device=dev)                   # (B, n)
            with torch.set_grad_enabled(grad and j == exit_step), autocast(dev):
                x0_hat = generator.forward_chunk(x, t, cache, start)
            if j < exit_step:
                eps = randn_part(x.shape, gen).to(dev)
                x = add_noise(x0_hat.detach(), eps, torch.full((B,), sig[j + 1], device=dev))
        out.append(x0_hat.float())
        if start + n < num_frames:  # the last block's K/V would never be read
            with autocast(dev):
                generator.append_to_cache(x0_hat.detach(), cache, start)        # no grad inside
    return torch.cat(out, dim=1)                                                # (B, F, C, H, W)


def ground_truth_rollout(generator, tokens, x0, gen, dev, grad=True):
    """The TF+DMD and DF+DMD generators (the ablation's baselines): the same 4-step denoising with one exit step as
    self_forcing_rollout, but every chunk is made with GROUND-TRUTH context x0 (B, F, C, H, W) in view instead of the
    generator's own earlier chunks: clean (tf_dmd) or noised to a random student level per chunk (df_dmd, the noisy
    context of diffusion forcing). No chunk depends on another's output, so all chunks run in one forward per step in
    the [context | noisy] layout. At inference there is no ground truth: these students stream their own chunks,
    which training never showed them (exposure bias)."""
    sig = student_sigmas(4, shift)
    B, blocks = tokens.shape[0], frame_blocks(num_frames, chunk, generator.cfg.first_frame)   # blocks (F,)
    exit_step = int(torch.randint(4, (1,), generator=gen))
    context_t = None
    if method == "df_dmd":
        level = torch.randint(4, (world_size() * B, int(blocks[-1]) + 1), generator=gen)   # (B, blocks), global batch
        context_sigma = torch.tensor(sig)[part(level)][:, blocks].to(dev)      # (B, F) one level per block
        x0 = add_noise(x0, randn_part(x0.shape, gen).to(dev), context_sigma)
        context_t = 1000 * context_sigma
    x = randn_part(x0.shape, gen).to(dev)                                        # (B, F, C, H, W)
    for j in range(exit_step + 1):
        t = torch.full((B, num_frames), 1000 * sig[j], device=dev)             # (B, F)
        with torch.set_grad_enabled(grad and j == exit_step), autocast(dev):
            x0_hat = generator(x, t, tokens, mode="teacher_forcing", clean=x0, clean_t=context_t)
        if j < exit_step:
            x = add_noise(x0_hat.detach(), randn_part(x.shape, gen).to(dev), torch.full((B,), sig[j + 1], device=dev))
    return x0_hat.float()


def rollout(generator, tokens, videos, gen, dev, grad=True):
    # the generator's clip for one DMD step: Self Forcing rolls out on its own outputs, the baselines on the truth
    if method == "self_forcing":
        return self_forcing_rollout(generator, tokens, gen, dev, grad)
    return ground_truth_rollout(generator, tokens, videos, gen, dev, grad)


def cfg_x0(model, x_t, t, tokens, g):
    # classifier-free guidance on x0 predictions; cond and uncond in one batch
    empty = torch.zeros_like(tokens)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([tokens, empty]), mode="bidirectional")
    cond, uncond = both.float().chunk(2)
    return uncond + g * (cond - uncond)


def dmd_levels(B, gen, dev, clamp):
    """Noise levels (B, F) for a DMD or critic step, and frame weights (B, F). The paper: one level per video, every
    frame weighted. With dmd_stream, that fraction of the videos in the layout the teacher samples and trains in
    (stream_layout): the generator's own frames before one window clean, the window at the level, the frames after
    it pure noise, weighted as the teacher's loss weights them (sigma > 0: the clean past is context, not a target).
    The tiny teacher reads a motion word mostly there: in the orbits-near-top world its x0 for "clockwise" and for
    "counter-clockwise" differ by 6e-4 with every frame at sigma 1, by 0.1 with frame 0 clean (mean squared; README,
    "DMD in the teacher's layout")."""
    n = world_size() * B                                                        # the global batch, sliced below
    sigma = sample_sigma(n, gen)
    if clamp:
        sigma = sigma.clamp(0.02, 0.98)
    sigma = sigma[:, None].expand(n, num_frames)                                # (n, F)
    if dmd_stream > 0:  # (no extra draws otherwise: the paper's runs keep their random numbers)
        sigma = stream_some(sigma, dmd_stream, gen)
    sigma = part(sigma)                                                         # (B, F)
    return sigma.to(dev), (sigma > 0).float().to(dev)


def dmd_loss(x, tokens, teacher, critic, gen, dev):
    """Distribution matching distillation (DMD) loss on a generated clip x (B, F, C, H, W) that carries grad.

    Noise x at one sigma per video; the real score (teacher, with CFG) and the fake score (critic, trained on the
    generator's own samples) each predict x0. Their difference, normalised per sample, is the gradient of the
    reverse KL between the generator's distribution and the teacher's: it pushes x toward what the teacher would
    make of it and away from what the generator currently makes. (dmd_stream: some videos in the teacher's
    streaming layout instead, the gradient and its normaliser on the weighted frames only; see dmd_levels.)
    """
    B = x.shape[0]
    sigma, w = dmd_levels(B, gen, dev, clamp=True)                              # (B, F), (B, F)
    eps = randn_part(x.shape, gen).to(dev)
    with torch.no_grad():
        x_t = add_noise(x.detach(), eps, sigma)
        t = 1000 * sigma                                                        # (B, F)
        with autocast(dev):
            real = cfg_x0(teacher, x_t, t, tokens, guidance)
            fake = critic(x_t, t, tokens, mode="bidirectional").float()
        w5 = w[:, :, None, None, None]                                          # (B, F, 1, 1, 1)
        # mean |x - real| over the weighted frames (all of them: times 1.0 and F / F, the paper's mean exactly)
        norm = ((x.detach() - real).abs() * w5).mean(dim=(1, 2, 3, 4), keepdim=True) \
            * (num_frames / w.sum(1))[:, None, None, None, None]                # (B, 1, 1, 1, 1)
        grad = (fake - real) * w5 / norm.clamp_min(1e-6)
    # d/dx of 0.5 * ||x - sg(x - grad)||^2 is exactly grad: the usual way to inject a custom gradient
    return 0.5 * F.mse_loss(x, (x - grad).detach())


def critic_loss(critic, x, tokens, gen, dev):
    # the fake score learns the generator's current distribution with the same rectified-flow loss as the teacher
    B = x.shape[0]
    sigma, w = dmd_levels(B, gen, dev, clamp=False)                             # (B, F), (B, F)
    eps = randn_part(x.shape, gen).to(dev)
    with autocast(dev):
        pred = critic(add_noise(x, eps, sigma), 1000 * sigma, tokens, mode="bidirectional")
    w5 = w[:, :, None, None, None]                                              # (B, F, 1, 1, 1)
    return F.mse_loss(pred.float() * w5, x * w5) * (w.numel() / w.sum())        # the weighted frames' mean


def train_self_forcing(config, teacher, student, dev):
    ck = load_ckpt("self_forcing", config)
    if ck is not None and ck["done"]:
        print(f"[self_forcing] finished earlier ({ckpt_path('self_forcing')}), skipping")
        return
    teacher.requires_grad_(False).eval()              # the real score is frozen
    generator = student.train()
    critic = copy.deepcopy(teacher).requires_grad_(True).train()    # the fake score starts as the teacher
    ema = copy.deepcopy(generator).requires_grad_(False)
    # betas (0, 0.999) as in the official code: DMD gradients change direction fast, momentum only lags them
    opt_g = torch.optim.AdamW(generator.parameters(), lr=gen_lr, betas=(0.0, 0.999), weight_decay=0.0, foreach=True)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=critic_lr, betas=(0.0, 0.999), weight_decay=0.0, foreach=True)
    gen = torch.Generator().manual_seed(seed + 3)
    start, state = resumable("self_forcing", ck, config, gen, model=generator, ema=ema, critic=critic, opt=opt_g,
                             opt_critic=opt_c)

    critic_fwd = ddp_wrap(critic, dev)  # the generator cannot be wrapped: average_grads() does DDP's work for it
    t0 = time.time()
    g_loss = float("nan")
    for it in tqdm(range(start, sf_iters), desc="Self Forcing", initial=start, total=sf_iters, mininterval=2,
                   disable=not is_master()):
        if method == "self_forcing":  # prompts only: Self Forcing uses no real videos
            _, prompts, _ = toydata.sample_batch(sf_batch, 1, 8, gen)
            videos = None
        else:                         # the baselines' generators see ground-truth context
            videos, prompts, _ = toydata.sample_batch(sf_batch, num_frames, resolution, gen)
            videos = part(videos).to(dev)                                       # (B, F, C, H, W)
        tokens = batch_tokens(part(prompts), dev)
        # generator step (every dfake_gen_update_ratio iterations): roll out WITH gradient, DMD loss
        if it % dfake_gen_update_ratio == 0:
            x = rollout(generator, tokens, videos, gen, dev, grad=True)
            loss = dmd_loss(x, tokens, teacher, critic, gen, dev)
            update("self_forcing", it, loss, generator, opt_g, ("DMD loss", "generator gradient norm"), sync=True)
            ema_update(ema, generator, sf_ema_decay)
            g_loss = loss.item()
        # critic step (every iteration): a fresh rollout without gradient, rectified-flow loss on it
        with torch.no_grad():
            x = rollout(generator, tokens, videos, gen, dev, grad=False)
        c_loss = critic_loss(critic_fwd, x, tokens, gen, dev)
        update("self_forcing", it, c_loss, critic, opt_c, ("critic loss", "critic gradient norm"))
        if it % log_interval == 0 or it == sf_iters - 1:
            log("self_forcing", it, dmd_loss=g_loss, critic_loss=c_loss.item(), elapsed=time.time() - t0)
        after_iteration("self_forcing", it, start, sf_iters, state, lambda: student_sampler(ema.eval(), dev), t0)
    finish_stage("self_forcing", start, sf_iters, state, lambda: student_sampler(ema.eval(), dev), t0)



# -----------------------------------------------------------------------------
# The ablation's diffusion baselines (method teacher_forcing / diffusion_forcing), in place of stages 2-4: a causal
# student starts from the teacher and learns with the teacher's own loss on ground-truth videos, each chunk at its
# own noise level. Teacher forcing shows it the clean truth before each chunk ([clean | noisy] layout); diffusion
# forcing only the noisy truth (block-causal over the noisy video). Both sample with many Euler steps and CFG,
# streaming their own finished chunks as clean context, which neither saw in training.

def diffusion_sampler(model, dev):
    def fn(prompts, gen):
        tokens = batch_tokens(prompts, dev)
        noise = torch.randn(len(prompts), num_frames, 3, resolution, resolution, generator=gen).to(dev)
        with autocast(dev):
            return stream_euler_sample(model, tokens, noise, teacher_steps, shift, guidance)
    return fn


def train_diffusion(config, teacher, dev):
    ck = load_ckpt("diffusion", config)
    model = copy.deepcopy(teacher).requires_grad_(True).train()
    ema = copy.deepcopy(teacher).requires_grad_(False)
    if ck is not None and ck["done"]:
        print(f"[diffusion] finished earlier ({ckpt_path('diffusion')}), skipping")
        return
    opt = torch.optim.AdamW(model.parameters(), lr=ode_lr, betas=(0.9, 0.99), weight_decay=0.0, foreach=True)
    gen = torch.Generator().manual_seed(seed + 4)
    start, state = resumable("diffusion", ck, config, gen, model=model, ema=ema, opt=opt)

    fwd = ddp_wrap(model, dev)
    blocks = frame_blocks(num_frames, chunk, model.cfg.first_frame)           # (F,) block of each frame
    t0 = time.time()
    for it in tqdm(range(start, diffusion_iters), desc=method, initial=start, total=diffusion_iters, mininterval=2,
                   disable=not is_master()):
        videos, prompts, _ = toydata.sample_batch(teacher_batch, num_frames, resolution, gen)
        x0 = videos.to(dev)                                                     # (B, F, C, H, W)
        tokens = dropout_prompts(batch_tokens(prompts, dev), cfg_dropout, gen)  # CFG at sampling needs uncond
        B = x0.shape[0]
        n = int(blocks[-1]) + 1
        sigma = sample_sigma(B * n, gen).view(B, n)[:, blocks].to(dev)        # (B, F) one level per block
        x_t = add_noise(x0, torch.randn(x0.shape, generator=gen).to(dev), sigma)
        for g in opt.param_groups:
            g["lr"] = lr_at(it, ode_lr, diffusion_iters)
        with autocast(dev):
            if method == "teacher_forcing":
                pred = fwd(part(x_t), part(1000 * sigma), part(tokens), mode="teacher_forcing", clean=part(x0))
            else:
                pred = fwd(part(x_t), part(1000 * sigma), part(tokens), mode="causal")
        loss = F.mse_loss(pred.float(), part(x0))
        update("diffusion", it, loss, model, opt)
        ema_update(ema, model, min(sf_ema_decay, (1 + it) / (10 + it)))
        if it % log_interval == 0 or it == diffusion_iters - 1:
            log("diffusion", it, loss=loss.item(), lr=opt.param_groups[0]["lr"], elapsed=time.time() - t0)
        after_iteration("diffusion", it, start, diffusion_iters, state, lambda: diffusion_sampler(ema.eval(), dev), t0)
    finish_stage("diffusion", start, diffusion_iters, state, lambda: diffusion_sampler(ema.eval(), dev), t0)


if __name__ == "__main__":
    main()
