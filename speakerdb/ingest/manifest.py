"""CSV manifests: one reader for ingest (``sources``) and evaluation (``eval.trials``).

A manifest is a UTF-8 CSV file (a byte order mark is allowed) with a header line naming its
columns, ``path`` among them; each further line names one file. The rules:

* fields follow the CSV quoting rules strictly (a quoted field may hold commas, doubled
  quotes, new lines; a quote left open or text after a closing quote is an error);
* every value is stripped of surrounding white space;
* a path is relative to the manifest's folder (an absolute path stays as it is); a backslash
  in it separates folders, as in a manifest written on Windows;
* an empty line is skipped; a line with an empty path, or with more fields than the header
  names, is an error.

Every error is a ``ManifestError`` whose message names the file and, where there is one, the
line.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from speakerdb.errors import ManifestError

__all__ = ["ManifestRow", "Manifest", "read_manifest"]


@dataclass(frozen=True)
class ManifestRow:
    """One line of a manifest: ``line`` (1 is the header), ``rel`` (the path as written, in
    posix form), ``path`` (``rel`` joined to the manifest's folder) and the stripped values of
    every column."""

    line: int
    rel: str
    path: Path
    values: dict[str, str]

    def get(self, column: str) -> str:
        """The value of ``column``: "" when the manifest has no such column or the line leaves
        it out."""
        return self.values.get(column, "")


@dataclass(frozen=True)
class Manifest:
    file: Path
    columns: list[str]
    rows: list[ManifestRow]


def _row(file: Path, line: int, header: list[str], fields: list[str]) -> ManifestRow:
    if len(fields) > len(header):
        raise ManifestError(f"{file}: line {line}: {len(fields)} fields, the header names "
                            f"{len(header)}")
    values = {c: v.strip() for c, v in zip(header, fields)}
    raw = values.get("path", "")
    if not raw:
        raise ManifestError(f"{file}: line {line}: empty path")
    rel = PurePosixPath(raw.replace("\\", "/")).as_posix()
    return ManifestRow(line, rel, file.parent / rel, values)


def read_manifest(file: str | Path, required: Sequence[str] = ("path",)) -> Manifest:
    """The rows of the manifest ``file``, in file order (blank lines skipped). A missing
    ``path`` or other ``required`` column, a bad line (one the CSV rules refuse, with an
    empty path or with more fields than the header), a file that is not UTF-8 or cannot be
    read is a ``ManifestError``."""
    file = Path(file)
    reader = None
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = [c.strip() for c in next(reader, [])]
            for column in ("path", *required):
                if column not in header:
                    raise ManifestError(f"{file}: line 1: no {column!r} column (found: "
                                        f"{', '.join(header)})")
            rows = []
            for fields in reader:
                if fields:  # an empty line
                    rows.append(_row(file, reader.line_num, header, fields))
    except UnicodeDecodeError as e:
        raise ManifestError(f"{file}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        line = reader.line_num if reader is not None else 1
        raise ManifestError(f"{file}: line {line}: not a valid CSV file ({e})") from None
    except OSError as e:
        raise ManifestError(f"{file}: cannot read the manifest ({e.strerror or e})") from None
    return Manifest(file, header, rows)
