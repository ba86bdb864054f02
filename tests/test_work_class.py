"""The work class follows the task that set it, and the tasks it starts, and nothing else."""

from __future__ import annotations

import asyncio

from ocrflux.work_class import background_work, is_background


async def test_background_work_reaches_child_tasks_and_ends_with_the_block() -> None:
    seen: list[bool] = []

    async def child() -> None:
        await asyncio.sleep(0)
        seen.append(is_background())

    assert is_background() is False
    with background_work():
        assert is_background() is True
        await asyncio.create_task(child())
    await asyncio.create_task(child())
    assert seen == [True, False]
    assert is_background() is False


async def test_an_interactive_task_beside_a_background_one_stays_interactive() -> None:
    async def batch_line() -> bool:
        with background_work():
            await asyncio.sleep(0.01)
            return is_background()

    async def client_request() -> bool:
        await asyncio.sleep(0.005)
        return is_background()

    assert await asyncio.gather(batch_line(), client_request()) == [True, False]
