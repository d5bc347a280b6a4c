"""Wall time of a second, unchanged `deployer apply` (aim: under 0.6 s, no engine restart).

Baseline in the same run: `deployer --version`, the cost of starting the command at all.
``--quick`` times one second apply and one start-up, for CI (no figure is asserted).

    .venv/bin/python benchmarks/second_apply.py [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import DEMO, NAME, deployer, median, status, table, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="--repeat 1, for CI")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        first = timed(lambda: deployer("apply", str(DEMO), home=home))
        pid = status(home)["pid"]
        try:
            again = [timed(lambda: deployer("apply", str(DEMO), home=home)) for _ in range(repeat)]
            startup = [timed(lambda: deployer("--version", home=home)) for _ in range(repeat)]
            same_pid = status(home)["pid"] == pid
        finally:
            deployer("destroy", NAME, home=home)
    table(
        [
            ("first apply", f"{first:.1f} s"),
            (f"second apply, median of {repeat}", f"{median(again):.2f} s (aim < 0.6 s)"),
            ("deployer --version (command start-up)", f"{median(startup):.2f} s"),
            ("ratio second apply / start-up", f"{median(again) / median(startup):.1f}"),
            ("engine restarted", "no" if same_pid else "YES"),
        ]
    )


if __name__ == "__main__":
    main()
