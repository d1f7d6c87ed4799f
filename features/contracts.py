"""Raw-data contracts: the schema of every raw table, checked at the file boundary.

Every row carries `event_time` (when it happened) and `available_time` (when it reached the
warehouse). A row that breaks its contract is quarantined with its reason, never dropped:
rows in = rows kept + rows quarantined, per table, always.

Per-table checks (types, ranges, allowed values, duplicate keys) are pandera schemas; checks
that need two tables (unknown user ids, a payment before its draw) run after them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.tables import read_table_dir, write_parquet

log = logging.getLogger(__name__)

TIME = "datetime64[ns]"
TABLES = (
    "users",
    "loans",
    "installments",
    "bureau_accounts",
    "bureau_inquiries",
    "app_events",
    "line_history",
)
APP_EVENT_TYPES = ("login", "device_change", "sim_change", "password_reset", "geo_jump")
LENDER_TYPES = ("bank", "consumer_finance", "microloan", "credit_card")
# The line actions, defined once. The raw line history may also say "open"; a decision never does.
LINE_ACTIONS = ("open", "keep", "raise", "lower", "freeze", "close", "defer")
DECISION_ACTIONS = LINE_ACTIONS[1:]
DOWNGRADE_ACTIONS = ("lower", "freeze", "close")  # the usable line falls
ADVERSE_ACTIONS = (*DOWNGRADE_ACTIONS, "defer")  # everything a user would not want
NO_LINE_ACTIONS = ("freeze", "close")  # the usable line is 0
# Column names that would mean personal data reached a table: a hard error, never a warning.
PERSONAL_DATA_NAMES = (
    "name",
    "phone",
    "mobile",
    "id_number",
    "id_card",
    "idcard",
    "address",
    "email",
    "ssn",
)


class ContractError(ValueError):
    """A table cannot be read at all (missing columns, personal data): nothing is loaded."""


def _time(nullable: bool = False) -> pa.Column:
    return pa.Column(TIME, nullable=nullable, coerce=True)


def _amount(strict_positive: bool = False) -> pa.Column:
    check = pa.Check.gt(0) if strict_positive else pa.Check.ge(0)
    return pa.Column("float64", checks=check, coerce=True)


def _id() -> pa.Column:
    return pa.Column(str, checks=pa.Check.str_length(min_value=1), coerce=True)


def _events_schema(name: str, columns: dict[str, pa.Column], key: list[str]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {**columns, "event_time": _time(), "available_time": _time()},
        name=name,
        unique=key,
        report_duplicates="exclude_first",
        strict=False,
        checks=[
            pa.Check(
                lambda df: df["available_time"] >= df["event_time"],
                name="available_time >= event_time",
            )
        ],
    )


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "users": _events_schema(
        "users",
        {
            "user_id": _id(),
            "age_band": pa.Column("int64", pa.Check.isin([1, 2, 3, 4, 5]), coerce=True),
            "income_band": pa.Column("int64", pa.Check.isin([1, 2, 3, 4, 5]), coerce=True),
            "city_tier": pa.Column("int64", pa.Check.isin([1, 2, 3, 4]), coerce=True),
            "kyc_expiry_date": _time(),
            "initial_line_cny": _amount(),
        },
        key=["user_id"],
    ),
    "loans": _events_schema(
        "loans",
        {
            "loan_id": _id(),
            "user_id": _id(),
            "amount_cny": _amount(strict_positive=True),
            "term_months": pa.Column("int64", pa.Check.isin([3, 6, 12]), coerce=True),
            "installment_cny": _amount(strict_positive=True),
        },
        key=["loan_id"],
    ),
    "installments": _events_schema(
        "installments",
        {
            "loan_id": _id(),
            "user_id": _id(),
            "seq": pa.Column("int64", pa.Check.in_range(1, 12), coerce=True),
            "due_date": _time(),
            "amount_due_cny": _amount(),
            "amount_paid_cny": _amount(),
        },
        key=["loan_id", "seq"],
    ),
    "bureau_accounts": _events_schema(
        "bureau_accounts",
        {
            "account_id": _id(),
            "user_id": _id(),
            "lender_token": _id(),
            "lender_type": pa.Column(str, pa.Check.isin(LENDER_TYPES), coerce=True),
            "open_date": _time(),
            "close_date": _time(nullable=True),
            "limit_cny": _amount(),
            "balance_cny": _amount(),
            "overdue_cny": _amount(),
            "dpd_bucket": pa.Column("int64", pa.Check.in_range(0, 6), coerce=True),
        },
        key=["account_id", "event_time"],
    ),
    "bureau_inquiries": _events_schema(
        "bureau_inquiries",
        {
            "inquiry_id": _id(),
            "user_id": _id(),
            "lender_type": pa.Column(str, pa.Check.isin(LENDER_TYPES), coerce=True),
        },
        key=["inquiry_id"],
    ),
    "app_events": _events_schema(
        "app_events",
        {
            "event_id": _id(),
            "user_id": _id(),
            "event_type": pa.Column(str, pa.Check.isin(APP_EVENT_TYPES), coerce=True),
            "device_token": _id(),
            "ip_prefix_token": _id(),
        },
        key=["event_id"],
    ),
    "line_history": _events_schema(
        "line_history",
        {
            "change_id": _id(),
            "user_id": _id(),
            "old_line_cny": _amount(),
            "new_line_cny": _amount(),
            "action": pa.Column(str, pa.Check.isin(LINE_ACTIONS), coerce=True),
        },
        key=["change_id"],
    ),
}

# Column order as written by the simulator and expected by readers.
COLUMNS: dict[str, list[str]] = {t: list(s.columns) for t, s in SCHEMAS.items()}


@dataclass
class TableReport:
    """What happened to one table at the boundary."""

    table: str
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    dropped_columns: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None


@dataclass
class LoadResult:
    tables: dict[str, pd.DataFrame]
    reports: dict[str, TableReport]

    def summary(self) -> str:
        lines = []
        for r in self.reports.values():
            line = f"{r.table}: {r.rows_in} rows in, {r.rows_kept} kept, {r.rows_quarantined} quarantined"
            if r.rows_quarantined:
                top = ", ".join(
                    f"{k} ({v})" for k, v in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:3]
                )
                line += f" [{top}] -> {r.quarantine_file}"
            if r.dropped_columns:
                line += f"; extra columns ignored: {', '.join(r.dropped_columns)}"
            lines.append(line)
        return "\n".join(lines)


def _check_columns(table: str, df: pd.DataFrame, source: str) -> list[str]:
    expected = COLUMNS[table]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise ContractError(
            f"{table} ({source}): missing required column(s) {', '.join(missing)}; "
            f"the contract needs {', '.join(expected)}"
        )
    extra = [c for c in df.columns if c not in expected]
    personal = [c for c in extra if any(p in c.lower() for p in PERSONAL_DATA_NAMES)]
    if personal:
        raise ContractError(
            f"{table} ({source}): column(s) {', '.join(personal)} look like personal data, which no "
            "table may hold; remove them upstream (ids must be pseudonymous HMACs)"
        )
    return extra


def _coerce_types(table: str, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Coerce each column to its contract type row by row; a value that will not convert is a
    row failure ("wrong type"), not a failure of the whole column."""
    out, reasons = {}, pd.Series("", index=df.index, dtype=object)
    for c, col in SCHEMAS[table].columns.items():
        s, kind = df[c], str(col.dtype)
        if kind == TIME:
            conv = (
                pd.to_datetime(s, errors="coerce", format="mixed")
                if s.dtype == object or pd.api.types.is_string_dtype(s)
                else pd.to_datetime(s, errors="coerce")
            )
            conv = conv.astype(TIME)
        elif kind in ("int64", "float64"):
            conv = pd.to_numeric(s, errors="coerce").astype("float64")
            if kind == "int64":
                conv = conv.where(conv == np.floor(conv))
        elif pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
            conv = s  # already text (the common case: parquet strings); nulls stay null
        else:
            conv = s.astype(str).astype(object).where(s.notna(), None)
        broken = s.notna().to_numpy() & conv.isna().to_numpy()
        if broken.any():
            reasons[broken] = _join(reasons[broken], f"{c}: wrong type, expected {kind}")
        if kind == "int64":
            conv = conv.astype("Int64")
        out[c] = conv
    return pd.DataFrame(out, index=df.index), reasons[reasons != ""]


def _row_failures(table: str, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Coerce types, then return the coerced frame and one reason string per failing row
    (index = row position): type failures first, then pandera's checks."""
    coerced, type_fails = _coerce_types(table, df)
    df = coerced.drop(index=type_fails.index)
    schema = SCHEMAS[table]
    try:
        schema.validate(df, lazy=True)
        return coerced, type_fails
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
    row_level = fc[fc["index"].notna()]
    table_level = fc[fc["index"].isna()]
    if len(table_level):
        # A failure without a row (a whole column of the wrong type that cannot be coerced):
        # every row fails it, so every row is quarantined with that reason.
        for _, f in table_level.iterrows():
            log.warning(
                "%s: column %s failed %s for the whole table", table, f["column"], f["check"]
            )
        reason = "; ".join(
            f"{c}: {k}" for c, k in zip(table_level["column"], table_level["check"], strict=True)
        )
        return coerced, pd.concat([type_fails, pd.Series(reason, index=df.index, dtype=object)])
    # A check over several columns reports once per column; say it once per row instead.
    frame_level = row_level["schema_context"].eq("DataFrameSchema").to_numpy()
    check = row_level["check"].astype(object).map(str)
    is_dup = check.eq("multiple_fields_uniqueness").to_numpy()
    key = "+".join(schema.unique or [])
    col = row_level["column"].astype(object).map(lambda c: "row" if c is None or c != c else str(c))
    value = row_level["failure_case"].astype(object).map(str)
    reasons = (col + ": " + check + " (value " + value + ")").astype(object)
    reasons = reasons.where(~frame_level, "row: " + check)
    reasons = reasons.where(~is_dup, f"duplicate key ({key}); the first row with this key is kept")
    reasons.index = row_level["index"].astype(np.int64).to_numpy()
    reasons = reasons[~reasons.index.duplicated(keep="first") | ~(frame_level | is_dup)]
    return coerced, pd.concat(
        [type_fails, reasons.groupby(level=0).agg(lambda r: "; ".join(dict.fromkeys(r)))]
    )


def _coerce(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Coerce kept rows to the contract dtypes (they passed the checks, so this cannot fail)."""
    out = {}
    for c, col in SCHEMAS[table].columns.items():
        s = df[c]
        if str(col.dtype) == TIME:
            out[c] = s.astype(TIME)
        elif str(col.dtype) == "str":
            out[c] = s.astype(object)
        else:
            out[c] = s.astype(str(col.dtype))
    return pd.DataFrame(out, index=df.index)


def _cross_table_failures(
    tables: dict[str, pd.DataFrame], extracted_at: pd.Timestamp
) -> dict[str, pd.Series]:
    """Reasons per row for checks that need more than one table, or the extract time."""
    out: dict[str, pd.Series] = {}
    users = tables.get("users")
    known_users = set(users["user_id"]) if users is not None else None
    loans = tables.get("loans")
    for t, df in tables.items():
        reasons = pd.Series("", index=df.index, dtype=object)
        future = df["available_time"] > extracted_at
        reasons[future] = "available_time after the extract time " + str(extracted_at)
        if t != "users" and known_users is not None:
            unknown = ~df["user_id"].isin(known_users)
            reasons[unknown] = _join(reasons[unknown], "user_id: unknown user (not in users)")
        if t == "installments" and loans is not None:
            draws = loans[["loan_id", "event_time"]].rename(columns={"event_time": "draw_time"})
            draw = df[["loan_id"]].merge(draws, on="loan_id", how="left")["draw_time"]
            draw.index = df.index
            no_loan = draw.isna()
            reasons[no_loan] = _join(reasons[no_loan], "loan_id: unknown loan (not in loans)")
            early = draw.notna() & (df["event_time"] < draw)
            reasons[early] = _join(reasons[early], "event_time: paid before the loan was drawn")
        out[t] = reasons[reasons != ""]
    return out


def _join(existing: pd.Series, reason: str) -> pd.Series:
    return existing.where(existing == "", existing + "; ") + reason


def validate_tables(
    raw: dict[str, pd.DataFrame],
    extracted_at: pd.Timestamp,
    sources: dict[str, str] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, TableReport]]:
    """Split each table into rows kept and rows quarantined (with a `quarantine_reason`).

    Raises ContractError when a table lacks required columns or holds personal-data columns.
    """
    sources = sources or {}
    kept: dict[str, pd.DataFrame] = {}
    bad: dict[str, list[pd.DataFrame]] = {}
    reports: dict[str, TableReport] = {}
    for t, df in raw.items():
        extra = _check_columns(t, df, sources.get(t, t))
        df = df[COLUMNS[t]].reset_index(drop=True)
        coerced, fails = _row_failures(t, df)
        ok = ~df.index.isin(fails.index)
        bad[t] = [_as_quarantine(df.loc[fails.index], fails)] if len(fails) else []
        kept[t] = _coerce(t, coerced[ok])
        reports[t] = TableReport(t, len(df), 0, 0, dropped_columns=extra)
    # Cross-table checks run on rows that passed their own table's checks; a row that fails
    # them is moved to quarantine too. Users first: a quarantined user makes their rows unknown.
    cross = _cross_table_failures(kept, extracted_at)
    for t, fails in cross.items():
        if len(fails):
            bad[t].append(_as_quarantine(kept[t].loc[fails.index], fails))
            kept[t] = kept[t].drop(index=fails.index)
    for t in kept:
        kept[t] = kept[t].reset_index(drop=True)
        q = (
            pd.concat(bad[t], ignore_index=True)
            if bad[t]
            else _as_quarantine(raw[t].iloc[:0][COLUMNS[t]], pd.Series(dtype=object))
        )
        r = reports[t]
        r.rows_kept, r.rows_quarantined = len(kept[t]), len(q)
        r.reasons = _reason_counts(q["quarantine_reason"])
        bad[t] = [q]
        if r.rows_in != r.rows_kept + r.rows_quarantined:  # the invariant this module exists for
            raise RuntimeError(
                f"{t}: rows in {r.rows_in} != kept {r.rows_kept} + quarantined {r.rows_quarantined}"
            )
    return kept, {t: v[0] for t, v in bad.items()}, reports


def _as_quarantine(rows: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    # Values as text: a quarantined value may not fit the column's type (that may be why it is here).
    out = rows.astype(str).astype(object)
    return out.assign(quarantine_reason=reasons.reindex(rows.index).astype(str).to_numpy())


def _reason_counts(reasons: pd.Series) -> dict[str, int]:
    # Count by reason kind (the text before the value) so the summary stays short.
    kinds = reasons.str.split("; ").explode().str.replace(r" \(value .*\)$", "", regex=True)
    return {k: int(v) for k, v in kinds.value_counts().items()} if len(reasons) else {}


def load_raw(
    raw_dir: str | Path,
    quarantine_dir: str | Path,
    extracted_at: pd.Timestamp | None = None,
    tables: tuple[str, ...] = TABLES,
) -> LoadResult:
    """Read the raw tables under `raw_dir/<table>/`, check them, and write quarantined rows.

    `extracted_at` (rows available later are "in the future") defaults to the extract manifest's
    `extracted_at` when `raw_dir/manifest.json` has one, else the current time.
    """
    raw_dir, quarantine_dir = Path(raw_dir), Path(quarantine_dir)
    if extracted_at is None:
        extracted_at = manifest_extracted_at(raw_dir) or pd.Timestamp.now().floor("s")
    frames, sources = {}, {}
    for t in tables:
        folder = raw_dir / t
        if not folder.exists():
            raise ContractError(
                f"{t}: table folder {folder} not found (expected parquet parts there)"
            )
        frames[t] = read_table_dir(folder)
        sources[t] = str(folder)
    kept, quarantined, reports = validate_tables(frames, extracted_at, sources)
    for t, q in quarantined.items():
        target = quarantine_dir / t / "quarantine.parquet"
        if len(q):
            write_parquet(q, target)
            reports[t].quarantine_file = str(target)
            log.warning(
                "%s: quarantined %d of %d rows -> %s", t, len(q), reports[t].rows_in, target
            )
        else:
            target.unlink(missing_ok=True)
    return LoadResult(kept, reports)


def manifest_extracted_at(raw_dir: str | Path) -> pd.Timestamp | None:
    """`extracted_at` from the extract's `raw_dir/manifest.json`, or None without one."""
    import json

    manifest = Path(raw_dir) / "manifest.json"
    if manifest.exists():
        value = json.loads(manifest.read_text()).get("extracted_at")
        if value:
            return pd.Timestamp(value)
    return None
