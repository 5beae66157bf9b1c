"""plot.py on a finished dry run: every figure is written as a real PNG of the promised size, and
a run without diagnostics.json gets them computed first."""
import shutil
import struct

import pytest

import plot


def png_size(path):
    """(width, height) from a PNG's header: the 8-byte signature, then the IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def test_every_figure_is_a_png_of_the_figure_size(diagnosed_run, tmp_path):
    paths = plot.main([str(diagnosed_run[0]), "--out", str(tmp_path / "figures")])
    assert set(paths) == {"curves", "per_class", "weights", "weights_epochs"}
    for path in paths.values():
        assert png_size(path) == (plot.FIGSIZE[0] * plot.DPI, plot.FIGSIZE[1] * plot.DPI)
        assert 5_000 < (tmp_path / "figures" / path.split("/")[-1]).stat().st_size < 200_000


def test_a_run_without_diagnostics_gets_them_computed_first(diagnosed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(diagnosed_run[0], run, ignore=shutil.ignore_patterns("diagnostics.json"))
    paths = plot.main([str(run)])  # --out defaults to the run folder
    assert (run / "diagnostics.json").exists()
    assert all(p.startswith(str(run)) and png_size(p)[0] == 800 for p in paths.values())


def test_the_asymmetry_map_is_drawn_from_a_studies_csv(tmp_path):
    import csv
    import studies
    rows = [{"study": "asymmetry", "row": f"{rule}_{k}{n or ''}", "label": "", "seed": s,
             "clip_acc@1": 50 + s + n, "video_acc@1": 50} for k, n in studies.STEPS for rule in studies.RULES
            for s in (0, 1)]
    path = tmp_path / "studies.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = plot.main(["--asymmetry", "--csv", str(path), "--out", str(tmp_path)])["asymmetry"]
    assert png_size(out) == (plot.FIGSIZE[0] * plot.DPI, plot.FIGSIZE[1] * plot.DPI)
    with pytest.raises(SystemExit, match="no .*studies.py report"):
        plot.main(["--asymmetry", "--csv", str(tmp_path / "missing.csv")])
