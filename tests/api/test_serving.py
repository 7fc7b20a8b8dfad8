"""`ServerShutdown.unless_begun`: a wait for a later revision ends when the server begins to stop."""

import asyncio

import pytest

from api.serving import ServerShutdown


async def _parked(cancelled: list[bool]) -> str:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise
    return "newer"


async def _newer() -> str:
    """A wait that the replica's next revision ends soon."""
    await asyncio.sleep(0.01)
    return "newer"


def test_a_wait_ends_with_none_when_the_shutdown_begins_and_is_cancelled() -> None:
    async def scenario() -> tuple[str | None, list[bool]]:
        shutdown, cancelled = ServerShutdown(), list[bool]()
        waiting = asyncio.ensure_future(shutdown.unless_begun(_parked(cancelled)))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        shutdown.begin()
        result = await asyncio.wait_for(waiting, 5)
        await asyncio.sleep(0)  # the parked wait handles its cancellation
        return result, cancelled

    assert asyncio.run(scenario()) == (None, [True])


def test_a_wait_that_ends_first_gives_its_result() -> None:
    async def scenario() -> str | None:
        return await ServerShutdown().unless_begun(_newer())

    assert asyncio.run(scenario()) == "newer"


def test_after_the_shutdown_began_a_new_wait_ends_at_once() -> None:
    async def scenario() -> tuple[str | None, list[bool]]:
        shutdown, cancelled = ServerShutdown(), list[bool]()
        shutdown.begin()
        result = await asyncio.wait_for(shutdown.unless_begun(_parked(cancelled)), 5)
        await asyncio.sleep(0)
        return result, cancelled

    assert asyncio.run(scenario()) == (None, [True])


def test_a_caller_that_goes_away_takes_its_wait_along() -> None:
    # Starlette cancels a stream whose client went away: the parked wait must not outlive it.
    async def scenario() -> list[bool]:
        cancelled: list[bool] = []
        waiting = asyncio.ensure_future(ServerShutdown().unless_begun(_parked(cancelled)))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)
        return cancelled

    assert asyncio.run(scenario()) == [True]


def test_an_error_of_the_wait_is_raised() -> None:
    async def scenario() -> None:
        async def broken() -> str:
            raise LookupError("the replica failed")

        await ServerShutdown().unless_begun(broken())

    with pytest.raises(LookupError, match="the replica failed"):
        asyncio.run(scenario())


def test_the_same_app_may_wait_under_one_event_loop_after_another() -> None:
    # As under two TestClients in turn: an asyncio.Event bound at its first wait refused the second loop.
    shutdown = ServerShutdown()

    async def one_wait() -> str | None:
        return await shutdown.unless_begun(_newer())

    assert asyncio.run(one_wait()) == "newer"
    assert asyncio.run(one_wait()) == "newer"
