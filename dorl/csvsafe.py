"""CSV files a spreadsheet can open safely: text that would run as a formula is written with a leading quote.

A cell that starts with '=', '+', '-', '@', a tab or a carriage return is a formula to Excel, LibreOffice and
Google Sheets (CSV injection: `=HYPERLINK(...)`, `=cmd|...`), and dorl's CSVs hold dialogue text and model output.
So `write` prefixes such a text cell with a single quote (OWASP's rule), which spreadsheets show as text; numbers
are written as numbers. The escaping is reversible: a text cell that already starts with quotes before one of
those characters gets one quote more, and `read` removes exactly one, so dorl reads back the raw values (the
report's page and JSON hold them unchanged).

    write(df, path)          # predictions.csv, results.csv
    df = read(path)          # the same text as before `write` (readers.read_csv + unescape)
"""

from __future__ import annotations

import csv
import re

import pandas as pd

from dorl import readers

_RISKY = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def escape(text: str) -> str:
    return "'" + text if _RISKY.match(text) else text


def unescape(text: str) -> str:
    return text[1:] if _ESCAPED.match(text) else text


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)]


def write(df: pd.DataFrame, path, **kw) -> None:
    out = df.copy()
    for c in _text_columns(out):
        out[c] = out[c].map(lambda v: escape(v) if isinstance(v, str) else v)
    # Every text cell quoted: a bare carriage return inside one would otherwise end the row for a reader.
    out.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC, **kw)


def read(path, **kw) -> pd.DataFrame:
    df = readers.read_csv(path, **kw)
    for c in _text_columns(df):
        df[c] = df[c].map(lambda v: unescape(v) if isinstance(v, str) else v)
    return df
