"""Acquisition dates from GDAL metadata or file names."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SAME_DAY = 0.5  # days: acquisitions (or a target and an acquisition) closer than this are the same date

# metadata keys of the acquisition (sensing) time, most specific first (S2 L2A, S1 GRD, generic)
DATE_KEYS = (
    "ACQUISITION_DATETIME",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "SENSING_TIME",
    "SENSING_START",
    "FIRST_LINE_TIME",
    "ACQUISITION_START_TIME",
    "DATE_ACQUIRED",
    "ACQUISITION_DATE",
    "system:time_start",
)
# when the file was written (TIFF's DateTime: ArcGIS, ENVI, gdal_translate -mo ...), not when it was acquired:
# used only when nothing else dates a file, with a warning (inventory.describe)
WRITE_TIME_KEYS = ("TIFFTAG_DATETIME",)

# S2 product (MSIL2A_20170804T105031), S2 granule/tile (T31UDS_20170804T105328),
# S1 product (S1A_IW_GRDH_1SDV_20170801T173236_...), generic YYYYMMDD[THHMMSS]
_STAMP = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?:[Tt](\d{2})(\d{2})(\d{2}))?(?!\d)")
_ISO = re.compile(r"(?<!\d)((?:19|20)\d{2})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):?(\d{2})?)?")
_COMPACT = re.compile(r"((?:19|20)\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?")  # YYYYMMDDHHMM[SS], typed


def _make(y: str, m: str, d: str, hh: str | None, mm: str | None, ss: str | None) -> dt.datetime | None:
    try:
        return dt.datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0),
                           tzinfo=dt.UTC)
    except ValueError:
        return None


def parse_datetime(text: str, epoch_ms: bool = False) -> dt.datetime | None:
    """Parse an ISO-like or compact date/time string (UTC assumed); None if there is none. epoch_ms: 12 or 13
    digits are milliseconds since 1970 (metadata: Earth Engine's system:time_start), else YYYYMMDDHHMM[SS]."""
    text = str(text).strip()
    if not text:
        return None
    if epoch_ms and re.fullmatch(r"\d{12,13}", text):
        return EPOCH + dt.timedelta(milliseconds=int(text))
    if m := _COMPACT.fullmatch(text):
        return _make(*m.groups())
    m = _ISO.search(text) or _STAMP.search(text)
    if m:
        return _make(*m.groups())
    for fmt in ("%Y:%m:%d %H:%M:%S", "%d-%b-%Y %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def date_from_metadata(tags: dict[str, str], keys: tuple[str, ...] = DATE_KEYS) -> dt.datetime | None:
    """The acquisition time from GDAL metadata tags, if any known key holds one (never the file's write
    time, TIFFTAG_DATETIME: `date_written`)."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in keys:
        value = upper.get(key.upper())
        if value:
            when = parse_datetime(value, epoch_ms=True)
            if when is not None:
                return when
    return None


def date_written(tags: dict[str, str]) -> dt.datetime | None:
    """When the file was written, from its TIFFTAG_DATETIME (not an acquisition time); None if untagged."""
    return date_from_metadata(tags, WRITE_TIME_KEYS)


def date_from_name(path: str | Path) -> dt.datetime | None:
    """The acquisition time from an S2/S1 product or granule name, or a generic stamp.

    For S2 product names (MSIL2A_<sensing>_N0400_R051_T31UDS_<generation>) the first stamp is
    the sensing time; for S1 names (..._<start>_<stop>_...) the start time.
    """
    name = Path(path).name
    m = _STAMP.search(name)
    if m:
        return _make(*m.groups())
    m = _ISO.search(name)
    if m:
        return _make(*m.groups())
    return None


def to_days(when: dt.datetime | dt.date) -> float:
    """Days since 1970-01-01 UTC, fractional (dates count as noon)."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day, 12, tzinfo=dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH).total_seconds() / 86400.0


def from_days(days: float) -> dt.datetime:
    return EPOCH + dt.timedelta(days=float(days))


def parse_date(text: str) -> dt.date:
    """A target date given as YYYY-MM-DD (or YYYYMMDD); ValueError with a clear message otherwise."""
    when = parse_datetime(text)
    if when is None:
        raise ValueError(f"'{text}' is not a date (expected YYYY-MM-DD, years 1900 to 2099)")
    return when.date()


def every(first: dt.date, last: dt.date, step_days: int) -> list[dt.date]:
    """first, first + step, ... up to last (empty when last is before first)."""
    return [first + dt.timedelta(days=k) for k in range(0, (last - first).days + 1, step_days)]
