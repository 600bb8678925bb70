"""`python -m pysample bench`: every op is timed against transformers, the JSON, the plot and the comparison."""

from __future__ import annotations

import json
import math
import sys

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


# Two quick cases, one from the batch x vocab grid and the KV-cache reorder, at tiny shapes.
TINY = ["--device", "cpu", "--batch", "2", "--vocab", "300", "--seq", "8", "--min-time", "0", "--max-runs", "5"]
TINY += ["--ops", "top_p,kv_reorder"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_default_out_folder_is_made_and_holds_both_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert bench.main(TINY) == 0
    out_dir = tmp_path / bench.OUT_DIR
    assert sorted(p.name for p in tmp_path.iterdir()) == [bench.OUT_DIR]  # nothing else in the current directory
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([bench.JSON_NAME, bench.PLOT_NAME])
    results = json.loads((out_dir / bench.JSON_NAME).read_text())["results"]
    assert [r["op"] for r in results] == ["top_p", "kv_reorder"]
    assert (out_dir / bench.PLOT_NAME).read_bytes()[:8] == PNG
    out = capsys.readouterr().out
    assert f"wrote {out_dir / bench.JSON_NAME} and {out_dir / bench.PLOT_NAME}" in out

    assert bench.main(TINY + ["--out", "a/b"]) == 0  # a nested --out, made with its parents
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == sorted([bench.JSON_NAME, bench.PLOT_NAME])


def test_explicit_json_and_plot_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert bench.main(TINY + ["--json", "r.json", "--plot", "figs/p.png"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["op"] == "top_p"
    assert (tmp_path / "figs" / "p.png").read_bytes()[:8] == PNG
    assert not (tmp_path / bench.OUT_DIR).exists()  # --out unused when both files are named
    assert f"wrote {tmp_path / 'r.json'} and {tmp_path / 'figs' / 'p.png'}" in capsys.readouterr().out

    assert bench.main(TINY + ["--plot", ""]) == 0  # no plot; the JSON in the default folder
    assert sorted(p.name for p in (tmp_path / bench.OUT_DIR).iterdir()) == [bench.JSON_NAME]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["p.png"]
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / bench.OUT_DIR / bench.JSON_NAME}\n" in out and ".png" not in out


def test_compare_plots_the_saved_run_beside_this_one(tmp_path, monkeypatch):
    drawn = []  # what each plot() call drew, read back from its figure

    def spy(*args, **kwargs):
        drawn.append(real_plot(*args, **kwargs))
        return drawn[-1]

    real_plot = bench.plot
    monkeypatch.setattr(bench, "plot", spy)
    monkeypatch.chdir(tmp_path)
    assert bench.main(TINY + ["--out", "before"]) == 0
    (before,) = drawn
    now = json.loads((tmp_path / "before" / bench.JSON_NAME).read_text())["results"]
    assert before == {"this run": [r["speedup"] for r in now]}

    # A saved run with known speed-ups, without the kv_reorder case, to tell its bars from this run's.
    saved = json.loads((tmp_path / "before" / bench.JSON_NAME).read_text())
    saved["meta"]["date"] = "2020-01-02T03:04:05"
    saved["results"] = [dict(saved["results"][0], speedup=123.0)]
    (tmp_path / "saved.json").write_text(json.dumps(saved))
    assert bench.main(TINY + ["--out", "after", "--compare", "saved.json"]) == 0
    after = drawn[1]
    now = json.loads((tmp_path / "after" / bench.JSON_NAME).read_text())["results"]
    label = "saved: saved.json (2020-01-02T03:04:05)"
    assert sorted(after) == sorted(["this run", label])
    assert after["this run"] == [r["speedup"] for r in now]
    assert after[label][0] == 123.0 and math.isnan(after[label][1])  # no bar where the saved run lacks the case
    png = (tmp_path / "after" / bench.PLOT_NAME).read_bytes()
    assert png[:8] == PNG and png != (tmp_path / "before" / bench.PLOT_NAME).read_bytes()


def test_plot_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    monkeypatch.chdir(tmp_path)
    assert bench.main(TINY) == 0
    assert sorted(p.name for p in (tmp_path / bench.OUT_DIR).iterdir()) == [bench.JSON_NAME]
    assert "(no plot: matplotlib is not installed)" in capsys.readouterr().out
