"""The HA benchmark still runs: ``benchmarks/ha.py --quick`` end to end.

Real PostgreSQL, pushgw replicas, single-node pushgw, the official and wrk,
through the same code paths as the full run (pushes over 1-3 replicas, the
lag histogram, read-after-write across replicas, reads, new-replica
readiness). No timing is asserted (this machine's speed is nobody's business
in a test), only that every correctness check passed and every measure made
it into the table.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from postgres import require_postgres
from servers import REPO_ROOT, official_binary, require_peer

HA = REPO_ROOT / "benchmarks" / "ha.py"


def test_ha_benchmark_quick_run_passes_its_correctness_checks() -> None:
    require_postgres()
    require_peer("prometheus-pushgateway", official_binary() or "/usr/bin/prometheus-pushgateway")
    require_peer("wrk", shutil.which("wrk") or "/usr/bin/wrk")
    run = subprocess.run([sys.executable, str(HA), "--quick"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"ha.py --quick exited {run.returncode}:\n{output[-6000:]}"
    assert "correctness: all checks passed" in output, output[-6000:]
    for measure in ("pushgw SQLite", "official (file)", "pushgw 1 replica", "pushgw 2 replicas",
                    "pushgw 3 replicas", "replication lag", "push on A, then read on B",
                    "catch-up added to a read", "new replica / SQLite restart"):
        assert measure in output, f"{measure!r} missing from the table:\n{output[-6000:]}"
