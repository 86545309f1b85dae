"""`medgan-data inspect` and `medgan-data verify`."""

from __future__ import annotations

import os

import click

from keras_medgan.data import inspection, schema


@click.command("inspect")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="Where to write the contact-sheet PNG. Defaults to DATA_DIR/contact_sheet.png.")
@click.option("--split", type=click.Choice(schema.SPLITS), default="train", show_default=True,
              help="Split drawn on the contact sheet.")
@click.option("--count", default=64, show_default=True, type=click.IntRange(1, 1024),
              help="Images on the contact sheet.")
def inspect_cmd(data_dir, sheet, split, count):
    """Print counts per split, class and skin type, and write a contact sheet with boxes drawn.

    \b
    Example:
      medgan-data inspect data/demo-derm --count 32
    """
    try:
        info = schema.read_dataset_info(data_dir)
    except (FileNotFoundError, schema.SchemaError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(inspection.summarize(info))
    sheet = sheet or os.path.join(data_dir, "contact_sheet.png")
    try:
        inspection.contact_sheet(data_dir, sheet, split=split, count=count)
    except ValueError as e:
        raise click.ClickException(f"{e}. Pick a non-empty split with --split.") from e
    click.echo(f"\ncontact sheet: {sheet}")


@click.command("verify")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--allow-patient-overlap", is_flag=True, default=False,
              help="Report patients found in two splits as a warning instead of a failure (for sources whose "
                   "official splits overlap).")
def verify_cmd(data_dir, allow_patient_overlap):
    """Decode every record and check the schema, the counts and patient-disjoint splits.

    Exits 0 when the dataset is complete and valid, 1 on any problem (each is listed).

    \b
    Example:
      medgan-data verify data/demo-derm
    """
    report = inspection.verify_dataset(data_dir, allow_patient_overlap=allow_patient_overlap)
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if not report.ok:
        for p in report.problems[:50]:
            click.echo(f"problem: {p}", err=True)
        if len(report.problems) > 50:
            click.echo(f"... and {len(report.problems) - 50} more problems", err=True)
        raise click.ClickException(f"{data_dir} is not a valid keras-medgan dataset ({len(report.problems)} problem(s)).")
    total = sum(report.records.values())
    click.echo(f"ok: {data_dir}: {total} records decoded "
               f"({', '.join(f'{s} {n}' for s, n in report.records.items())}); splits are patient-disjoint.")
