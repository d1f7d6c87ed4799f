"""A scoring run in a fresh process that reports what it allocated, for the bounded-memory test.

usage: python score_memory_job.py FEATURES OUT_DIR CREDIT_MODEL_FILE FRAUD_MODEL_FILE CHUNK_ROWS

Prints one JSON line: `python_peak_bytes` (tracemalloc: Python objects and numpy/pandas buffers)
and `arrow_peak_bytes` (the Arrow memory pool's high-water mark: parquet reads and Arrow
tables). Both count allocations, not resident pages, so they do not depend on the allocator or
on what else runs on the machine.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import pyarrow as pa

from serving.scoring.batch import score_batch
from serving.scoring.policy import load_policy
from tests.serving.score_job import models_from_files


def main(argv: list[str]) -> None:
    features, out_dir, credit_file, fraud_file, chunk_rows = argv
    models = models_from_files(credit_file, fraud_file)
    policy = load_policy()
    arrow_before = pa.default_memory_pool().max_memory()
    tracemalloc.start()
    score_batch(
        features, models, policy, out_dir, chunk_rows=int(chunk_rows), num_threads=1, progress=False
    )
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "python_peak_bytes": python_peak,
                "arrow_peak_bytes": pa.default_memory_pool().max_memory(),
                "arrow_peak_before_bytes": arrow_before,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
