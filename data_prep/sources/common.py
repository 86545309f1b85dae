"""Helpers the `medgan-data` source adapters share: CSV reading, file indexes, box maths, skip records."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import click
import pandas as pd
from PIL import Image

from data_prep.prepare import PreparationError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def skip(input_name: str, reason: str) -> dict:
    """One entry of ``dataset.json`` ``skipped``."""
    return {"input": str(input_name), "reason": reason}


def read_csv(path: str, required: Sequence[str], expected: Sequence[str] | None = None,
             fix: str = "") -> pd.DataFrame:
    """Reads a metadata CSV as strings ('' for empty cells), checking that ``required`` columns are there.

    Blank lines are kept (as all-empty rows) so that ``csv_line(i)`` is the line
    number a user sees in an editor. Column names are stripped of spaces.

    Raises:
        PreparationError: the file cannot be parsed, or lacks a required column
            (the message names the missing columns and the expected header).
    """
    name = os.path.basename(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PreparationError(f"{path} could not be read as a CSV file ({type(e).__name__}: {e}). {fix}".strip())
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise PreparationError(
            f"{name} is missing columns {missing}; expected {', '.join(expected or required)}. "
            f"Found columns: {', '.join(df.columns)}. {fix}".strip()
        )
    df = df.fillna("").astype(str)
    for column in df.columns.unique():
        df[column] = df[column].str.strip()
    return df


def csv_line(index: int) -> int:
    """The 1-based line number in the file of data row ``index`` (header on line 1)."""
    return int(index) + 2


def row_input(csv_path: str, index: int, what: str = "") -> str:
    """How a CSV row is named in ``skipped``: ``file.csv line 12 (ISIC_0024306)``."""
    tail = f" ({what})" if what else ""
    return f"{os.path.basename(csv_path)} line {csv_line(index)}{tail}"


def is_blank(values: Iterable[str]) -> bool:
    """True when every cell of a row is empty."""
    return all(str(v).strip() == "" for v in values)


def require_file(path: str, option: str, hint: str) -> str:
    """Checks a file option; the error names the option, the path and how to fix it."""
    if not path or not os.path.isfile(path):
        raise click.BadParameter(f"file {path!r} does not exist. {hint}", param_hint=option)
    return path


def require_dir(path: str, option: str, hint: str) -> str:
    """Checks a folder option; the error names the option, the path and how to fix it."""
    if not path or not os.path.isdir(path):
        raise click.BadParameter(f"folder {path!r} does not exist. {hint}", param_hint=option)
    return path


def index_files(folders: Sequence[str], extensions: Sequence[str] = IMAGE_EXTENSIONS,
                suffix: str = "") -> dict[str, str]:
    """Maps file stem -> path for every file under ``folders`` (recursively) with one of ``extensions``.

    With ``suffix`` (e.g. ``"_segmentation"``) only stems ending with it are
    kept, and the key is the stem without it. The first file found wins; hidden
    files and macOS ``__MACOSX`` folders are ignored.
    """
    found: dict[str, str] = {}
    exts = tuple(e.lower() for e in extensions)
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                stem, ext = os.path.splitext(name)
                if ext.lower() not in exts:
                    continue
                if suffix:
                    if not stem.endswith(suffix):
                        continue
                    stem = stem[: -len(suffix)]
                found.setdefault(stem, os.path.join(dirpath, name))
    return found


def image_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` read from the file header without decoding; None when unreadable."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError):
        return None


def pixel_box_to_normalised(xmin: float, ymin: float, xmax: float, ymax: float, width: int,
                            height: int) -> list[float]:
    """A pixel ``[xmin, ymin, xmax, ymax]`` box -> normalised, clipped ``[ymin, xmin, ymax, xmax]``.

    Raises:
        ValueError: the box is empty once clipped to the image.
    """
    def clip(v: float) -> float:
        return min(1.0, max(0.0, float(v)))

    box = [clip(ymin / height), clip(xmin / width), clip(ymax / height), clip(xmax / width)]
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"box [xmin={xmin}, ymin={ymin}, xmax={xmax}, ymax={ymax}] is empty inside the "
                         f"{width}x{height} image")
    return box


def parse_name_list(text: str | None, option: str) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]`` (None for None); repeated or empty names are a usage error."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise click.BadParameter(f"expected comma-separated names, got an empty one in {text!r}", param_hint=option)
    if len(set(names)) != len(names):
        raise click.BadParameter(f"names must not repeat. Received: {text!r}", param_hint=option)
    return names


def echo_notes(notes: Sequence[str]) -> None:
    """Prints adapter notes (things a user should know that are not errors)."""
    for note in notes:
        click.echo(f"note: {note}")


def non_blank_rows(rows, csv_path: str, skipped: list):
    """Yields ``(index, row)`` for every row that is not blank; blank ones go to ``skipped`` with their line."""
    for i, row in enumerate(rows):
        if is_blank(row.values()):
            skipped.append(skip(row_input(csv_path, i), "blank row"))
            continue
        yield i, row
