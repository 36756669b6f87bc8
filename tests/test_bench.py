"""bench.py: the benchmark table is produced from real timings on the micro model, and bad input is one line."""
import re

import bench
from conftest import run_py


def test_bench_table_on_fresh_micro_weights(capsys):
    rows = bench.main(["--config", "config/micro.py", "--repeats", "1", "--batch", "3"])
    out = capsys.readouterr().out
    for length in (6, 12, 24):                       # 1x, 2x and 4x the micro training length
        assert f"KV cache vs recompute, {length} frames" in rows
    assert "batch 3, per video: KV cache vs recompute, 24 frames" in rows
    assert "batch 3, per video: student vs teacher, 6 frames" in rows
    for name, (value, ratio) in rows.items():
        assert name in out and value in out, name
    ms = [float(x) for x in re.findall(r"([\d.]+) ms", " ".join(v for v, _ in rows.values()))]
    assert ms and all(x > 0 for x in ms), "every timing is a positive number of milliseconds"
    flops = rows["teacher step: counted FLOPs / time vs matmul ceiling"]
    achieved, ceiling = (float(x) for x in re.findall(r"([\d.]+) (?:vs|GFLOP/s)", flops[0])[:2])
    assert achieved > 0 and ceiling > 0
    start, end = (float(x) for x in re.search(r"ceiling at start / end ([\d.]+) / ([\d.]+)", flops[0]).groups())
    assert ceiling == max(start, end), ("the share is taken of the faster ceiling", flops)
    assert abs(float(flops[1].rstrip("%")) - 100 * achieved / ceiling) <= 1, flops
    (name, (rates, ratio)), = [(k, v) for k, v in rows.items() if k.startswith("q/k/v matmul")]
    small, large = (float(x) for x in re.findall(r"([\d.]+) (?:vs|GFLOP/s)", rates)[:2])
    assert small > 0 and large > 0, (name, rates)
    assert abs(float(ratio.rstrip("x")) - small / large) < 0.01 + 0.01 * small / large, (name, rates, ratio)


def test_bench_errors_are_one_line(tmp_path):
    r = run_py("bench.py", "--out_dir", str(tmp_path))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    r = run_py("bench.py", "--repeats", "x")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    r = run_py("bench.py", "--config", "config/micro.py", "--batch", "0")
    assert r.returncode != 0 and "--batch must be at least 1" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_py("bench.py", "--config", str(tmp_path / "nope.py"))
    assert r.returncode != 0 and "no config file" in r.stderr and "Traceback" not in r.stderr, r.stderr
