"""Reliability: a killed run loses nothing, a resumed run matches an uninterrupted one bit for bit, bad files and bad
input end in one clear line, a NaN never reaches a checkpoint, and two CPU processes under torchrun train what one
process trains.

The long kill test (5 rounds of a kill in every stage, plus a kill inside each stage's checkpoint write) is slow:

    python -m pytest -m slow tests/test_reliability.py     # or: OMP_NUM_THREADS=1 python tests/kill_resume.py
"""
import contextlib
import importlib
import io
import math
import os
import random
import re
import shutil
import string
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import kill_resume
import sample
import toydata
import train
from conftest import ROOT
from model import CausalDiT

# out_dir must come LAST: config/micro.py sets its own out_dir, and later arguments win
COMMON = ["config/micro.py", "--eval_videos=0", "--ckpt_interval=1"]
STAGES = kill_resume.STAGES
PROMPT = "A red circle moving from left to right"


def needs_slow(request):
    # pytest.ini does not deselect slow tests by default, so they skip themselves unless -m slow asked for them
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with python -m pytest -m slow")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def call_main(main, *args):
    """(exit code, stdout, stderr) of a script's main() run in this process, as the shell would see them:
    sys.exit("message") is exit code 1 with the message on stderr. Any other exception fails the test."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(*args) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        if isinstance(e.code, str):
            err.write(e.code + "\n")
    return code, out.getvalue(), err.getvalue()


def run_train(*args):
    """train.py in this process, seconds faster than a subprocess; its config globals are restored afterwards."""
    saved, argv = {k: getattr(train, k) for k in train._CONFIG_KEYS}, sys.argv
    sys.argv = ["train.py", *args]
    try:
        return call_main(train.main)
    finally:
        sys.argv = argv
        vars(train).update(saved)
        train.SUMMARY.clear()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """An uninterrupted micro run: what every interrupted, killed or resumed run must end up equal to."""
    out = str(tmp_path_factory.mktemp("baseline"))
    code, _, err = run_train(*COMMON, f"--out_dir={out}")
    assert code == 0, err
    return out


# -----------------------------------------------------------------------------
# 1-2. kills and exact resume

def test_resume_is_bit_exact_in_every_stage(baseline, tmp_path):
    # interrupt each stage in turn (stop_after exits right after a checkpoint, as a kill would) and resume with the
    # same command: weights, EMA, critic, optimizers, RNG states and ODE pairs equal the uninterrupted run's
    out = f"--out_dir={tmp_path}"
    for stop in ("teacher:2", "ode_init:1", "self_forcing:2"):
        code, stdout, err = run_train(*COMMON, f"--stop_after={stop}", out)
        assert code == 0 and f"stopping after iteration {stop[-1]}" in stdout, err
    code, stdout, err = run_train(*COMMON, out)
    assert code == 0, err
    assert "[self_forcing] resuming at iteration 2" in stdout, stdout
    kill_resume.assert_same_checkpoints(str(tmp_path), baseline)


def test_stop_after_the_last_iteration_still_saves(tmp_path):
    code, _, err = run_train(*COMMON, "--stop_after=teacher:3", f"--out_dir={tmp_path}")
    ck = torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert code == 0 and ck["iter"] == 3 and not ck["done"], err


def test_kill_9_then_the_same_command_finishes_with_the_same_weights(baseline, tmp_path):
    # two of tests/kill_resume.py's kills: half-way through writing self_forcing.pt, then at a random moment
    out, rng = str(tmp_path), random.Random(0)
    kill_resume.kill_mid_write(out, COMMON, "self_forcing")
    assert kill_resume.check_files(out) == ["self_forcing.pt.tmp"]
    kill_resume.kill_at_random(out, COMMON, "self_forcing", kill_resume.stage_seconds(baseline)["self_forcing"], rng)
    kill_resume.check_files(out)
    kill_resume.finish(out, COMMON)
    kill_resume.assert_same_checkpoints(out, baseline)


@pytest.mark.slow
def test_twenty_four_kills(request):
    needs_slow(request)
    r = subprocess.run([sys.executable, "tests/kill_resume.py"], cwd=ROOT, env=kill_resume.ENV, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    kills = int(re.search(r"(\d+) kills \(", r.stdout).group(1))
    assert kills >= 20, r.stdout


# -----------------------------------------------------------------------------
# 3. untrusted files

class CodeRunningPickle:
    """Unpickled by plain pickle, this would create a file; weights_only=True must refuse to build it."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def write_bad(kind, path, good):
    """Write a bad checkpoint of `kind` at `path`; `good` is a real checkpoint to damage."""
    if kind == "truncated":
        data = open(good, "rb").read()
        open(path, "wb").write(data[:len(data) // 2])
    elif kind == "random bytes":
        open(path, "wb").write(random.Random(0).randbytes(4096))
    elif kind == "empty file":
        open(path, "wb").close()
    elif kind == "code-running pickle":
        torch.save(CodeRunningPickle(str(path) + ".pwned"), path)
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    elif kind == "dict of other things":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        raise ValueError(kind)


UNREADABLE = ["truncated", "random bytes", "empty file", "code-running pickle"]
FOREIGN = ["a list", "dict of other things"]


@pytest.mark.parametrize("kind", UNREADABLE + FOREIGN)
def test_train_names_a_bad_checkpoint_in_one_line(kind, baseline, tmp_path):
    path = tmp_path / "teacher.pt"
    write_bad(kind, path, os.path.join(baseline, "teacher.pt"))
    code, _, err = run_train(*COMMON, f"--out_dir={tmp_path}")
    expected = "cannot read checkpoint" if kind in UNREADABLE else "is not a checkpoint written by train.py"
    assert code != 0 and err.count("\n") == 1 and expected in err and str(path) in err, err
    assert not os.path.exists(str(path) + ".pwned"), "loading the checkpoint ran code"


@pytest.mark.parametrize("kind", UNREADABLE + FOREIGN)
def test_sample_names_a_bad_checkpoint(kind, baseline, tmp_path):
    path = tmp_path / "self_forcing.pt"
    write_bad(kind, path, os.path.join(baseline, "self_forcing.pt"))
    with pytest.raises(sample.SampleError, match=re.escape(str(path))):
        sample.load_model(str(tmp_path))
    assert not os.path.exists(str(path) + ".pwned"), "loading the checkpoint ran code"


def test_a_checkpoint_from_another_config_says_which_keys_differ(baseline, tmp_path):
    shutil.copy(os.path.join(baseline, "teacher.pt"), tmp_path)
    code, _, err = run_train(*COMMON, "--width=64", f"--out_dir={tmp_path}")
    assert code != 0 and "teacher.pt was made for another model (width 32 there, 64 here)" in err, err
    # settings that do not change the weights' shapes: a note naming them, and the run goes on
    code, stdout, err = run_train(*COMMON, "--teacher_lr=0.002", "--stop_after=ode_init:1", f"--out_dir={tmp_path}")
    assert code == 0 and "teacher.pt was written with other settings" in stdout, err
    assert "teacher_lr 0.001 -> 0.002" in stdout, stdout


def test_weights_that_do_not_fit_this_model_py(baseline, tmp_path):
    # what an older model.py leaves behind: a renamed parameter and one of another shape
    ck = torch.load(os.path.join(baseline, "teacher.pt"), weights_only=True)
    ck["ema"]["pos_embed"] = ck["ema"].pop("final.linear.weight")
    torch.save(ck, tmp_path / "teacher.pt")
    code, _, err = run_train(*COMMON, f"--out_dir={tmp_path}")
    assert code != 0 and err.count("\n") == 1 and "teacher.pt does not fit this run" in err, err
    assert "final.linear.weight" in err and "pos_embed" in err, err

    ck = torch.load(os.path.join(baseline, "self_forcing.pt"), weights_only=True)
    ck["ema"]["final.linear.weight"] = ck["ema"]["final.linear.weight"][:, :-1]
    torch.save(ck, tmp_path / "self_forcing.pt")
    with pytest.raises(sample.SampleError, match="does not fit this model.py .*other shape: final.linear.weight"):
        sample.load_model(str(tmp_path))
    ck["model_config"]["new_field"] = 1
    torch.save(ck, tmp_path / "self_forcing.pt")
    with pytest.raises(sample.SampleError, match="model config this model.py cannot build"):
        sample.load_model(str(tmp_path))


# -----------------------------------------------------------------------------
# 4. prompt fuzzing: every string parses, or raises the one ValueError saying what to write. 10,000 strings come from
# one seeded generator (cheap: hypothesis spends about a millisecond per example), 1,000 more from hypothesis.

ERRORS = ("unknown word", "empty prompt", "does not follow the grammar", "two different colours", "longer than")
WORDS = toydata.VOCAB[1:] + list(toydata.SYNONYMS)
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000"]
SPECIAL = ["", " ", "\n", ".", "A", "a.", "\x00", "\ud800", "--", "-", "A red", "color gradient"]
SYNONYMS = {"color": ["color", "colour"],
            "counter-clockwise": ["counter-clockwise", "counterclockwise", "anticlockwise", "anti-clockwise"]}


def respell(rnd, words):
    """Random case, random whitespace, maybe a final full stop: none of it changes what a prompt means."""
    words = ["".join(c.upper() if rnd.random() < 0.5 else c for c in w) for w in words]
    text = "".join(rnd.choice(SPACES) + w for w in words)
    return text + rnd.choice(["", ".", " .", " "])


def near_miss(rnd):
    """A real prompt with one edit: a word dropped, repeated, swapped, replaced, misspelt or punctuated."""
    words = rnd.choice(toydata.ALL_PROMPTS).split()
    i, j = rnd.randrange(len(words)), rnd.randrange(len(words))
    op = rnd.choice(["drop", "repeat", "swap", "replace", "typo", "punctuation"])
    if op == "drop":
        del words[i]
    elif op == "repeat":
        words.insert(i, words[i])
    elif op == "swap":
        words[i], words[j] = words[j], words[i]
    elif op == "replace":
        words[i] = rnd.choice(WORDS)
    elif op == "typo":  # substitute or insert one character, ASCII or any code point
        k = rnd.randrange(len(words[i]) + 1)
        c = chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0x110000)]))
        words[i] = words[i][:k] + c + words[i][k + rnd.randrange(2):]
    else:
        words[i] += rnd.choice(".,;:!?'\"-()")
    return respell(rnd, words)


def same_meaning(rnd):
    """(a canonical prompt, the same prompt respelt with synonyms, other case and spacing)."""
    canonical = rnd.choice(toydata.ALL_PROMPTS)
    return canonical, respell(rnd, [rnd.choice(SYNONYMS.get(w.lower(), [w])) for w in canonical.split()])


FUZZ_KINDS = {
    "any code point": lambda r: "".join(chr(r.randrange(0x110000)) for _ in range(r.randrange(30))),
    "printable ASCII": lambda r: "".join(r.choice(string.printable) for _ in range(r.randrange(60))),
    "vocabulary words": lambda r: " ".join(r.choice(WORDS) for _ in range(r.randrange(12))),
    "near miss": near_miss,
    "same meaning": lambda r: same_meaning(r)[1],
    "very long": lambda r: r.choice(SPACES).join([r.choice(toydata.ALL_PROMPTS)] * r.randrange(2, 40)),
    "near the length limit": lambda r: "".join(chr(r.randrange(32, 0x3000)) for _ in range(r.randrange(250, 400))),
    "special": lambda r: r.choice(SPECIAL),
}


def fuzz_strings(n, seed=0):
    rnd = random.Random(seed)
    kinds = list(FUZZ_KINDS.values())
    return [kinds[i % len(kinds)](rnd) for i in range(n)]


MISSING_RUN = os.path.join(ROOT, "no", "such", "run")


def check_prompt(text):
    """parse_prompt and sample.py (its prompt check and its command line) agree: parsed, or one clear error."""
    try:
        attrs = toydata.parse_prompt(text)
    except ValueError as e:
        msg = str(e)
        # one line; long only when the prompt is (its repr is quoted, at most MAX_PROMPT_CHARS characters)
        assert "\n" not in msg and len(msg) < 12 * toydata.MAX_PROMPT_CHARS + 1000, msg
        assert any(k in msg for k in ERRORS), msg
        with pytest.raises(ValueError, match=re.escape(msg[:60])):
            sample.check_prompts([text])
        attrs = None
    else:
        assert toydata.parse_prompt(toydata.prompt_from_attributes(attrs)) == attrs
        assert toydata.tokenize([text]).shape == (1, toydata.MAX_TEXT_LEN)
    # the command line reports a bad prompt before it looks for a checkpoint (there is none here)
    code, _, err = call_main(sample.main, ["--out_dir", MISSING_RUN, f"--prompt={text}"])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert ("no checkpoint" in err) == (attrs is not None), err
    return attrs


def test_ten_thousand_prompts_parse_or_fail_clearly():
    parsed = sum(check_prompt(text) is not None for text in fuzz_strings(10_000))
    assert 1000 < parsed < 9000, f"{parsed} of 10,000 parsed: the generator should make both kinds"


@settings(max_examples=1000, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.text(),                                                                  # any unicode hypothesis likes
    st.text(st.characters(codec=None, exclude_categories=())),                  # lone surrogates and controls too
    st.text(alphabet=" abcdefghijklmnopqrstuvwxyz-.", max_size=80),             # word-like noise
    st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),                # vocabulary in any order
    st.integers(0, 2 ** 32).map(lambda seed: near_miss(random.Random(seed))),
    st.sampled_from(SPECIAL)))
def test_hypothesis_prompts_parse_or_fail_clearly(text):
    check_prompt(text)


def test_case_spacing_synonyms_and_full_stops_do_not_change_a_prompt():
    rnd = random.Random(1)
    for _ in range(2000):
        canonical, text = same_meaning(rnd)
        assert toydata.parse_prompt(text) == toydata.parse_prompt(canonical), text


@pytest.mark.parametrize("value", [None, 3, b"A red circle moving clockwise", ["A red circle moving clockwise"]])
def test_a_prompt_that_is_not_a_str(value):
    with pytest.raises(TypeError, match="a prompt must be a str"):
        toydata.parse_prompt(value)


# -----------------------------------------------------------------------------
# 5. every command line: a bad argument is one line naming the problem, a non-zero exit, no traceback.
# {run}: a finished micro run; {none}: a folder that does not exist; {file}: a plain file; {junk}: a folder whose
# checkpoints are random bytes; {bad_config}: a config file with a syntax error; {binary}: a file that is not UTF-8.
# evaluate.py and plot.py's expected texts are loose: their messages were still changing when this was written.

CLI_CASES = [
    ("train.py", ["config/micro.py", "--not_a_key=3"], "unknown config key --not_a_key"),
    ("train.py", ["config/micro.py", "--teacher_itres=3"], "did you mean --teacher_iters?"),
    ("train.py", ["config/nope.py"], "config file not found: config/nope.py"),
    ("train.py", ["{bad_config}"], "SyntaxError"),
    ("train.py", ["config/micro.py", "--teacher_iters=abc"], "--teacher_iters: cannot read 'abc' as a int"),
    ("train.py", ["config/micro.py", "--teacher_lr=fast"], "--teacher_lr: cannot read 'fast'"),
    ("train.py", ["config/micro.py", "--compile=1"], "--compile: expected True or False"),
    ("train.py", ["config/micro.py", "--out_dir={train_out}", "--seed"], "--seed needs a value"),
    ("train.py", ["config/micro.py", "--teacher_batch=0"], "teacher_batch must be >= 1, got 0"),
    ("train.py", ["config/micro.py", "--patch=0"], "patch must be >= 1, got 0"),
    ("train.py", ["config/micro.py", "--teacher_iters=-5"], "teacher_iters must be >= 0, got -5"),
    ("train.py", ["config/micro.py", "--cfg_dropout=1.5"], "cfg_dropout must lie in [0, 1], got 1.5"),
    ("train.py", ["config/micro.py", "--teacher_lr=-0.1"], "teacher_lr must be a positive finite number"),
    ("train.py", ["config/micro.py", "--teacher_lr=1e999"], "teacher_lr must be a positive finite number, got inf"),
    ("train.py", ["config/micro.py", "--num_frames=7"], "num_frames 7 is not divisible by chunk 3"),
    ("train.py", ["config/micro.py", "--heads=3"], "width 32 is not divisible by heads 3"),
    ("train.py", ["config/micro.py", "--stop_after=teacher"], "stop_after must look like teacher:N"),
    ("train.py", ["config/micro.py", "--device=gpu"], "device 'gpu' is not available here"),
    ("train.py", ["config/micro.py", "--out_dir={file}"], "cannot create out_dir"),
    ("train.py", ["config/micro.py", "--out_dir={junk}"], "cannot read checkpoint {junk}/teacher.pt"),
    ("sample.py", ["--out_dir", "{none}", "--prompt", PROMPT], "no checkpoint {none}/self_forcing.pt"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--foo"], "unrecognized arguments: --foo"),
    ("sample.py", ["--out_dir", "{run}", "--prompt"], "argument --prompt: expected one argument"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--num_frames", "abc"], "invalid int value: 'abc'"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--num_frames", "0"], "--num_frames must be at least 1"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--num_frames", "7"], "multiple of the chunk size 3"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--num_samples", "0"], "--num_samples must be at least"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--steps", "0"], "--steps must be at least 1"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--guidance", "nan"], "--guidance must be a finite"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--window", "-1"], "--window must be >= 0, got -1"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--seed", "-1"], "--seed must lie in [0, 2**63)"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--model", "nope"], "invalid choice: 'nope'"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--device", "gpu"], "'gpu' is not a device name"),
    ("sample.py", ["--out_dir", "{run}", "--prompts_file", "{none}"], "prompts file not found: {none}"),
    ("sample.py", ["--out_dir", "{run}", "--prompts_file", "{binary}"], "prompts file {binary} is not UTF-8 text"),
    ("sample.py", ["--out_dir", "{run}"], "give --prompt"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", "A red circel moving clockwise"], "unknown word 'circel'"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", ""], "empty prompt"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", "red " * 100], "longer than 300"),
    ("sample.py", ["--out_dir", "{run}", "--prompt", PROMPT, "--save_dir", "{file}/v"], "cannot create {file}/v"),
    ("sample.py", ["--out_dir", "{junk}", "--prompt", PROMPT], "cannot read checkpoint {junk}/self_forcing.pt"),
    ("evaluate.py", ["--out_dir", "{none}"], "no checkpoint {none}/teacher.pt"),
    ("evaluate.py", ["--out_dir", "{junk}"], "cannot read checkpoint {junk}/teacher.pt"),
    ("evaluate.py", ["--out_dir", "{run}", "--videos", "0"], "must be at least 1"),
    ("evaluate.py", ["--out_dir", "{run}", "--repeats", "-1"], "must be at least 1"),
    ("evaluate.py", ["--videos", "abc"], "invalid int value: 'abc'"),
    ("evaluate.py", ["--foo"], "unrecognized arguments: --foo"),
    ("evaluate.py", ["--out_dir"], "expected one argument"),
    ("plot.py", ["{none}"], "{none}"),
    ("plot.py", [], "folder"),
    ("plot.py", ["{run}", "--prompts", "0"], "must be at least 1"),
    ("plot.py", ["{junk}"], "{junk}/log.jsonl"),
    ("plot.py", ["{run}", "--prompts", "abc"], "invalid int value: 'abc'"),
    ("plot.py", ["{run}", "--foo"], "unrecognized arguments: --foo"),
]


@pytest.fixture(scope="module")
def cli_paths(baseline, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    junk = tmp / "junk"
    junk.mkdir()
    for s in STAGES:
        write_bad("random bytes", junk / f"{s}.pt", None)
    (tmp / "a_file").write_text("not a folder\n")
    (tmp / "bad_config.py").write_text("teacher_iters = (\n")
    (tmp / "binary.txt").write_bytes(b"\xff\xfe\x00 not utf-8\n")
    return dict(run=baseline, none=str(tmp / "none"), file=str(tmp / "a_file"), junk=str(junk),
                bad_config=str(tmp / "bad_config.py"), binary=str(tmp / "binary.txt"), train_out=str(tmp / "run"))


def run_cli(script, args, paths, in_process=True):
    args = [a.format(**paths) for a in args]
    if script == "train.py" and not any(a.startswith("--out_dir") for a in args):
        args.append(f"--out_dir={paths['train_out']}")   # never the config's own out_dir (out/micro)
    if not in_process:
        r = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=kill_resume.ENV, capture_output=True,
                           text=True, timeout=300)
        return r.returncode, r.stdout, r.stderr
    if script == "train.py":
        return run_train(*args)
    return call_main(importlib.import_module(script[:-3]).main, args)


@pytest.mark.parametrize("script, args, expected", CLI_CASES)
def test_cli_errors_are_one_line(script, args, expected, cli_paths):
    code, _, err = run_cli(script, args, cli_paths)
    lines = err.strip().splitlines()
    assert code != 0, f"exit code 0 for {script} {args}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(**cli_paths) in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, expected", CLI_CASES)
def test_cli_errors_are_one_line_as_real_processes(script, args, expected, cli_paths, request):
    needs_slow(request)
    code, _, err = run_cli(script, args, cli_paths, in_process=False)
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected.format(**cli_paths) in err, err


# -----------------------------------------------------------------------------
# 6. NaN or inf: training stops with a message, the checkpoint on disk is the last good state, and a re-run resumes

@pytest.mark.parametrize("stage, at, message, done_before", [
    ("teacher", 1, "teacher loss became nan at iteration 1", []),
    ("ode_init", 1, "ode_init loss became nan at iteration 1", ["teacher", "ode_pairs"]),
    ("self_forcing", 2, "self_forcing DMD loss became nan at iteration 2", ["teacher", "ode_pairs", "ode_init"]),
    ("self_forcing", 1, "self_forcing critic loss became nan at iteration 1", ["teacher", "ode_pairs", "ode_init"]),
])
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(stage, at, message, done_before, baseline, tmp_path,
                                                               monkeypatch):
    for s in done_before:
        shutil.copy(os.path.join(baseline, f"{s}.pt"), tmp_path)
    poisoned = []
    real_checkpoint = train.checkpoint

    def checkpoint(name, it, total, state_fn):  # once `stage` has saved after `at` iterations, every output is NaN
        real_checkpoint(name, it, total, state_fn)
        if name == stage and it + 1 == at:
            poisoned.append(True)
    monkeypatch.setattr(train, "checkpoint", checkpoint)
    for method in ("forward", "forward_chunk"):
        def nan_once_poisoned(self, *a, _real=getattr(CausalDiT, method), **kw):
            out = _real(self, *a, **kw)
            return out * math.nan if poisoned else out
        monkeypatch.setattr(CausalDiT, method, nan_once_poisoned)
    code, _, err = run_train(*COMMON, f"--out_dir={tmp_path}")
    assert code == 1 and message in err and f"{stage}.pt keeps the last good state" in err, err
    ck = torch.load(tmp_path / f"{stage}.pt", weights_only=True)
    assert ck["iter"] == at and not ck["done"] and train.all_finite(ck)
    monkeypatch.undo()
    code, stdout, err = run_train(*COMMON, f"--out_dir={tmp_path}")
    assert code == 0 and f"[{stage}] resuming at iteration {at}" in stdout, err
    kill_resume.assert_same_checkpoints(str(tmp_path), baseline)


def test_an_infinite_gradient_norm_stops_before_the_step(tmp_path, monkeypatch):
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def clip(*a, **kw):
        calls.append(1)
        norm = real_clip(*a, **kw)
        return norm * math.inf if len(calls) == 2 else norm
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    code, _, err = run_train(*COMMON, f"--out_dir={tmp_path}")
    assert code == 1 and "teacher gradient norm became inf at iteration 1" in err, err
    ck = torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert ck["iter"] == 1 and train.all_finite(ck)


def test_a_state_with_nan_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "out_dir", str(tmp_path))
    with pytest.raises(SystemExit, match="not saving .*teacher.pt: model hold NaN or inf"):
        train.save_ckpt("teacher", dict(model={"w": torch.tensor([1.0, math.nan])}, iter=3, done=False))
    assert os.listdir(tmp_path) == []


# -----------------------------------------------------------------------------
# 7. torchrun: two CPU processes (gloo), each with half of every batch, train what one process trains

def test_two_processes_train_what_one_process_trains(baseline, tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py", *COMMON, f"--out_dir={tmp_path}"], cwd=ROOT, env=kill_resume.ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("all stages done") == 1, "only rank 0 prints"
    for s in STAGES:
        a = dict(kill_resume._flat(torch.load(tmp_path / f"{s}.pt", weights_only=True)))
        b = dict(kill_resume._flat(torch.load(os.path.join(baseline, f"{s}.pt"), weights_only=True)))
        for k, v in a.items():
            if torch.is_tensor(v) and v.is_floating_point():
                # float sums run in another order over two processes: equal to float32 rounding, not bit for bit.
                # Adam divides each gradient by its running RMS, so where a gradient is tiny (a weight whose
                # exp_avg_sq is 5e-11) the rounding grows: 1.8e-5 measured on one patch_embed weight after 3 steps.
                # The ODE pairs are stored in float16: two of its roundings.
                tol = 2e-3 if v.dtype == torch.float16 else 5e-5
                torch.testing.assert_close(v.float(), b[k].float(), atol=tol, rtol=tol, msg=f"{s}.pt {k}")
            elif not k.startswith(".config."):
                assert (torch.equal(v, b[k]) if torch.is_tensor(v) else v == b[k]), f"{s}.pt {k}"
