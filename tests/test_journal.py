"""The journal's typed records: every kind survives its stored form (and a store), and what this
version cannot read is skipped with its position, never misread."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hft_ray.journal import (
    VERSION,
    Decision,
    Execution,
    Fill,
    Intent,
    JournalFormatError,
    JournalRecord,
    Leg,
    Order,
    RiskEvent,
    Skipped,
    Unwind,
    decode,
    encode,
    read_records,
    skipped_summary,
)
from hft_ray.store import LocalStore

LEGS = (Leg("binance", "o1B", "buy", 0.5, 100.0), Leg("okx", "o1S", "sell", 0.5, 101.0))
ONE_OF_EACH: list[JournalRecord] = [
    Decision(1, "o1", "arb", "ETH/USDT", "binance", "okx", 0.6, 0.5, 9.5, "clipped", "max_x", "A"),
    Intent(2, "o1", "ETH/USDT", 0.5, 9.5, 0.4, LEGS, kind="arb", executor="executor0"),
    Order(3, "o1", "o1B", "binance", "ETH/USDT", "buy", 7, "filled", 0.5, 0.5, 100.0, 0.05, ""),
    Fill(4, "o1", "o1B", "binance", "ETH/USDT", "buy", 7, 0.5, 100.0, 0.05, fee_base=0.0005),
    Unwind(5, "o1", "reverse", 0.1, "none", reason="below_min_size"),
    Unwind(6, "o1", "reverse", 0.1, "sell", None, 0.02, "binance", "o1U", 0.1, 99.9),
    Execution(7, "o1", "ETH/USDT", "executor0", 1, 0, True, 0.0),
    Execution(8, "o2", "ETH/USDT", "executor0", 0, 0, False, 0.0, reason="store_unavailable"),
    RiskEvent(9, "trip", "max_drawdown", "REDUCING", "1.2 below the peak"),
]

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789/_", min_size=1, max_size=12)
amounts = st.floats(-1e9, 1e9, allow_nan=False)
stamps = st.integers(0, 2**63 - 1)
sides = st.sampled_from(["buy", "sell"])
legs = st.builds(Leg, names, names, sides, amounts, amounts)
any_record = st.one_of(
    st.builds(
        Decision,
        stamps,
        names,
        names,
        names,
        names,
        names,
        amounts,
        amounts,
        amounts,
        st.sampled_from(["approved", "clipped", "rejected"]),
        st.text(max_size=8),
        names,
    ),
    st.builds(
        Intent,
        stamps,
        names,
        names,
        amounts,
        amounts,
        amounts,
        st.tuples(legs, legs),
        kind=names,
        executor=names,
    ),
    st.builds(
        Order,
        stamps,
        names,
        names,
        names,
        names,
        sides,
        stamps,
        st.sampled_from(["filled", "partial", "expired", "rejected", "timeout", "unknown"]),
        amounts,
        amounts,
        amounts,
        amounts,
        st.text(max_size=8),
        fee_base=amounts,
    ),
    st.builds(
        Fill, stamps, names, names, names, names, sides, stamps, amounts, amounts, amounts, amounts
    ),
    st.builds(
        Unwind,
        stamps,
        names,
        names,
        amounts,
        st.sampled_from(["none", "buy", "sell"]),
        st.none() | names,
        st.none() | amounts,
        st.none() | names,
        st.none() | names,
        st.none() | amounts,
        st.none() | amounts,
    ),
    st.builds(
        Execution,
        stamps,
        names,
        names,
        names,
        st.integers(0, 3),
        st.integers(0, 3),
        st.booleans(),
        amounts,
        st.none() | names,
    ),
    st.builds(RiskEvent, stamps, st.sampled_from(["trip", "resume"]), names, names, st.text()),
)


@given(any_record)
def test_every_record_round_trips_through_its_stored_form(rec: JournalRecord) -> None:
    stored = encode(rec)
    assert stored["type"] == rec.TYPE and stored["v"] == VERSION
    assert decode(stored) == rec


def test_every_kind_round_trips_through_a_store(tmp_path: Path) -> None:
    async def through_store() -> list[dict[str, Any]]:
        store = LocalStore(tmp_path, "test")
        for rec in ONE_OF_EACH:
            await store.append(encode(rec))
        await store.close()
        return await LocalStore(tmp_path, "test").read_journal()

    records, skipped = read_records(asyncio.run(through_store()))
    assert records == ONE_OF_EACH and skipped == []


def test_the_stored_form_keeps_todays_keys() -> None:
    unwind = encode(Unwind(5, "o1", "cancel", 0.5, "none", reason="policy_cancel"))
    assert unwind == {
        "type": "unwind",
        "v": VERSION,
        "ts_ns": 5,
        "opp_id": "o1",
        "policy": "cancel",
        "excess": 0.5,
        "action": "none",
        "reason": "policy_cancel",
    }  # no venue or client id: nothing was placed
    intent = encode(ONE_OF_EACH[1])
    assert intent["legs"][0] == {
        "venue": "binance",
        "client_id": "o1B",
        "side": "buy",
        "amount": 0.5,
        "price": 100.0,
    }


def test_a_record_of_an_older_run_without_a_version_still_decodes() -> None:
    old = {k: v for k, v in encode(ONE_OF_EACH[3]).items() if k not in ("v", "fee_base")}
    assert decode(old) == dataclasses.replace(ONE_OF_EACH[3], fee_base=0.0)
    intent = {k: v for k, v in encode(ONE_OF_EACH[1]).items() if k not in ("v", "executor")}
    assert decode(intent) == dataclasses.replace(ONE_OF_EACH[1], executor="")


def test_an_integer_where_a_float_is_stored_reads_as_a_float() -> None:
    stored = {**encode(ONE_OF_EACH[3]), "price": 100}
    fill = decode(stored)
    assert isinstance(fill, Fill) and fill.price == 100.0 and isinstance(fill.price, float)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "leg_result"}, "unknown record type 'leg_result'"),
        ({"type": None}, "unknown record type None"),
        ({"v": VERSION + 1}, f"fill: version {VERSION + 1} is newer than {VERSION}"),
        ({"v": "1"}, "fill: version '1' is not a number"),
        ({"filled": "0.5"}, "fill.filled: expected float, found str"),
        ({"filled": True}, "fill.filled: expected float, found bool"),
        ({"ts_ns": 1.5}, "fill.ts_ns: expected int, found float"),
        ({"side": "hold"}, "fill.side: expected one of ['buy', 'sell'], found 'hold'"),
        ({"price": None}, "fill.price: expected float, found NoneType"),
    ],
)
def test_a_record_this_version_cannot_read_raises_with_why(
    change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(JournalFormatError) as err:
        decode({**encode(ONE_OF_EACH[3]), **change})
    assert err.value.reason == reason


def test_a_missing_field_or_a_malformed_leg_is_named() -> None:
    stored = encode(ONE_OF_EACH[3])
    del stored["client_id"]
    with pytest.raises(JournalFormatError, match="fill: missing field 'client_id'"):
        decode(stored)
    intent = encode(ONE_OF_EACH[1])
    intent["legs"][1] = {**intent["legs"][1], "amount": "all"}
    with pytest.raises(JournalFormatError, match=r"intent\.legs: leg\.amount: expected float"):
        decode(intent)
    with pytest.raises(JournalFormatError, match="not a mapping"):
        decode(["fill"])


def test_unreadable_records_are_skipped_with_their_position_and_never_misread() -> None:
    good = [encode(r) for r in ONE_OF_EACH[:3]]
    raw = [
        good[0],
        {"type": "leg_result", "opp_id": "o1"},
        good[1],
        {**good[2], "v": VERSION + 1},
        {k: v for k, v in good[2].items() if k != "status"},
        good[2],
    ]
    records, skipped = read_records(raw, where=[f"seg@{i * 10}" for i in range(len(raw))])
    assert records == ONE_OF_EACH[:3]
    assert [(s.index, s.where) for s in skipped] == [(1, "seg@10"), (3, "seg@30"), (4, "seg@40")]
    assert skipped[2].reason == "order: missing field 'status'"
    summary = skipped_summary(skipped, shown=2)
    assert summary["unreadable_records"] == 3
    assert summary["unreadable"] == [
        {"index": 1, "where": "seg@10", "reason": "unknown record type 'leg_result'"},
        {
            "index": 3,
            "where": "seg@30",
            "reason": f"order: version {VERSION + 1} is newer than {VERSION}",
        },
    ]
    assert read_records([]) == ([], [])
    assert Skipped(0, "x").where is None


def test_an_unwind_tells_the_repair_it_placed() -> None:
    assert ONE_OF_EACH[4].placed() is None
    assert ONE_OF_EACH[5].placed() == ("binance", "o1U", "sell", 0.1)
