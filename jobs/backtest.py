"""``python -m jobs backtest FILE`` — forecast accuracy of the stockpulse model and the baselines.

Protocol: read a long sales table (one row per series and period, optionally gzipped), lay it out on a
regular calendar, hold out the last ``--horizon`` periods of every series, fit every model on the rest,
forecast, and score RMSSE (mean over series, M5 style) and WAPE. All models run in the same process on
the same matrix, and each one's fit + predict time is reported.

Fields are separated by commas, or by ``;``, tabs or ``|`` when the header line holds no comma.

Calendar rules: rows in the same period (day, or hour with ``--freq H``) are summed, so an export of
order lines or transactions works as it is; a period missing after a series' first row counts as 0
sales; periods before its first row are "not started" (NaN). Dates are parsed by pandas (ISO 8601
and timestamps with a time zone work), or with ``--date-format`` (``strptime`` codes, e.g.
``%d/%m/%Y``) when they are not ISO.

Stockouts (``--stockout-col COLUMN``): a column holding, per row, a 0/1 flag or the share of the
period out of stock, in [0, 1]. Sales stop during a stockout while demand does not, so a flagged
period only says "demand >= what sold": it is censored. Every model is then fitted on the demand
recovered by handlers/forecasting/censored.py (daily: ``recover_censored`` from the flags, a share
> 0 counting as a flag; ``--freq H``: ``recover_hourly``, the share as the time out of stock), and
scored over the test periods that were in stock only (there sales are demand). Rows of the same
period take the largest value; a missing period counts as in stock. The JSON then gains, per model,
``bias`` = (Σ forecast − Σ actual) / Σ actual over those periods, and ``bias_recovered``: the same
against the test window's own recovered demand over every period (in-stock periods are a selected
sample — those whose demand fitted the stock — so even a perfect demand forecast reads high on them;
docs/forecasting.md, "Censored demand").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from handlers.errors import InputError
from handlers.forecasting.baselines import baselines_for
from handlers.forecasting.scores import mean_rmsse, naive_scale, wape
from handlers.model.bounds import MAX_BACKTEST_BYTES, MAX_BACKTEST_LINE
from handlers.model.numbers import shown

from .options import WHOLE

if TYPE_CHECKING:  # pandas and the model (scikit-learn) load when a backtest runs, not with the CLI
    import pandas as pd

    from handlers.forecasting import model as forecasting

__all__ = ["FREQUENCIES", "load_matrix", "load_stockout", "register", "run", "run_backtest"]

FREQUENCIES = {"D": ("D", 7), "H": ("h", 24)}  # --freq -> (pandas period, season)
MAX_SALES_VALUE = 1e12  # units of one series in one period
MAX_CELLS = 200_000_000  # series x periods at most, whatever the memory
#: Peak memory of a whole backtest per cell of its [series, periods] matrix: the matrix, the models' working
#: copies and forecasts (measured 26-32 bytes with 2,000 x 10,000 and 20,000 x 500 cells; rounded up).
PEAK_BYTES_PER_CELL = 40
#: What ``--stockout-col`` adds per cell: the shares and the recovered history (measured 22 bytes with
#: 6,000 x 365 cells; rounded up).
STOCKOUT_BYTES_PER_CELL = 32
MemoryRoom = Callable[[], "tuple[float, str]"]
Progress = Callable[[str], None]


SEPARATORS = ";\t|"  # tried, in this order, when the header line holds no comma


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read only ``columns`` of a CSV (gzip by extension) as text; errors name the file or column.

    Fields are comma-separated, or separated by ``;``, tab or ``|`` when the header line holds no comma
    but one of those (spreadsheets in many locales export ``;``)."""
    import pandas as pd

    try:
        _check_size(path)
        header, sep = pd.read_csv(path, nrows=0).columns, ","
        if len(header) == 1:
            sep = next((c for c in SEPARATORS if c in str(header[0])), ",")
            header = pd.read_csv(path, nrows=0, sep=sep).columns
        missing = [name for name in columns if name not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(map(str, header))})")
        return pd.read_csv(path, sep=sep, usecols=columns, dtype=str, keep_default_na=False, na_values=[""])
    except InputError:
        raise
    except (OSError, EOFError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read {path}: {reason}") from exc


def _check_size(path: Path) -> None:
    """Refuse, before parsing, a file larger than MAX_BACKTEST_BYTES or with a line longer than
    MAX_BACKTEST_LINE characters (one streaming pass, gzip included): a file without newlines must
    not be read into memory whole."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    total, carry, number = 0, 0, 1  # bytes read, length of the open line, its number
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            total += len(chunk)
            if total > MAX_BACKTEST_BYTES:
                raise InputError(f"{path}: more than {MAX_BACKTEST_BYTES // 2**30} GiB, the backtest file size limit")
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if carry + end - start > MAX_BACKTEST_LINE:
                    break
                carry, start, number = 0, end + 1, number + 1
            else:
                carry += len(chunk) - start
                if carry <= MAX_BACKTEST_LINE:
                    continue
            raise InputError(f"{path}: line {number} is longer than {MAX_BACKTEST_LINE:,} characters (not one row per line?)")


def _first_bad(mask: np.ndarray, raw: pd.Series, what: str, column: str, hint: str = "") -> None:
    """Raise naming the first row where ``mask`` is True (line numbers count the header as line 1)."""
    if mask.any():
        row = int(np.argmax(mask))
        value = raw.iloc[row]
        text = "''" if isinstance(value, float) and math.isnan(value) else shown(value)
        raise InputError(f"column {column!r}: {what} {text} at line {row + 2}{hint}")


def load_matrix(
    frame: pd.DataFrame,
    *,
    id_cols: Sequence[str],
    date_col: str,
    value_col: str,
    freq: str,
    date_format: str | None = None,
    room: MemoryRoom | None = None,
    bytes_per_cell: int = PEAK_BYTES_PER_CELL,
) -> tuple[np.ndarray, list[str], pd.DatetimeIndex]:
    """Validate a long table and lay it out as ``[series, periods]`` on a regular calendar.

    Returns the matrix (NaN before each series' first row, 0 for missing periods after it), the
    series ids (several id columns joined by ``|``) and the calendar. The matrix is dense: its size
    is series x the span of the dates, however few the rows, and is checked against ``room()``
    (default: :func:`memory_room`) before anything of that size is allocated, at ``bytes_per_cell``.
    """
    import pandas as pd

    if freq not in FREQUENCIES:
        raise InputError(f"--freq must be one of {', '.join(FREQUENCIES)}, got {freq!r}")
    for name in [*id_cols, date_col, value_col]:
        if name not in frame.columns:
            raise InputError(f"no column {name!r} (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise InputError("the sales table has no rows")
    period, _ = FREQUENCIES[freq]
    values = pd.to_numeric(frame[value_col], errors="coerce").to_numpy(dtype=float)
    _first_bad(~np.isfinite(values), frame[value_col], "non-numeric value", value_col)
    _first_bad(values < 0, frame[value_col], "negative sales", value_col, " (sales are counts >= 0; drop returns)")
    _first_bad(values > MAX_SALES_VALUE, frame[value_col], "implausibly large value", value_col, f" (more than {MAX_SALES_VALUE:g})")
    raw_dates = frame[date_col]
    try:
        dates = raw_dates if _is_datetime(raw_dates) else pd.to_datetime(raw_dates, errors="coerce", format=date_format)
    except (ValueError, TypeError) as exc:  # e.g. mixed time-zone offsets
        raise InputError(f"column {date_col!r}: cannot parse the dates ({str(exc).splitlines()[0]})") from exc
    hint = f" (format {date_format!r})" if date_format else " (not ISO 8601? set --date-format, e.g. %d/%m/%Y)"
    if not _is_datetime(raw_dates):  # only ASCII digits are numbers (pandas reads '٢٠٢٤-٠١-٠١' as a date)
        _first_bad(~raw_dates.fillna("").astype(str).str.isascii().to_numpy(dtype=bool), raw_dates, "date not written in ASCII", date_col)
    _first_bad(dates.isna().to_numpy(), raw_dates, "unparseable date", date_col, hint)
    dates = pd.DatetimeIndex(dates)
    dates = dates.tz_convert(None) if dates.tz is not None else dates
    dates = dates.floor(period)
    joined = frame[id_cols[0]].astype(str)
    for name in id_cols[1:]:
        joined = joined + "|" + frame[name].astype(str)
    codes, uniques = pd.factorize(joined, sort=True)
    names = [str(name) for name in uniques]
    start = dates.min()
    step = pd.Timedelta(1, unit="D" if freq == "D" else "h")
    index = np.asarray((dates - start) // step, dtype=np.int64)
    length = int(index.max()) + 1
    _check_memory(len(names), length, start, freq, date_col, room, bytes_per_cell)
    flat = codes * length + index
    matrix = np.bincount(flat, weights=values, minlength=len(names) * length).reshape(len(names), length)
    first = np.full(len(names), length, dtype=np.int64)
    np.minimum.at(first, codes, index)
    matrix[np.arange(length)[None, :] < first[:, None]] = np.nan
    return matrix, names, pd.date_range(start, periods=length, freq=period)


def memory_room() -> tuple[float, str]:
    """Bytes this process may still allocate, and what limits it: the smallest of the address-space
    and data limits (``ulimit -v``, ``ulimit -d``) less what the process holds, the cgroup's memory
    limit less its usage, and the memory the kernel reports available (Linux; elsewhere: unlimited)."""
    import resource

    found: list[tuple[float, str]] = []
    status = _fields("/proc/self/status")
    for limit, held, what in (
        (resource.RLIMIT_AS, "VmSize", "the address-space limit (ulimit -v)"),
        (resource.RLIMIT_DATA, "VmData", "the data limit (ulimit -d)"),
    ):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and held in status:
            found.append((soft - status[held], what))
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text, usage_text = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit_text.isascii() and limit_text.isdigit() and int(limit_text) < 2**60:
            found.append((int(limit_text) - int(usage_text), "the cgroup's memory limit"))
            break
    available = _fields("/proc/meminfo").get("MemAvailable")
    if available is not None:
        found.append((available, "the memory available"))
    return min(found, default=(math.inf, "no limit"))


def _fields(path: str) -> dict[str, float]:
    """``Name:   123 kB`` lines of a /proc file, in bytes ({} when it cannot be read)."""
    out = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isascii() and parts[0].isdigit():
            out[name] = int(parts[0]) * 1024.0
    return out


def _check_memory(
    series: int, periods: int, start: pd.Timestamp, freq: str, date_col: str, room: MemoryRoom | None, bytes_per_cell: int
) -> None:
    """Refuse, before allocating it, a matrix whose backtest would not fit: series x the span of the
    dates cells (a handful of rows spread over centuries is as large as a full table)."""
    import pandas as pd

    cells, unit = series * periods, "days" if freq == "D" else "hours"
    need = cells * bytes_per_cell
    free, what = (room or memory_room)()
    if cells <= MAX_CELLS and need <= free:
        return
    step = pd.Timedelta(1, unit="D" if freq == "D" else "h")
    span = f"{start:%Y-%m-%d} .. {start + (periods - 1) * step:%Y-%m-%d}"
    limit = f"more than {what} ({free / 1e9:.1f} GB)" if cells <= MAX_CELLS else f"more than the {MAX_CELLS:,} cells a backtest holds"
    raise InputError(
        f"column {date_col!r}: {series:,} series x {periods:,} {unit} ({span}) = {cells:,} cells "
        f"need about {need / 1e9:.1f} GB, {limit}; cut the file to recent dates or fewer series"
    )


def _is_datetime(column: pd.Series) -> bool:
    """True if ``column`` already holds timestamps."""
    import pandas as pd

    return bool(pd.api.types.is_datetime64_any_dtype(column))


STOCKOUT_HINT = " (--stockout-col: a 0/1 flag or the share of the period out of stock, in [0, 1])"


def load_stockout(
    frame: pd.DataFrame,
    *,
    column: str,
    id_cols: Sequence[str],
    date_col: str,
    freq: str,
    names: list[str],
    calendar: pd.DatetimeIndex,
    date_format: str | None = None,
) -> np.ndarray:
    """The stockout column laid out like :func:`load_matrix`'s matrix (whose ``names`` and ``calendar``
    it takes): ``[series, periods]`` shares out of stock in [0, 1] (a flag is 0 or 1). Rows of the same
    period take the largest value; a period without a row counts as in stock (0).

    Raises:
        InputError: the column is missing, or a value is not a number in [0, 1] (naming the CSV line).
    """
    import pandas as pd

    if column not in frame.columns:
        raise InputError(f"no column {column!r} for --stockout-col (columns: {', '.join(map(str, frame.columns))})")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    _first_bad(~np.isfinite(values), frame[column], "non-numeric value", column, STOCKOUT_HINT)
    _first_bad((values < 0) | (values > 1), frame[column], "value outside [0, 1]", column, STOCKOUT_HINT)
    raw_dates = frame[date_col]  # load_matrix has parsed and checked these already
    dates = pd.DatetimeIndex(raw_dates if _is_datetime(raw_dates) else pd.to_datetime(raw_dates, format=date_format))
    dates = (dates.tz_convert(None) if dates.tz is not None else dates).floor(FREQUENCIES[freq][0])
    index = np.asarray((dates - calendar[0]) // pd.Timedelta(1, unit="D" if freq == "D" else "h"), dtype=np.int64)
    joined = frame[id_cols[0]].astype(str)
    for name in id_cols[1:]:
        joined = joined + "|" + frame[name].astype(str)
    codes = pd.Index(names).get_indexer(joined)
    shares = np.zeros((len(names), len(calendar)))
    np.maximum.at(shares, (codes, index), values)
    return shares


def _check_horizon(matrix: np.ndarray, names: list[str], calendar: pd.DatetimeIndex, horizon: int) -> None:
    """Every series needs at least one period of history before the held-out ``horizon``."""
    lengths = np.isfinite(matrix).sum(axis=1)
    short = np.flatnonzero(lengths <= horizon)
    if short.size:
        s = int(short[0])
        first = calendar[matrix.shape[1] - int(lengths[s])]
        since = first.strftime("%Y-%m-%d" if calendar.freqstr == "D" else "%Y-%m-%d %H:%M")
        periods, verb = int(lengths[s]), "is" if short.size == 1 else "are"
        raise InputError(
            f"--horizon {horizon} must be shorter than every series: {names[s]!r} has only "
            f"{periods} period{'' if periods == 1 else 's'} (from {since}); {short.size} series {verb} too short"
        )


def run_backtest(
    frame_or_path: pd.DataFrame | str | Path,
    *,
    id_cols: Sequence[str] = ("unique_id",),
    date_col: str = "ds",
    value_col: str = "y",
    horizon: int = 28,
    freq: str = "D",
    date_format: str | None = None,
    stockout_col: str | None = None,
    progress: Progress | None = None,
    room: MemoryRoom | None = None,
) -> dict[str, Any]:
    """Hold out the last ``horizon`` periods, fit and score every model; return the JSON structure.

    Args:
        frame_or_path: a long table, or the path of a CSV (``.gz`` allowed) holding one.
        id_cols: columns whose values, joined, identify a series.
        date_col, value_col: the period and the sales columns.
        horizon: periods held out per series (must be shorter than every series).
        freq: ``"D"`` (daily, season 7) or ``"H"`` (hourly, season 24).
        date_format: ``strptime`` format of the dates (``None``: let pandas infer it).
        stockout_col: a column of 0/1 stockout flags or shares of the period out of stock: every model
            is fitted on the recovered demand and scored over the in-stock test periods, and each row
            gains ``bias`` and ``bias_recovered`` (the module docstring says how).
        progress: called with a short message before each long step (the CLI shows it on stderr).
        room: what the process may allocate (default :func:`memory_room`), checked before the matrix is built.

    Raises:
        InputError: a missing column, non-numeric value, unparseable date, unreadable file, a stockout
            value outside [0, 1] or a horizon that leaves a series without history; the message names it
            in one line.
    """
    import pandas as pd

    say = progress or (lambda message: None)
    freq = freq.upper()
    if freq not in FREQUENCIES:
        raise InputError(f"--freq must be one of {', '.join(FREQUENCIES)}, got {freq!r}")
    if horizon < 1:
        raise InputError(f"--horizon must be >= 1, got {horizon}")
    id_cols = list(id_cols)
    if isinstance(frame_or_path, pd.DataFrame):
        frame, file = frame_or_path, None
    else:
        file = str(frame_or_path)
        say(f"reading {file}")
        wanted = [*id_cols, date_col, value_col, *([stockout_col] if stockout_col else [])]
        frame = _read_csv(Path(frame_or_path), list(dict.fromkeys(wanted)))
    say("building the series matrix")
    try:
        return _backtest(frame, file, id_cols, date_col, value_col, horizon, freq, date_format, stockout_col, say, room)
    except MemoryError as exc:  # the estimate before allocating was short: still one line
        raise InputError(f"{file or 'the sales table'}: out of memory ({exc}); cut the file to recent dates or fewer series") from exc


def _backtest(
    frame: pd.DataFrame,
    file: str | None,
    id_cols: list[str],
    date_col: str,
    value_col: str,
    horizon: int,
    freq: str,
    date_format: str | None,
    stockout_col: str | None,
    say: Progress,
    room: MemoryRoom | None,
) -> dict[str, Any]:
    from handlers.forecasting import model as forecasting

    matrix, names, calendar = load_matrix(
        frame,
        id_cols=id_cols,
        date_col=date_col,
        value_col=value_col,
        freq=freq,
        date_format=date_format,
        room=room,
        bytes_per_cell=PEAK_BYTES_PER_CELL + (STOCKOUT_BYTES_PER_CELL if stockout_col else 0),
    )
    censored = None
    if stockout_col:
        shares = load_stockout(
            frame,
            column=stockout_col,
            id_cols=id_cols,
            date_col=date_col,
            freq=freq,
            names=names,
            calendar=calendar,
            date_format=date_format,
        )
    _check_horizon(matrix, names, calendar, horizon)
    train, test = matrix[:, :-horizon], matrix[:, -horizon:]
    season = FREQUENCIES[freq][1]
    if stockout_col:
        say("recovering the demand hidden by stockouts")
        censored = _recover(matrix, shares, horizon, freq, int(calendar[0].hour), stockout_col)
        train = censored.history
    models: dict[str, Callable[..., forecasting.Forecast]] = {forecasting.MODEL_NAME: forecasting.forecast}
    models.update(baselines_for(season))
    rows = []
    for name, model in models.items():
        say(f"fitting {name} on {len(names)} series")
        started = time.perf_counter()
        result = model(train, horizon, season=season)
        seconds = time.perf_counter() - started
        if censored is None:
            scores = {"rmsse": _finite(mean_rmsse(train, test, result.mean)), "wape": _finite(wape(test, result.mean))}
        else:
            scores = censored.scores(test, result.mean)
        rows.append({"model": name, **scores, "seconds": round(seconds, 4)})
    out = {"models": rows, "series": len(names), "horizon": horizon, "freq": freq, "file": file}
    if censored is not None:
        out["stockout"] = censored.summary
    return out


@dataclass(frozen=True)
class _Recovery:
    """The demand a stockout column says the sales hid: what the models fit on and what they are scored on."""

    history: np.ndarray  # [S, T - horizon] recovered demand of the training periods
    in_stock: np.ndarray  # [S, horizon] test periods without a stockout (there sales = demand): scored
    recovered: np.ndarray  # [S, horizon] the test window's demand recovered from its own sales and stockouts
    summary: dict[str, Any]

    def scores(self, test: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
        """RMSSE, WAPE and bias over the in-stock test periods; ``bias_recovered`` over every test
        period, against the recovered demand. RMSSE's scale is the recovered history's."""
        scored = self.in_stock
        error = np.where(scored, pred - test, 0.0)
        actual = float(np.where(scored, test, 0.0).sum())
        count = scored.sum(axis=1)
        scale = naive_scale(self.history)
        usable = (count > 0) & (scale > 0)
        per_series = np.sqrt((error[usable] ** 2).sum(axis=1) / count[usable] / scale[usable])
        recovered = float(self.recovered.sum())
        return {
            "rmsse": _finite(float(per_series.mean()) if per_series.size else math.nan),
            "wape": _finite(float(np.abs(error).sum()) / actual if actual > 0 else math.nan),
            "bias": _finite(float(error.sum()) / actual if actual > 0 else math.nan),
            "bias_recovered": _finite((float(pred.sum()) - recovered) / recovered if recovered > 0 else math.nan),
        }


def _recover(matrix: np.ndarray, shares: np.ndarray, horizon: int, freq: str, first_hour: int, column: str) -> _Recovery:
    """Daily: ``recover_censored`` on the flags (a share > 0 is a stockout). Hourly: ``recover_hourly``
    with the share as the time out of stock (a column of 0/1 only: hourly flags). The training part is
    recovered on its own (nothing of the test window leaks into the fit); the test window's recovered
    demand comes from the whole series."""
    from handlers.forecasting.censored import recover_censored

    started = time.perf_counter()
    flags_only = bool(np.isin(shares, (0.0, 1.0)).all())
    if freq == "D":
        history = recover_censored(matrix[:, :-horizon], shares[:, :-horizon] > 0)
        whole = recover_censored(matrix, shares > 0)
    else:
        history = _recover_hours(matrix[:, :-horizon], shares[:, :-horizon], first_hour, flags_only)
        whole = _recover_hours(matrix, shares, first_hour, flags_only)
    observed = np.isfinite(matrix)
    summary = {
        "column": column,
        "kind": "flag" if flags_only else "share",
        "censored_train_periods": int(((shares > 0) & observed)[:, :-horizon].sum()),
        "train_periods": int(observed[:, :-horizon].sum()),
        "scored_test_periods": int((shares[:, -horizon:] == 0).sum()),
        "test_periods": int(observed[:, -horizon:].sum()),
        "seconds": round(time.perf_counter() - started, 4),
    }
    return _Recovery(history, shares[:, -horizon:] == 0, whole[:, -horizon:], summary)


def _recover_hours(sales: np.ndarray, shares: np.ndarray, first_hour: int, flags: bool) -> np.ndarray:
    """``recover_hourly`` on a calendar that starts at ``first_hour``: padded to whole days with hours
    that are not observed (NaN), which it leaves out, then cut back."""
    from handlers.forecasting.censored import recover_hourly

    s, n = sales.shape
    after = (-(first_hour + n)) % 24
    padded = np.pad(sales, ((0, 0), (first_hour, after)), constant_values=np.nan)
    minutes = np.pad(60.0 * (1.0 - shares), ((0, 0), (first_hour, after)), constant_values=60.0)
    return recover_hourly(padded, minutes, flags=flags).hourly[:, first_hour : first_hour + n]


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined score becomes ``null``."""
    return None if math.isnan(value) else round(float(value), 6)


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    title = f"backtest: {result['series']} series, last {result['horizon']} periods held out (freq {result['freq']})"
    stockout = result.get("stockout")
    if stockout:
        title += (
            f"; stockouts from {stockout['column']!r} ({stockout['kind']}): fitted on recovered demand, scored on "
            f"the {stockout['scored_test_periods']} in-stock test periods of {stockout['test_periods']}"
        )
    table = Table(title=title)
    columns = ["model", "RMSSE", "WAPE", *(["bias", "bias (recovered)"] if stockout else []), "seconds"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result["models"]:
        cells = [row["rmsse"], row["wape"]]
        shown = ["n/a" if cell is None else f"{cell:.3f}" for cell in cells]
        if stockout:
            shown += ["n/a" if row[key] is None else f"{row[key]:+.1%}" for key in ("bias", "bias_recovered")]
        table.add_row(row["model"], *shown, f"{row['seconds']:.2f}")
    return table


def run(args: argparse.Namespace) -> int:
    """Run the ``backtest`` subcommand; print the table (or JSON) and return the exit code.

    Bad input raises :class:`~handlers.errors.InputError`; the CLI (``jobs.cli.main``) prints it as one
    line and exits 2.
    """
    from .console import PipeConsole

    out, err = PipeConsole(), PipeConsole(stderr=True)
    with err.status("backtest") as status:
        result = run_backtest(
            args.file,
            id_cols=args.id_col or ["unique_id"],
            date_col=args.date_col,
            value_col=args.value_col,
            horizon=args.horizon,
            freq=args.freq,
            date_format=args.date_format,
            stockout_col=args.stockout_col,
            progress=lambda message: status.update(message),
        )
    if args.json:
        print(json.dumps(result))
    else:
        out.print(_table(result))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``backtest`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "backtest",
        help="forecast accuracy of the model and the baselines on a sales CSV",
        description=(
            "Hold out the last --horizon periods of every series in a long sales CSV (optionally .gz), "
            "fit the stockpulse model and the baselines on the rest, and report RMSSE, WAPE and seconds."
        ),
    )
    parser.add_argument(
        "file", help="long CSV: one row per series and period (.csv or .csv.gz; separated by commas, or by ';', tabs or '|')"
    )
    parser.add_argument(
        "--id-col",
        action="append",
        metavar="COLUMN",
        help="series id column; repeat to join several (default: unique_id)",
    )
    parser.add_argument("--date-col", default="ds", metavar="COLUMN", help="date column (default: ds)")
    parser.add_argument("--value-col", default="y", metavar="COLUMN", help="sales column (default: y)")
    parser.add_argument(
        "--date-format",
        metavar="FORMAT",
        help="strptime format of the dates when they are not ISO 8601, e.g. %%d/%%m/%%Y (default: inferred)",
    )
    parser.add_argument("--horizon", type=WHOLE, default=28, help="periods held out (default: 28)")
    parser.add_argument(
        "--freq",
        default="D",
        type=str.upper,
        choices=sorted(FREQUENCIES),
        help="D = daily, season 7 (default); H = hourly, season 24",
    )
    parser.add_argument(
        "--stockout-col",
        metavar="COLUMN",
        help=(
            "column of stockout flags (0/1) or shares of the period out of stock (0..1): flagged periods are "
            "censored (demand >= sales) in training, every model fits on the recovered demand, and the scores "
            "count in-stock test periods only; rows gain bias (in stock) and bias_recovered (against the test "
            "window's recovered demand, every period: the yardstick that in-stock selection does not bias)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
