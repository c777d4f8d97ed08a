"""Start-up time of ``pushgw push`` / ``pushgw exec`` beside ``curl`` doing the same push.

Starts pushgw (memory only) on a free port, then times whole commands, each
a real push of a small body to it: with hyperfine when it is installed
(``apt-get install hyperfine``), otherwise with a bounded loop of its own
(the same number of runs, mean and standard deviation). Also times the
bare interpreter, and pushgw run from a plain copy of the package (no
editable-install hook, as a wheel installation loads it). Bounded: 30 runs
per command by default.

    .venv/bin/python benchmarks/pusher_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gateways

BODY = b'# TYPE backup_bytes gauge\nbackup_bytes 1.5e9\nbackup_files{kind="db"} 120\n'
SYSTEM_PYTHON = "/usr/bin/python3"


def commands(url: str, body: Path, copy: Path) -> dict[str, str]:
    venv = gateways.REPO / ".venv" / "bin"
    plain = f"env PYTHONPATH={copy} {SYSTEM_PYTHON} -s -m pushgw"
    result = {
        "curl": f"curl -s -o /dev/null --data-binary @{body} {url}/metrics/job/bench",
        "python -c pass (venv)": f"{venv / 'python'} -c pass",
        "pushgw push (venv, editable install)": f"{venv / 'pushgw'} push --gateway {url} --job bench {body}",
        "pushgw exec -- true (venv)": f"{venv / 'pushgw'} exec --gateway {url} --job bench -- true",
    }
    if Path(SYSTEM_PYTHON).exists():
        result.update({
            "python3 -c pass (system)": f"{SYSTEM_PYTHON} -s -c pass",
            "pushgw push (plain copy, system python)": f"{plain} push --gateway {url} --job bench {body}",
            "pushgw exec -- true (plain copy)": f"{plain} exec --gateway {url} --job bench -- true",
        })
    return result


def with_hyperfine(cmds: dict[str, str], runs: int) -> None:
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "basic"]
    for name, cmd in cmds.items():
        argv += ["-n", name, cmd]
    subprocess.run(argv, check=True, timeout=600)


def with_loop(cmds: dict[str, str], runs: int) -> None:
    for name, cmd in cmds.items():
        argv = cmd.split()
        times = []
        for i in range(runs + 3):
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=30)
            if i >= 3:  # warm-up runs are not counted
                times.append(time.perf_counter() - t0)
        print(f"{name:45s} {statistics.mean(times) * 1000:7.1f} ms ± {statistics.stdev(times) * 1000:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    gw = gateways.start("pushgw", [])
    try:
        with tempfile.TemporaryDirectory(prefix="pusher-startup-") as tmp:
            body = Path(tmp) / "body.txt"
            body.write_bytes(BODY)
            copy = Path(tmp) / "site"
            shutil.copytree(gateways.REPO / "pushgw", copy / "pushgw")
            cmds = commands(gw.url, body, copy)
            if shutil.which("hyperfine"):
                with_hyperfine(cmds, args.runs)
            else:
                print("hyperfine not installed: timing loop of our own", file=sys.stderr)
                with_loop(cmds, args.runs)
    finally:
        gateways.stop(gw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
