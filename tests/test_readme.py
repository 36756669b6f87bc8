"""README.md is the lecture, so it must stay true: its Python runs as written, its commands name real scripts and
real flags, its first two commands are the ones users and CI run, the functions it tells you to read exist, its file
list matches the repo, and its pictures exist, are small and say which command made them.

Python blocks run one by one, each in a fresh namespace with a temporary folder as the working directory (so a block
that writes assets/masks.png does not touch the repo's copy). A block that reads a trained run names it as a user
would, "out/tiny"; here that path is replaced by the micro run of conftest.py, which learns nothing but has every
checkpoint. A line `print(expr)  # -> text` must print exactly `text`.
"""
import argparse
import ast
import contextlib
import functools
import glob
import io
import os
import re
import runpy
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, ROOT)   # the README's blocks import the repo's modules, as they do at the repo root
import toydata  # noqa: E402
import train  # noqa: E402
from configurator import ConfigError, configure  # noqa: E402

README = os.path.join(ROOT, "README.md")
FIRST_COMMANDS = ["pip install -r requirements.txt && python train.py config/tiny.py",
                  "pip install -r requirements.txt && python -m pytest -q"]
SECTIONS = ["toydata.py", "model.py", "train.py", "sample.py", "evaluate.py", "plot.py", "configurator.py"]
INPUT_FILE_FLAGS = {"--prompts_file"}   # flags whose value is a file that must exist in the repo


def read_readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


TEXT = read_readme()
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def fenced_blocks(lang):
    """[(line number of the block's first code line, code)] for every ```lang block."""
    return [(TEXT[:m.start(2)].count("\n") + 1, m.group(2)) for m in FENCE.finditer(TEXT) if m.group(1) == lang]


def prose():
    """The README with every fenced block blanked out (line numbers kept): what a reader sees as text."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), TEXT)


def line_of(text, pos):
    return text[:pos].count("\n") + 1


# -----------------------------------------------------------------------------
# 1. Every ```python block runs as written

CHECKED_PRINT = re.compile(r"^(?P<indent>\s*)print\((?P<expr>.*)\)\s*#\s*->\s?(?P<want>.*?)\s*$")


def _expect(values, want, line):
    got = " ".join(map(str, values))                  # what print(*values) writes
    assert got == want, f"README.md line {line}: this prints {got!r}, the README says {want!r}"
    return values


def with_output_checks(code, first_line):
    """Turn each `print(expr)  # -> text` into a print that also asserts its output is `text` (lines stay put)."""
    out = []
    for i, line in enumerate(code.splitlines()):
        m = CHECKED_PRINT.match(line)
        if m:
            line = f"{m['indent']}print(*_readme_expect(({m['expr']},), {m['want']!r}, {first_line + i}))"
        else:
            assert "# ->" not in line, (f"README.md line {first_line + i}: write an expected output as "
                                        f"`print(expr)  # -> output`, got {line.strip()!r}")
        out.append(line)
    return "\n".join(out)


PY_BLOCKS = fenced_blocks("python")


def test_the_readme_has_python_to_run_and_outputs_to_check():
    assert len(PY_BLOCKS) >= 5, f"only {len(PY_BLOCKS)} ```python blocks found: is the fence regex still right?"
    checked = sum(bool(CHECKED_PRINT.match(line)) for _, code in PY_BLOCKS for line in code.splitlines())
    assert checked >= 5, f"only {checked} `print(...)  # -> output` lines: the output checks are not running"


@pytest.mark.parametrize("first_line,code", PY_BLOCKS, ids=[f"line{n}" for n, _ in PY_BLOCKS])
def test_python_block_runs(first_line, code, request, tmp_path, monkeypatch):
    if "out/tiny" in code:   # a trained run: the session's micro run stands in for the user's out/tiny
        out, _ = request.getfixturevalue("micro_run")
        code = code.replace("out/tiny", out.replace("\\", "/"))
    source = "\n" * (first_line - 1) + with_output_checks(code, first_line)   # tracebacks point at README lines
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(ROOT)
    exec(compile(source, README, "exec"), {"__name__": "__readme__", "_readme_expect": _expect})


# -----------------------------------------------------------------------------
# 2. Commands: the first two are what users and CI run; every `python X.py ...` names a real script and real flags

def _clean(line):
    """A shell line without its comment, with single spaces: 'a  b   # c' -> 'a b'."""
    return " ".join(shlex.split(line, comments=True))


def test_first_two_commands_are_what_users_and_ci_run():
    first_line, code = fenced_blocks("bash")[0]
    assert first_line < TEXT.index("\n## "), "the install-and-run commands must come before the first section"
    lines = [_clean(line) for line in code.splitlines() if _clean(line)]
    assert lines[:2] == FIRST_COMMANDS, f"the README's first two commands changed: {lines[:2]}"
    intro = TEXT[:TEXT.index("\n## ")]
    assert "CPU build" in intro, "the note about PyTorch's CPU build went missing"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [_clean(line) for line in f]
    test_command = FIRST_COMMANDS[1].split(" && ")[1]
    assert test_command in ci, f".ci/run no longer runs the README's test command {test_command!r}"
    assert any("pip install" in c and "-r requirements.txt" in c for c in ci), ".ci/run does not install requirements.txt"


def command_lines():
    """(README line, shell line) for every line of every ```bash block and every inline `python ...` span."""
    found = []
    for first_line, code in fenced_blocks("bash"):
        for i, line in enumerate(code.replace("\\\n", " ").splitlines()):
            if line.strip() and not line.strip().startswith("#"):
                found.append((first_line + i, line))
    text = prose()
    for m in re.finditer(r"`((?:python3?|torchrun) [^`\n]+)`", text):
        found.append((line_of(text, m.start()), m.group(1)))
    return found


def simple_commands(line):
    """'a x && b y | c  # note' -> [['a', 'x'], ['b', 'y'], ['c']], leading VAR=value assignments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands, current = [], []
    for token in lex:
        if token in ("&&", "||", "|", ";", "&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    for c in commands:
        while c and re.match(r"^[A-Za-z_]\w*=", c[0]):    # OMP_NUM_THREADS=1 python ...
            c.pop(0)
    return [c for c in commands if c]


def script_call(tokens):
    """(script, its arguments, processes) if the command runs a repo script with python or torchrun, else None."""
    if tokens[0] in ("python", "python3") and len(tokens) > 1:
        if tokens[1].endswith(".py"):
            return tokens[1], tokens[2:], 1
        if tokens[1:3] != ["-m", "torch.distributed.run"]:
            return None                                   # python -m pytest and the like
        tokens = tokens[2:]
    if tokens[0] in ("torchrun", "torch.distributed.run"):
        nproc = 1
        for i, t in enumerate(tokens[1:], 1):
            if t.startswith("--nproc_per_node"):
                nproc = int(t.split("=", 1)[1] if "=" in t else tokens[i + 1])
            if t.endswith(".py"):
                return t, tokens[i + 1:], nproc
    return None


class _Parser(Exception):
    pass


@functools.lru_cache(maxsize=None)
def script_parser(script):
    """The argparse parser a script builds when run as a program: run it as __main__ until it calls parse_args."""
    original, argv = argparse.ArgumentParser.parse_args, sys.argv

    def grab(self, *args, **kwargs):
        raise _Parser(self)
    argparse.ArgumentParser.parse_args = grab
    sys.argv = [script]
    try:
        runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    except _Parser as e:
        return e.args[0]
    finally:
        argparse.ArgumentParser.parse_args, sys.argv = original, argv
    raise AssertionError(f"{script} never parsed its command line: how does it take arguments?")


@contextlib.contextmanager
def at_repo_root(world_size=1):
    cwd, env = os.getcwd(), os.environ.get("WORLD_SIZE")
    os.chdir(ROOT)
    os.environ["WORLD_SIZE"] = str(world_size)
    try:
        yield
    finally:
        os.chdir(cwd)
        if env is None:
            del os.environ["WORLD_SIZE"]
        else:
            os.environ["WORLD_SIZE"] = env


def check_train_args(args, nproc):
    """train.py takes config files and --key=value: apply them to train.py's defaults, then its own checks."""
    config = {k: getattr(train, k) for k in train._CONFIG_KEYS}
    with at_repo_root(nproc):
        try:
            configure(config, args)
        except ConfigError as e:
            raise AssertionError(str(e)) from None
        try:
            train.check_config(config)
        except SystemExit as e:
            raise AssertionError(str(e)) from None


def check_script_args(script, args):
    parser = script_parser(script)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parsed = argparse.ArgumentParser.parse_args(parser, args)
        except SystemExit:
            raise AssertionError(err.getvalue().strip()) from None
    for token in args:   # exact names: argparse would also take an abbreviation, which breaks when a flag is added
        flag = token.split("=", 1)[0]
        assert not flag.startswith("--") or flag in parser._option_string_actions, f"{script} has no flag {flag}"
    for flag in INPUT_FILE_FLAGS:
        value = getattr(parsed, flag.lstrip("-"), None)
        if value:
            assert os.path.isfile(os.path.join(ROOT, value)), f"{flag} {value}: no such file in the repo"
    for prompt in getattr(parsed, "prompt", None) or []:
        toydata.parse_prompt(prompt)   # a prompt the grammar rejects raises ValueError naming the word


def test_every_command_names_a_real_script_and_real_flags():
    checked = []
    for line, shell_line in command_lines():
        for tokens in simple_commands(shell_line):
            call = script_call(tokens)
            if call is None:
                continue
            script, args, nproc = call
            where = f"README.md line {line}: {shell_line.strip()!r}"
            assert os.path.isfile(os.path.join(ROOT, script)), f"{where}: there is no {script}"
            try:
                if script == "train.py":
                    check_train_args(args, nproc)
                else:
                    check_script_args(script, args)
            except (AssertionError, ValueError) as e:
                raise AssertionError(f"{where}: {e}") from None
            checked.append(script)
    for script in ("train.py", "sample.py", "evaluate.py", "plot.py", "toydata.py"):
        assert script in checked, f"no command runs {script}: did the command parsing break?"


# -----------------------------------------------------------------------------
# 3. Names the README tells you to read exist, by those names

def definitions(path):
    """Every name a reader can find in a file: functions, classes, module globals, and Class.method / Class.field."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        for target in (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, ast.AnnAssign) else []):
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(f"{node.name}.{item.target.id}")
    return names


def test_the_functions_to_read_exist():
    sections = list(re.finditer(r"^### \d+\. .*\(`([\w/]+\.py)`\)\s*$", TEXT, re.M))
    assert [m.group(1) for m in sections] == SECTIONS, "the walk through the files changed its files or order"
    for i, m in enumerate(sections):
        end = sections[i + 1].start() if i + 1 < len(sections) else TEXT.index("\n## ", m.end())
        body = TEXT[m.end():end]
        reads = re.findall(r"^\*\*Read:\*\*(.*?)(?:\n\n|\Z)", body, re.M | re.S)
        assert reads, f"section {m.group(1)} has no **Read:** line naming the functions to read"
        known = definitions(os.path.join(ROOT, m.group(1)))
        for name in re.findall(r"`([^`]+)`", " ".join(reads)):
            assert name in known, f"README tells the reader to read `{name}` in {m.group(1)}, which has no such name"


def test_code_names_in_the_text_exist():
    # in the prose: `Class.method` and `function(...)` must be defined in a .py file of the repo, and a bare
    # `snake_case` or `UPPER_CASE` name (a function, constant, config key or argument) must occur in one
    paths = glob.glob(os.path.join(ROOT, "*.py"))
    known = set().union(*(definitions(p) for p in paths))
    code = ""
    for p in paths:
        with open(p, encoding="utf-8") as f:
            code += f.read()
    text = prose()
    for m in re.finditer(r"`([A-Z]\w*\.\w+|[A-Za-z_]\w*)\([^`]*\)`|`([A-Z]\w*\.[a-z_]\w*)`", text):
        name = m.group(1) or m.group(2)
        assert name in known, f"README.md line {line_of(text, m.start())}: `{name}` is not defined in any .py file"
    for m in re.finditer(r"`([A-Za-z]\w*_\w*)`", text):
        assert re.search(rf"\b{m.group(1)}\b", code), \
            f"README.md line {line_of(text, m.start())}: `{m.group(1)}` occurs in no .py file"


# -----------------------------------------------------------------------------
# 4. The file list is the repo

def test_the_file_list_is_true():
    files = TEXT[TEXT.index("\n## Files"):]
    block = FENCE.search(files)
    assert block, "no file list under ## Files"
    listed = [line.split()[0] for line in block.group(2).splitlines() if line.strip()]
    missing = [p for p in listed if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing, f"the README lists files that do not exist: {missing}"
    code = [os.path.relpath(p, ROOT).replace(os.sep, "/") for pattern in ("*.py", "config/*.py", "tests/*.py")
            for p in glob.glob(os.path.join(ROOT, pattern))]
    unlisted = sorted(set(code) - set(listed))
    assert not unlisted, f"add a line for each of these to the README's file list: {unlisted}"


# -----------------------------------------------------------------------------
# 5. Pictures: in the repo, small, and each says which command made it

IMAGE = re.compile(r"!\[[^\]]*\]\(\s*([^)\s]+)[^)]*\)|<img\b[^>]*\bsrc=\"([^\"]+)\"")


def git_ignored(path):
    try:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True).returncode == 0
    except OSError:                          # no git here: the existence check still holds
        return False


def test_images_exist_are_small_and_say_which_command_made_them():
    text = prose()
    lines = text.splitlines()
    images = [(line_of(text, m.start()), m.group(1) or m.group(2)) for m in IMAGE.finditer(text)]
    assert len(images) >= 5, f"only {len(images)} images found: is the image regex still right?"
    for line, path in images:
        where = f"README.md line {line}: {path}"
        assert "://" not in path, f"{where}: pictures must be files in the repo, made by its commands"
        full = os.path.join(ROOT, path)
        assert os.path.isfile(full), f"{where} does not exist: regenerate it with the command under it"
        size = os.path.getsize(full)
        assert size < 1_000_000, f"{where} is {size:,} bytes; keep README pictures well under 1 MB"
        assert not git_ignored(path), f"{where} is git-ignored, so it is not in the repo"
        caption = " ".join(lines[line:line + 4])   # the few lines under the picture
        assert re.search(r"`(python3? |torchrun )", caption), f"{where}: say under it which command made it"
