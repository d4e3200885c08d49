"""The tags that tie a model's MLflow run to DVC's side of the project, one name each: the
pipeline's stages write them, ``make compare RUN=1`` (``tracking.experiments``) reads them.
"""

from __future__ import annotations

# the sha256 of the trained .keras file's bytes: how the stages after train find its run
MODEL_DIGEST_TAG = "model_sha256"
# the DVC experiment the run trained in (``DVC_EXP_NAME``), or "workspace" for a dvc repro
DVC_EXP_NAME_TAG = "dvc_exp_name"
# followed by an output's path as dvc.yaml names it: its md5 as dvc.lock records it
OUTPUT_MD5_TAG = "dvc.md5."


def output_md5_tag(path: str) -> str:
    """The tag of the md5 of the output at ``path`` (e.g. ``dvc.md5.models/run.json``)."""
    return OUTPUT_MD5_TAG + path
