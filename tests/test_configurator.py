"""The config mechanism: the cases that break nanoGPT's configurator, and clear errors."""
import pytest

from configurator import ConfigError, configure


def defaults():
    return dict(lr=1e-3, iters=100, name="run", flag=False, maybe=None, prompt="x", shape=(1, 2))


def test_key_value_and_two_word_forms():
    g = defaults()
    configure(g, ["--iters=5", "--name", "abc"])
    assert g["iters"] == 5 and g["name"] == "abc"


def test_int_where_float_expected_becomes_float():
    g = defaults()
    configure(g, ["--lr=1"])
    assert g["lr"] == 1.0 and isinstance(g["lr"], float)


def test_values_with_spaces_and_equals_signs():
    g = defaults()
    configure(g, ["--prompt", "a red circle", "--name=a=b=c"])
    assert g["prompt"] == "a red circle"
    assert g["name"] == "a=b=c"


def test_bool_none_and_tuple():
    g = defaults()
    configure(g, ["--flag=True", "--maybe=3", "--shape=(3, 4)"])
    assert g["flag"] is True and g["maybe"] == 3 and g["shape"] == (3, 4)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown config key --itres.*--iters"):
        configure(defaults(), ["--itres=3"])


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="iters"):
        configure(defaults(), ["--iters=abc"])
    with pytest.raises(ConfigError, match="True or False"):
        configure(defaults(), ["--flag=1"])


def test_missing_value():
    with pytest.raises(ConfigError, match="needs a value"):
        configure(defaults(), ["--iters"])


def test_config_file_overrides_and_rejects_unknown_keys(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("iters = 7\nlr = 2  # int for a float key\n_helper = 3\n")
    g = defaults()
    assert configure(g, [str(good), "--iters=9"]) == {"iters": 9, "lr": 2.0}
    assert g["iters"] == 9   # later arguments win
    bad = tmp_path / "bad.py"
    bad.write_text("itters = 7\n")
    with pytest.raises(ConfigError, match="unknown config key 'itters'"):
        configure(defaults(), [str(bad)])
    with pytest.raises(ConfigError, match="config file not found"):
        configure(defaults(), [str(tmp_path / "nope.py")])


def test_bad_values_in_files_and_empty_values_name_where_they_are(tmp_path):
    typed = tmp_path / "typed.py"
    typed.write_text("iters = 2.5\n")
    with pytest.raises(ConfigError, match=f"{typed}: --iters: expected a int like 100, got 2.5"):
        configure(defaults(), [str(typed)])
    latin1 = tmp_path / "latin1.py"
    latin1.write_bytes(b"name = '\xe9'\n")
    with pytest.raises(ConfigError, match=f"{latin1}: UnicodeDecodeError"):
        configure(defaults(), [str(latin1)])
    with pytest.raises(ConfigError, match="--iters: cannot read ''"):
        configure(defaults(), ["--iters="])
    with pytest.raises(ConfigError, match="unknown config key --iters-max"):
        configure(defaults(), ["--iters-max=3"])
