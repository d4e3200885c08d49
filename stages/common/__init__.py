"""What every stage uses: typed params, ``StageError`` and ``run_stage``, atomic writes, timing."""
