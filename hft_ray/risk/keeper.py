"""RiskKeeper: what ties the risk core to the store, without Ray.

Risk fails closed: it approves nothing until the store has answered and the state an earlier
incarnation persisted has been restored (with every execution journaled since replayed), and
nothing while the store does not answer. The state is persisted whenever it changed, checked
every watch round; reports that arrive before the restore wait for it, so none is lost.

A store that lost the run's data (`StoreLost`: Redis back without it) trips the `store_lost`
breaker: trading halts, and stays halted, since every later round finds the store lost again
(a resume lasts until the next round, and approves nothing meanwhile: the store is not ok).
The first incarnation of risk writes the run's epoch if nobody has; a restarted one never
does, so a restart onto an emptied store is a lost store, not a fresh start.
"""

from __future__ import annotations

import asyncio
import logging

from hft_ray.journal import encode, readable
from hft_ray.risk.core import RiskCore
from hft_ray.risk.lease import Lease, NodeSync
from hft_ray.risk.state import TradingState
from hft_ray.store.base import Record, Store, StoreLost, StoreUnavailable
from hft_ray.types import Approval, ExecutionReport, Opportunity

STATE_KEY = "risk"
STORE_LOST = "store_lost"  # the breaker a lost store trips
_log = logging.getLogger(__name__)


class RiskKeeper:
    def __init__(self, core: RiskCore, store: Store, *, restarted: bool = False) -> None:
        self.core = core
        self._store = store
        self._restarted = restarted
        self._early_reports: list[ExecutionReport] = []
        self._restored = asyncio.Event()
        self.journal_errors = 0
        self.error = ""  # why risk is closed, if the store is why
        self.restored_in_flight: list[str] = []  # trades in flight when the state came back

    async def until_restored(self) -> None:
        """Wait for the restore: an operator's command given before it would be overwritten."""
        await self._restored.wait()

    async def watch_round(self) -> bool:
        """Check the store, restore once, flush the decisions, persist a changed state; return
        whether risk may approve. Never raises: whatever goes wrong closes risk and is said."""
        core = self.core
        try:
            await self._store.verify(create=not self._restarted)
            if not core.restored:
                await self._restore()
            await self._journal_events()
            await self._store.flush()
            await self.persist()
        except StoreLost as err:
            core.trip(STORE_LOST, TradingState.HALTED, str(err))
            self._close(str(err))
        except StoreUnavailable as err:
            self._close(str(err), log=False)
        except (KeyError, TypeError, ValueError) as err:
            where = "restore" if not core.restored else "save"
            self._close(f"cannot {where} the risk state: {err.__class__.__name__}: {err}")
        except Exception as err:  # an unforeseen fault must close risk, not end the watch
            self._close(f"risk's store watch failed: {err.__class__.__name__}: {err}")
        else:
            core.store_ok = True
            self.error = ""
        return core.store_ok and core.restored

    def _close(self, error: str, log: bool = True) -> None:
        """Approve nothing until a round succeeds; log each new reason once."""
        self.core.store_ok = False
        if log and error != self.error:
            _log.error(error)
        self.error = error

    async def _restore(self) -> None:
        state = await self._store.get_state(STATE_KEY)
        self.core.restore(state, readable(await self._store.read_journal(), "risk"))
        for report in self._early_reports:
            self.core.on_execution(report)
        self._early_reports.clear()
        self.restored_in_flight = self.core.in_flight_ids()
        self._restored.set()

    async def _journal_events(self) -> None:
        """Append the breakers tripped and resumes since the last round (each dropped only
        once the store took it; a lost store loses them with everything else)."""
        events = self.core.events
        while events:
            await self._store.append(encode(events[0]))
            events.popleft()

    async def persist(self) -> None:
        """Write the core's state if it changed; raise if that fails (the state stays marked
        as changed, for the next try)."""
        if not self.core.dirty or not self.core.restored:
            return
        self.core.dirty = False
        try:
            await self._store.put_state(STATE_KEY, self.core.state_record())
        except BaseException:
            self.core.dirty = True
            raise

    async def decide(self, opp: Opportunity) -> Approval | None:
        """Decide and journal the decision (batched: the watch round flushes it)."""
        approval, record = self.core.evaluate(opp)
        await self._append(encode(record))
        return approval

    async def _append(self, record: Record) -> None:
        try:
            await self._store.append(record)
        except StoreUnavailable:
            self.journal_errors += 1
            self.core.store_ok = False

    def on_execution(self, report: ExecutionReport) -> None:
        if self.core.restored:
            self.core.on_execution(report)
        else:
            self._early_reports.append(report)

    async def sync(self, msg: NodeSync) -> Lease:
        """A trading node's sync: book it and grant its lease (reading the journal first
        when a new process of the node takes over from one that died)."""
        journal = None
        if self.core.restored and self.core.needs_journal(msg):
            try:
                journal = readable(await self._store.read_journal(), "risk")
            except StoreUnavailable:
                return self.core.closed_lease(msg, "store_unavailable")
        return self.core.sync(msg, journal)

    def release(self, opp_id: str) -> None:
        """Write off an approval its executor never started (and now never will): what it
        reserved is free again."""
        self.on_execution(ExecutionReport(opp_id, "", (), 0, False, 0))

    async def close(self) -> None:
        """Flush and release the store. If the last records cannot be written (they leave
        with this process), risk is closed, the error said and counted, not raised."""
        try:
            try:
                await self._journal_events()
            finally:
                await self._store.close()
        except StoreUnavailable as err:
            self.journal_errors += 1
            self._close(str(err))
