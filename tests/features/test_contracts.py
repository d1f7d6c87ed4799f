"""The raw-data contracts: every bad row is quarantined with a reason, nothing is lost."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contracts import COLUMNS, TABLES, ContractError, load_raw, validate_tables
from features.tables import write_parquet
from tests.features.raw_fixture import EXTRACTED_AT, ts, valid_tables


def _validate(tables):
    return validate_tables(tables, EXTRACTED_AT)


def _reasons(bad, table):
    return list(bad[table]["quarantine_reason"])


def test_valid_world_passes_untouched():
    tables = valid_tables()
    kept, bad, reports = _validate(tables)
    for t in TABLES:
        assert reports[t].rows_quarantined == 0, bad[t]
        assert len(kept[t]) == len(tables[t])
        assert list(kept[t].columns) == COLUMNS[t]
    assert str(kept["loans"]["event_time"].dtype) == "datetime64[ns]"
    assert kept["loans"]["amount_cny"].dtype == np.float64


def test_missing_column_fails_naming_table_and_columns():
    tables = valid_tables()
    tables["loans"] = tables["loans"].drop(columns=["amount_cny", "term_months"])
    with pytest.raises(
        ContractError, match=r"loans.*missing required column\(s\) amount_cny, term_months"
    ):
        _validate(tables)


def test_extra_column_is_reported_and_ignored():
    tables = valid_tables()
    tables["loans"] = tables["loans"].assign(channel_code=7)
    kept, _, reports = _validate(tables)
    assert reports["loans"].dropped_columns == ["channel_code"]
    assert "channel_code" not in kept["loans"].columns
    assert reports["loans"].rows_kept == 2


@pytest.mark.parametrize("column", ["phone", "real_name", "id_number"])
def test_personal_data_column_is_a_hard_error(column):
    tables = valid_tables()
    tables["users"] = tables["users"].assign(**{column: "x"})
    with pytest.raises(ContractError, match="personal data"):
        _validate(tables)


def test_wrong_type_quarantines_only_that_row():
    tables = valid_tables()
    tables["loans"] = tables["loans"].assign(amount_cny=["1200", "not-a-number"])
    kept, bad, reports = _validate(tables)
    assert reports["loans"].rows_kept == 1 and reports["loans"].rows_quarantined == 1
    assert "amount_cny: wrong type" in _reasons(bad, "loans")[0]
    # the bad value is kept, as text, so a person can see what arrived
    assert bad["loans"]["amount_cny"].iloc[0] == "not-a-number"
    # the row's installments now point to an unknown loan? no: l_2 installments are u_b's -> quarantined
    assert any("unknown loan" in r for r in _reasons(bad, "installments"))


def test_negative_amount_is_quarantined():
    tables = valid_tables()
    tables["bureau_accounts"] = tables["bureau_accounts"].assign(balance_cny=[2000.0, -1.0])
    _, bad, reports = _validate(tables)
    assert reports["bureau_accounts"].rows_quarantined == 1
    assert "balance_cny: greater_than_or_equal_to(0)" in _reasons(bad, "bureau_accounts")[0]


def test_paid_before_drawn_is_quarantined():
    tables = valid_tables()
    inst = tables["installments"].copy()
    inst.loc[0, ["event_time", "available_time"]] = [ts("2025-01-05"), ts("2025-01-05 00:01")]
    tables["installments"] = inst
    _, bad, reports = _validate(tables)
    assert reports["installments"].rows_quarantined == 1
    assert "paid before the loan was drawn" in _reasons(bad, "installments")[0]


def test_future_rows_are_quarantined():
    tables = valid_tables()
    q = tables["bureau_inquiries"]
    tables["bureau_inquiries"] = pd.concat(
        [
            q,
            q.assign(
                inquiry_id="q_2", event_time=ts("2026-03-01"), available_time=ts("2026-03-02")
            ),
        ]
    )
    _, bad, reports = _validate(tables)
    assert reports["bureau_inquiries"].rows_quarantined == 1
    assert "after the extract time" in _reasons(bad, "bureau_inquiries")[0]


def test_available_before_event_is_quarantined():
    tables = valid_tables()
    ev = tables["app_events"].copy()
    ev.loc[1, "available_time"] = ts("2025-01-01")
    tables["app_events"] = ev
    _, bad, reports = _validate(tables)
    assert reports["app_events"].rows_quarantined == 1
    assert "available_time >= event_time" in _reasons(bad, "app_events")[0]


def test_duplicate_key_keeps_first_and_quarantines_the_rest():
    tables = valid_tables()
    tables["loans"] = pd.concat([tables["loans"], tables["loans"].iloc[[0]]], ignore_index=True)
    kept, bad, reports = _validate(tables)
    assert reports["loans"].rows_in == 3 and reports["loans"].rows_quarantined == 1
    assert "duplicate key" in _reasons(bad, "loans")[0]
    assert list(kept["loans"]["loan_id"]) == ["l_1", "l_2"]


def test_unknown_user_is_quarantined():
    tables = valid_tables()
    tables["app_events"] = tables["app_events"].assign(user_id=["u_a", "u_nobody"])
    _, bad, reports = _validate(tables)
    assert reports["app_events"].rows_quarantined == 1
    assert "unknown user" in _reasons(bad, "app_events")[0]


def test_bad_enum_and_bad_term():
    tables = valid_tables()
    tables["loans"] = tables["loans"].assign(term_months=[3, 7])
    tables["app_events"] = tables["app_events"].assign(event_type=["login", "selfie"])
    _, bad, reports = _validate(tables)
    assert "term_months" in _reasons(bad, "loans")[0]
    assert "event_type" in _reasons(bad, "app_events")[0]


def test_load_raw_writes_quarantine_files_and_summary(tmp_path):
    tables = valid_tables()
    tables["loans"] = tables["loans"].assign(amount_cny=[1200.0, -600.0])
    raw = tmp_path / "raw"
    for t, df in tables.items():
        write_parquet(df, raw / t / "part-00000.parquet")
    (raw / "manifest.json").write_text(json.dumps({"extracted_at": str(EXTRACTED_AT)}))
    result = load_raw(raw, tmp_path / "quarantine")
    q = pd.read_parquet(tmp_path / "quarantine" / "loans" / "quarantine.parquet")
    assert list(q["loan_id"]) == ["l_2"] and "quarantine_reason" in q.columns
    assert "loans: 2 rows in, 1 kept, 1 quarantined" in result.summary()
    # the quarantined loan takes its payment with it, written out too
    assert (tmp_path / "quarantine" / "installments" / "quarantine.parquet").exists()
    assert not (tmp_path / "quarantine" / "users" / "quarantine.parquet").exists()


def test_load_raw_missing_table_folder(tmp_path):
    with pytest.raises(ContractError, match="users: table folder"):
        load_raw(tmp_path / "raw", tmp_path / "q")


_CORRUPTIONS = {
    "negative": lambda df, i: df.assign(amount_cny=df["amount_cny"].where(df.index != i, -5.0)),
    "text": lambda df, i: df.assign(
        amount_cny=df["amount_cny"].astype(object).where(df.index != i, "x")
    ),
    "future": lambda df, i: df.assign(
        available_time=df["available_time"].where(df.index != i, ts("2031-01-01"))
    ),
    "dup": lambda df, i: pd.concat([df, df.iloc[[i]]], ignore_index=True),
    "user": lambda df, i: df.assign(user_id=df["user_id"].where(df.index != i, "u_ghost")),
    "term": lambda df, i: df.assign(term_months=df["term_months"].where(df.index != i, 5)),
    "null": lambda df, i: df.assign(loan_id=df["loan_id"].where(df.index != i, None)),
}


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(_CORRUPTIONS)), st.integers(0, 1)), max_size=6))
def test_rows_in_equal_rows_kept_plus_quarantined(corruptions):
    tables = valid_tables()
    loans = tables["loans"]
    for name, i in corruptions:
        loans = _CORRUPTIONS[name](loans.reset_index(drop=True), i)
    # Only the tables a loan corruption can reach (pandera's per-call cost dominates here).
    tables = {t: tables[t] for t in ("users", "loans", "installments")} | {"loans": loans}
    kept, bad, reports = _validate(tables)
    for t in tables:
        r = reports[t]
        assert r.rows_in == len(tables[t]) == r.rows_kept + r.rows_quarantined
        assert len(kept[t]) == r.rows_kept and len(bad[t]) == r.rows_quarantined
        assert bad[t]["quarantine_reason"].str.len().gt(0).all()
