"""dask.distributed: what distributed keeps for the process by design is not the program's."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_prog

pytest.importorskip("distributed")


def test_distributeds_offload_executor_made_at_import_is_not_the_programs(tmp_path: Path) -> None:
    """``distributed.utils`` makes a one-thread executor at import for the process and never shuts
    it down: once it ran work, it was reported as a ``ThreadPoolExecutor`` not shut down at the
    program's import line."""
    source = """\
        import asyncio

        from distributed.utils import offload

        assert asyncio.run(offload(sum, [1, 2])) == 3
    """
    out = reclaim_run_prog(tmp_path, source)
    assert "reclaim: no leaks in prog.py" in out.stderr, out.stderr
