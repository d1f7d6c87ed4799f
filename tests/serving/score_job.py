"""A scoring run in its own process, for the kill-and-restart test.

usage: python score_job.py FEATURES OUT_DIR CREDIT_MODEL_FILE FRAUD_MODEL_FILE CHUNK_ROWS
"""

from __future__ import annotations

import sys

import lightgbm as lgb

from serving.scoring.batch import score_batch
from serving.scoring.models import scoring_model
from serving.scoring.policy import load_policy
from training.registry import LoadedModel


def models_from_files(credit_file: str, fraud_file: str) -> dict[str, LoadedModel]:
    """The test's credit and fraud models from their LightGBM text files."""
    credit = lgb.Booster(model_file=credit_file)
    fraud = lgb.Booster(model_file=fraud_file)
    return {
        "credit": scoring_model(
            "credit-pd", 3, credit.feature_name(), credit, calib_a=0.9, calib_b=-0.1
        ),
        "fraud": scoring_model("fraud", 1, fraud.feature_name(), fraud),
    }


def main(argv: list[str]) -> None:
    features, out_dir, credit_file, fraud_file, chunk_rows = argv
    models = models_from_files(credit_file, fraud_file)
    score_batch(
        features,
        models,
        load_policy(),
        out_dir,
        chunk_rows=int(chunk_rows),
        num_threads=1,
        progress=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
