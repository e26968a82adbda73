"""The full garbage collection waits while sessions are set up (Admission.setting_up): true
while a set-up slot is held or awaited, false when nothing is set up and when accounts wait
only because max_sessions is reached (they may wait for ever)."""

from __future__ import annotations

import asyncio

from auditor.ingest.admission import Admission
from auditor.ingest.metrics import Metrics


def test_setting_up_follows_the_slots_and_ignores_accounts_waiting_for_capacity() -> None:
    async def main() -> None:
        admission = Admission(
            Metrics(), max_setups=1, setup_rate=100.0, max_sessions=1, saturation_lag=10.0
        )
        dispatcher = asyncio.ensure_future(admission.dispatch())
        assert not admission.setting_up
        await asyncio.wait_for(admission.acquire("a", new_session=True), 5)
        assert admission.setting_up  # a slot is held
        admission.release_setup()
        assert not admission.setting_up
        waiter = asyncio.ensure_future(admission.acquire("b", new_session=True))
        await asyncio.sleep(0.05)  # deliberate: the dispatcher's turn, in which it must not admit b
        assert not waiter.done()  # max_sessions (1) is held by "a"
        assert not admission.setting_up
        admission.release_session()
        await asyncio.wait_for(waiter, 5)
        assert admission.setting_up
        dispatcher.cancel()

    asyncio.run(main())
