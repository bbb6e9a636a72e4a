"""``make test``: the whole suite, with the distributed deployment in parallel with the rest.

The deployment test (tests/deployment) spends most of its wall time waiting: on the service's
rate limit (0.2 calls/s per account, the documented rule) and on Airflow's heartbeats. Run
after the rest it would double ``make test``'s time on a 2-core machine; run beside it, it
costs little. Its output goes to ``.test-deployment.log`` and is printed after the rest, with
one closing line that counts both runs.

Usage: ``python scripts/test_all.py [--serial] [pytest args...]`` (``--serial``: one after the other).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG = REPO / ".test-deployment.log"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "--durations=15"]
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped)")


def counts(text: str) -> dict[str, int]:
    """The counts of pytest's closing line in ``text``."""
    lines = [line for line in text.splitlines() if " in " in line and COUNTS.search(line)]
    found: dict[str, int] = {}
    for number, word in COUNTS.findall(lines[-1] if lines else ""):
        found[word.rstrip("s") if word.startswith("error") else word] = int(number)
    return found


def main(argv: list[str]) -> int:
    serial = "--serial" in argv
    extra = [a for a in argv if a != "--serial"]
    deployment_cmd = [*PYTEST, *extra, "tests/deployment"]
    rest_cmd = [*PYTEST, *extra, "--ignore=tests/deployment", "tests"]
    with LOG.open("w") as log:
        deployment = None if serial else subprocess.Popen(deployment_cmd, cwd=REPO, stdout=log, stderr=log)
        rest = subprocess.run(rest_cmd, cwd=REPO, capture_output=True, text=True, check=False)
        print(rest.stdout + rest.stderr, flush=True)
        if deployment is None:
            deployment = subprocess.Popen(deployment_cmd, cwd=REPO, stdout=log, stderr=log)
        deployment_rc = deployment.wait()
    deployment_out = LOG.read_text()
    print("=" * 30 + " tests/deployment " + "=" * 30)
    print(deployment_out, flush=True)
    total: dict[str, int] = {}
    for part in (rest.stdout, deployment_out):
        for word, number in counts(part).items():
            total[word] = total.get(word, 0) + number
    failed = total.get("failed", 0) + total.get("error", 0)
    ok = rest.returncode == 0 and deployment_rc == 0
    if not ok and failed == 0:
        failed = 1  # a run that ended without a count (a crash, a collection error) is a failure
    line = f"{total.get('passed', 0)} passed, {failed} failed"
    if total.get("skipped"):
        line += f", {total['skipped']} skipped"
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
