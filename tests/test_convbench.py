"""`make bench` (tsmigrate_tools.convbench) end to end at a small size: it runs, every figure stands beside its limit,
the conversions carry every row and the application's writers lose none. The figures themselves are the
benchmark's to judge, not this test's (a timing here would be noise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_at_n_and_10n_and_every_conversion_keeps_every_row(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "tsmigrate_tools.convbench", "--rows", "20000", "--tenfold", "--json", str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = {f["figure"]: f for f in json.loads(out.read_text())["figures"]}
    for size in ("N", "10N"):
        legacy_rows = figures[f"create_hypertable(migrate_data => true) ({size})"]["rows"]
        assert legacy_rows > 0
        for conversion, writer in (
            ("our conversion of metric_hist", "our conversion"),
            ("our online conversion of metric_hist", "the online conversion"),
        ):
            figure = figures[f"{conversion} ({size})"]
            wrote = figures[f"a writer every 100 ms through {writer} ({size})"]
            assert wrote["rows_committed"] > 0 and wrote["rows_lost"] == 0, wrote
            # every legacy row, plus those the application wrote before the conversion counted
            assert legacy_rows <= figure["rows"] <= legacy_rows + wrote["rows_committed"], (size, figure, wrote)
            assert figure["limit"] == "plain copy with the same indexes" and figure["limit_seconds"] > 0
        assert figures[f"a writer every 100 ms through the online conversion ({size})"]["swap_attempts"] >= 1
    assert figures["offline conversion at 10N"]["allowed_ratio"] == 10.5
    assert figures["plain copy at 10N"]["limit"] == "plain copy at N"
    assert figures["our backup (fingerprints, dump, verification)"]["limit"].startswith("pg_dump -Fd")
    for line in ("our conversion of metric_hist (N)", "plain copy at 10N", "our equality pass (fingerprints)"):
        assert line in result.stdout, f"the figure {line!r} is printed beside its limit"
