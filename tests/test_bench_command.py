"""`python -m pysample bench`: every op is timed against transformers, the JSON, the plot and the comparison."""

from __future__ import annotations

import json

import pytest

from pysample import bench


def test_bench_times_every_op_and_compares(tmp_path, capsys):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    plot = tmp_path / "plot.png"
    common = ["--device", "cpu", "--batch", "2", "--vocab", "300", "--seq", "8", "--min-time", "0", "--max-runs", "5"]
    assert bench.main(common + ["--json", str(first), "--plot", str(plot)]) == 0
    results = json.loads(first.read_text())["results"]
    assert sorted(r["op"] for r in results) == sorted(bench.OPS)
    for r in results:
        assert r["transformers_s"] > 0 and r["pysample_s"] > 0
        assert abs(r["speedup"] - r["transformers_s"] / r["pysample_s"]) < 1e-9 * r["speedup"]
        assert r["runs"] == [5, 5]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    capsys.readouterr()
    assert (
        bench.main(common + ["--ops", "top_p,kv_reorder", "--json", str(second), "--plot", "", "--compare", str(first)])
        == 0
    )
    out = capsys.readouterr().out
    assert "saved speed-up | now / saved |" in out
    rows = [line for line in out.splitlines() if line.startswith("| top_p ") or line.startswith("| kv_reorder ")]
    assert len(rows) == 2 and all(line.count("x |") == 3 for line in rows), rows


def test_unknown_op_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit:
        bench.main(["--ops", "top_q"])
    assert exit.value.code == 2
    assert "unknown ops ['top_q']" in capsys.readouterr().err
