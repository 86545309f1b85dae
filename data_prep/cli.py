"""`medgan-data`: turn public or private medical image datasets into keras-medgan TFRecords.

Every command writes ``<split>-<i>-of-<n>.tfrecord`` shards and a ``dataset.json``
(schema version 1, see DESIGN.md) into ``--out``. Run ``medgan-data COMMAND --help``
for the options and an example.
"""

from __future__ import annotations

import importlib

import click

# Adapter modules under data_prep.sources; each defines a click command named `command`.
SOURCE_MODULES = ("folder", "manifest", "ham10000", "isic", "chestxray14", "kermany", "medmnist", "fitzpatrick17k")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="keras-medgan")
def cli():
    """Prepare medical image datasets as keras-medgan TFRecords (schema version 1).

    \b
    Quick start:
      medgan-data demo-derm --out data/demo-derm --num-images 2000 --image-size 64
      medgan-data verify data/demo-derm
      medgan-data inspect data/demo-derm
    """


def _register_commands() -> None:
    from data_prep import demo_commands, inspect_verify, partition

    for cmd in (demo_commands.demo_derm, demo_commands.demo_cxr, inspect_verify.inspect_cmd,
                inspect_verify.verify_cmd, partition.partition_cmd):
        cli.add_command(cmd)
    for name in SOURCE_MODULES:
        cli.add_command(importlib.import_module(f"data_prep.sources.{name}").command)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="medgan-data")
