"""The benchmark still runs: ``benchmarks/bench.py --quick --smoke`` end to end.

Tiny sizes through the same code paths as the real benchmark (both gateways,
wrk, every scenario including persistence), so a change that breaks the
benchmark or makes a gateway hold the wrong data fails here. No timing is
asserted: this machine's speed is nobody's business in a test; only that
every correctness check in the run passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from servers import REPO_ROOT, official_binary, require_peer

BENCH = REPO_ROOT / "benchmarks" / "bench.py"


def test_benchmark_smoke_run_passes_its_correctness_checks() -> None:
    require_peer("prometheus-pushgateway", official_binary() or "/usr/bin/prometheus-pushgateway")
    require_peer("wrk", shutil.which("wrk") or "/usr/bin/wrk")
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--smoke"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"bench.py --smoke exited {run.returncode}:\n{output[-6000:]}"
    assert "correctness: all checks passed" in output, output[-6000:]
    assert "load generator: wrk" in output, output[-6000:]
    for scenario in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)", "(h)"):
        assert scenario in output, f"scenario {scenario} missing from the table:\n{output[-6000:]}"
