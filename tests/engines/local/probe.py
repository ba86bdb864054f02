"""Run inside a pool worker: facts about the process (imports no test framework)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys


def worker_facts() -> dict[str, object]:
    policy_loop = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    return {
        "pid": os.getpid(),
        "start_method": multiprocessing.get_start_method(allow_none=True),
        "running_loop": asyncio.events._get_running_loop() is not None,
        "policy_loop": policy_loop is not None,
        "pytest_imported": "pytest" in sys.modules,
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
    }
