"""Run every benchmark (or those named with --only) at the sizes given.

Example: python -m benchmarks --sizes 10000,100000 --only simulate,features
Each benchmark prints JSON lines; they are also appended to benchmarks/results/<date>.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pkgutil
import sys
import time
from pathlib import Path


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated user/row counts")
    parser.add_argument(
        "--only", default="", help="comma-separated benchmark names (e.g. simulate,score)"
    )
    args = parser.parse_args(argv)
    here = Path(__file__).parent
    names = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(names)}")
        names = [n for n in names if n in wanted]
    out_dir = here / "results"
    out_dir.mkdir(exist_ok=True)
    log_path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    failed = []
    with open(log_path, "w") as log:
        for name in names:
            print(f"# benchmark {name} --sizes {args.sizes}", file=sys.stderr, flush=True)
            module = importlib.import_module(f"benchmarks.bench_{name}")
            with contextlib.redirect_stdout(_Tee(sys.stdout, log)):
                try:
                    module.main(["--sizes", args.sizes])
                except Exception as exc:  # report and carry on with the others
                    failed.append(name)
                    print(f"# benchmark {name} failed: {exc!r}", file=sys.stderr)
    print(f"# figures written to {log_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
