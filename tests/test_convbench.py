"""`make bench` (tsmigrate_tools.convbench) end to end at a small size: it runs at two densities, N and 10N, every
figure stands beside its limit measured in the same run, the conversions carry every row, the application's writers
lose none, and the README's table is regenerated from the JSON. The ratios are the benchmark's to judge, not this
test's (a timing here would be noise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tsmigrate_tools.convbench import MARKER, write_readme

PROJECT = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_at_two_densities_at_n_and_10n_and_no_row_is_lost(tmp_path):
    out, readme = tmp_path / "bench.json", tmp_path / "README.md"
    readme.write_text(f"# title\n\n{MARKER}\nold table\n{MARKER}\n\nafter\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tsmigrate_tools.convbench",
            *("--rows", "20000", "--interval", "60,10", "--tenfold", "--insert-rows", "2000"),
            *("--json", str(out), "--readme", str(readme)),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(out.read_text())
    figures = {(f["figure"], f["interval_s"], f["size"]): f for f in record["figures"]}
    for interval_s in (60, 10):
        for size in ("N", "10N"):
            for path in ("offline", "online"):
                f = figures[(f"{path} conversion", interval_s, size)]
                assert f["limit"].startswith("plain copy (CREATE TABLE AS") and f["limit_seconds"] > 0
                assert f["allowed_ratio"] == 1.5 and f["ratio"] == pytest.approx(f["seconds"] / f["limit_seconds"], 0.1)
                # every legacy row, plus those the application wrote before the conversion counted them; none lost
                assert f["writer_rows"] > 0 and f["rows_lost"] == 0, f
                assert f["legacy_rows"] <= f["rows"] <= f["legacy_rows"] + f["writer_rows"], f
            wait = figures[("application's longest wait through the online conversion", interval_s, size)]
            assert wait["limit_seconds"] == 1.0 and wait["rows_lost"] == 0
            lock = figures[("swap lock", interval_s, size)]
            assert lock["limit"] == "fixed bound" and lock["limit_seconds"] == 0.3 and lock["swap_attempts"] >= 1
        for what, bound in (("offline", 10.5), ("online", 10.5), ("plain copy", None)):
            growth = figures[
                (
                    f"{what} conversion, 10N against N" if what != "plain copy" else "plain copy, 10N against N",
                    interval_s,
                    "10N/N",
                )
            ]
            assert (
                growth["allowed_ratio"] == bound
                and growth["rows"] > 9 * figures[("offline conversion", interval_s, "N")]["legacy_rows"]
            )
    # where each conversion's time goes, phase by phase, at each density and size
    profiles = {(p["path"], p["interval_s"], p["size"]): p["phases"] for p in record["profiles"]}
    for key in [(path, i, size) for path in ("offline", "online") for i in (60, 10) for size in ("N", "10N")]:
        assert {"chunks and copy", "index builds", "foreign keys", "swap"} <= set(profiles[key]), key
    inserts = figures[("2,000 inserts before drop-legacy", 60, "N")]
    assert inserts["limit"] == "the same inserts after drop-legacy" and inserts["allowed_ratio"] == 1.1
    backup = next(f for f in record["figures"] if f["figure"].startswith("our backup"))
    assert backup["limit"] == f"pg_dump -Fd -j{record['jobs']}" and backup["allowed_ratio"] == 1.5
    assert ("swap lock [10N, every 10 s]") in result.stdout, "each figure is printed beside its limit"
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title") and text.endswith("\nafter\n")
    assert "| offline conversion | 10 s |" in text and "| swap lock | 60 s |" in text


def test_the_readme_without_its_markers_is_refused_with_what_to_do(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    with pytest.raises(SystemExit, match=f"must hold two {MARKER} lines"):
        write_readme(readme, {"rows": 1, "figures": []})
    assert readme.read_text() == "# no table here\n"
