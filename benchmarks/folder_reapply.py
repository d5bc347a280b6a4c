"""Re-apply of a folder of unchanged local deployments (aim: 10 of them under 2 s in all).

The deployments are the llama.cpp demo under N names (a llama.cpp server takes a few hundred
MiB, so ten fit on this machine where ten vLLM CPU engines would not). Baseline in the same run:
N separate `deployer apply FILE` of the same unchanged manifests, the cost without folders.

    .venv/bin/python benchmarks/folder_reapply.py [--count N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import ROOT, deployer, median, table, timed

DEMO = ROOT / "model_manifests" / "demo" / "smollm2-135m-llamacpp.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 deployments, one repeat")
    args = parser.parse_args()
    count, repeat = (2, 1) if args.quick else (args.count, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "manifests"
        folder.mkdir()
        names = [f"bench-llama-{i}" for i in range(count)]
        for name in names:
            text = DEMO.read_text().replace("name: smollm2-llamacpp", f"name: {name}")
            (folder / f"{name}.yaml").write_text(text)
        try:
            first = timed(lambda: deployer("apply", str(folder), home=home))
            again = [
                timed(lambda: deployer("apply", str(folder), home=home)) for _ in range(repeat)
            ]
            one_by_one = [
                sum(
                    timed(lambda n=name: deployer("apply", str(folder / f"{n}.yaml"), home=home))
                    for name in names
                )
                for _ in range(repeat)
            ]
            report = json.loads(deployer("apply", str(folder), "-o", "json", home=home).stdout)
            unchanged = not any(entry["changed"] for entry in report["applied"])
        finally:
            for name in names:
                deployer("destroy", name, home=home, check=False)
    table(
        [
            (f"first apply of {count}", f"{first:.1f} s"),
            (f"re-apply of the folder, median of {repeat}", f"{median(again):.2f} s"),
            (f"{count} separate re-applies (baseline)", f"{median(one_by_one):.2f} s"),
            ("ratio folder / separate", f"{median(again) / median(one_by_one):.2f}"),
            ("nothing restarted", "yes" if unchanged else "NO"),
        ]
    )


if __name__ == "__main__":
    main()
