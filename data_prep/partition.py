"""`medgan-data partition`: one dataset -> per-client datasets for federated training (paper 003 Sec. 3.1)."""

from __future__ import annotations

import click

from data_prep.options import check_fractions
from keras_medgan.data import partition, schema
from keras_medgan.data.writer import command_line


@click.command("partition")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for client-0/, client-1/, ... (and pooled/) and partition.json.")
@click.option("--clients", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="Number of clients (paper 003: three hospitals).")
@click.option("--sizes", default=None,
              help="Comma-separated images per client, one per client (paper 003: 2000,12000,20000). "
                   "Default: the dataset split equally.")
@click.option("--skew", type=click.Choice(partition.SKEWS), default="none", show_default=True,
              help="Class mix per client: none = the whole dataset's mix in every client (paper 003); label or "
                   "skin-type = each client's share of each class (Fitzpatrick type) is a Dirichlet(0.5) draw.")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of each client's images (whole patients) in its val split.")
@click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of each client's images (whole patients) in its test split.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, None),
              help="Seed of the dealing and of each client's split; the same seed gives the same partition.")
@click.option("--pooled/--no-pooled", default=True, show_default=True,
              help="Also write pooled/: the union of the clients with their splits (the centralized arm).")
def partition_cmd(data_dir, out, clients, sizes, skew, val_fraction, test_fraction, seed, pooled):
    """Split DATA_DIR into client datasets by patient_id: no patient is ever in two clients.

    Every split of DATA_DIR is pooled and whole patients are dealt to the clients; each client then gets its
    own patient-level train/val/test splits and dataset.json. Records are copied byte for byte.

    \b
    Example (paper 003's three hospitals):
      medgan-data partition data/isic-256 --clients 3 --sizes 2000,12000,20000 --skew none --out data/fed
    """
    check_fractions(val_fraction, test_fraction)
    try:
        info = schema.read_dataset_info(data_dir)
    except (FileNotFoundError, schema.SchemaError) as e:
        raise click.ClickException(str(e)) from e
    total = sum(info.num_examples(s) for s in schema.SPLITS)
    if sizes is None:
        counts = [total // clients] * clients
    else:
        try:
            counts = [int(v) for v in sizes.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"must be comma-separated integers. Received: {sizes!r}",
                                     param_hint="--sizes") from None
        if len(counts) != clients:
            raise click.BadParameter(f"needs one size per client (--clients {clients}). Received: {sizes!r}",
                                     param_hint="--sizes")
    if sum(counts) > total:
        raise click.BadParameter(f"the sizes sum to {sum(counts)} images but {data_dir} has {total}",
                                 param_hint="--sizes")
    try:
        with click.progressbar(length=total, label=f"partition: writing {out}") as bar:
            plan = partition.partition_dataset(data_dir, out, counts, skew=skew, seed=seed,
                                               val_fraction=val_fraction, test_fraction=test_fraction,
                                               pooled=pooled, command=command_line(), progress=bar.update)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    for c in plan["clients"]:
        splits = ", ".join(f"{s} {sum(c['counts'].get(s, {}).values())}" for s in schema.SPLITS)
        click.echo(f"{c['name']}: {c['num_images']} images of {c['num_patients']} patients ({splits}) -> {c['dir']}")
    click.echo(f"wrote {out}/partition.json")
