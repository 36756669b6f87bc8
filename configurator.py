"""
The tiny config mechanism: nanoGPT's idea (module globals + override files + --key=value), hardened.

A script defines its defaults as plain module globals, then calls

    configure(globals(), sys.argv[1:])

Arguments are read left to right:
    config/tiny.py          a python file of overrides (it may only assign keys that already exist)
    --key=value             an override; also  --key value  (two words)
Values are parsed with ast.literal_eval, so 1e-3, 3, True, None, (1, 2) work; a value that is not a python
literal (a word, a sentence with spaces, a path with '=') is kept as a string when the default is a string.
nanoGPT's version breaks on `--prompt "a red circle"` (spaces), `--lr=1` (an int where a float is expected)
and values that contain '=': those three cases are tests here.
"""
import ast
import os


class ConfigError(ValueError):
    """A bad config file or override. Scripts print its message on one line and exit non-zero."""


def _known_keys(g):
    # a config key is a module global with a plain value: not a module, function, class, or _private name
    plain = (int, float, bool, str, type(None), tuple, list)
    return {k for k, v in g.items() if not k.startswith("_") and isinstance(v, plain)}


def _coerce(key, default, value):
    """Convert `value` (a string from the command line, or a python object from a file) to the default's type."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ConfigError(f"--{key}: cannot read {value!r} as a {type(default).__name__} "
                              f"(default is {default!r})") from None
    if default is None or value is None:
        return value                                   # None means 'unset / any type'
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"--{key}: expected True or False, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)                            # --lr=1 means 1.0
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(default)(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"--{key}: expected a {type(default).__name__} like {default!r}, got {value!r}")
    return value


def configure(g, argv):
    """Apply override files and --key=value arguments to the globals dict `g`, in place. Returns the overrides."""
    keys = _known_keys(g)
    applied = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            # a config file: run it in a scratch namespace seeded with the current values, keep its assignments
            if not os.path.isfile(arg):
                raise ConfigError(f"config file not found: {arg} (try one of config/*.py)")
            scope = {k: g[k] for k in keys}
            try:
                with open(arg) as f:
                    exec(compile(f.read(), arg, "exec"), {}, scope)
            except Exception as e:  # a broken config file is the user's, say where it is
                raise ConfigError(f"{arg}: {type(e).__name__}: {e}") from None
            for k, v in scope.items():
                if k.startswith("_") or (k in g and v is g[k]):
                    continue
                if k not in keys:
                    raise ConfigError(f"{arg}: unknown config key '{k}' (known: {', '.join(sorted(keys))})")
                try:
                    g[k] = applied[k] = _coerce(k, g[k], v)
                except ConfigError as e:  # say which file holds the bad value
                    raise ConfigError(f"{arg}: {e}") from None
            i += 1
            continue
        body = arg[2:]
        if "=" in body:
            key, value = body.split("=", 1)            # split once: values may contain '='
            i += 1
        else:
            key = body
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value (--{key}=VALUE or --{key} VALUE)")
            value = argv[i + 1]
            i += 2
        if key not in keys:
            import difflib
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key --{key}{hint}")
        g[key] = applied[key] = _coerce(key, g[key], value)
    return applied
