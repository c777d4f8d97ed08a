"""Top functions of a py-spy profile, as text: ``py-spy record --format raw -o FILE`` then

    python benchmarks/pyspy_summary.py FILE [N]

prints, for the N hottest functions, their share of all samples as self time
(the function itself was running) and as total time (it was on the stack),
so a profile can be pasted into an issue comment.
"""

from __future__ import annotations

import sys
from collections import Counter


def load(path: str) -> tuple[Counter, Counter, int]:
    """Self and inclusive sample counts per frame from py-spy's collapsed-stack output."""
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [short(fr) for fr in stack.split(";")]
            samples += n
            own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    return own, total, samples


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "/pushgw-bench-"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{name} ({file})" if file else name


def main(argv: list[str]) -> int:
    own, total, samples = load(argv[0])
    top = int(argv[1]) if len(argv) > 1 else 25
    print(f"{samples} samples")
    print(f"{'self':>6} {'total':>6}  function")
    for frame, n in own.most_common(top):
        print(f"{100 * n / samples:5.1f}% {100 * total[frame] / samples:5.1f}%  {frame}")
    print("\nby total time (on the stack):")
    for frame, n in total.most_common(top):
        print(f"{100 * own[frame] / samples:5.1f}% {100 * n / samples:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
