"""``cnnlab data ...``: list datasets, show sample grids, print statistics, pack shards."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cnnlab.cli import options as opt
from cnnlab.cli.common import cells, console, err_console, user_errors

data_app = typer.Typer(
    help="Datasets: list, show samples, statistics, pack into shards.", no_args_is_help=True
)

SourceArg = Annotated[
    str,
    typer.Argument(
        help="Registered dataset (see `cnnlab data list`), folder of images, shard pack, or "
        "TFRecord files ('path/*.tfrec')."
    ),
]
ValSplitOpt = Annotated[
    float,
    typer.Option(
        "--val-split",
        help="Fraction of train held out for validation when the data "
        "has no validation split (stratified, seeded).",
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed of the validation split.", min=0, max=2**63 - 1)
]


def load_options(
    image_size: str | None = None,
    channels: int | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    strict: bool = False,
    root: Path | None = None,
    no_download: bool = False,
    tfrecord_keys: str | None = None,
):
    """The LoadOptions the data flags describe (progress bars on)."""
    from cnnlab.data import LoadOptions, parse_image_size

    return LoadOptions(
        root=root,
        image_size=parse_image_size(image_size),
        channels=channels,
        val_split=val_split,
        seed=seed,
        strict=strict,
        download=not no_download,
        progress=True,
        tfrecord_keys=tfrecord_keys,
    )


@contextlib.contextmanager
def shown_warnings() -> Iterator[None]:
    """Print data warnings raised inside (skipped files, resized images) once each, in yellow."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen and issubclass(w.category, UserWarning):
                    seen.add(text)
                    err_console.print(f"[yellow]warning:[/] {cells(text)[0]}", highlight=False)


@data_app.command("list")
@user_errors
def list_cmd() -> None:
    """List the registered datasets (any folder of images works too)."""
    from cnnlab.data import dataset_info, list_datasets

    table = Table(title="cnnlab datasets")
    for col in ("name", "image (HxWxC)", "classes", "description"):
        table.add_column(col)
    for name in list_datasets():
        info = dataset_info(name)
        c, h, w = info.shape
        size = f"{h}x{w}x{c}" if h else f"varies x{c}"
        table.add_row(*cells(name, size, str(len(info.classes)), info.description))
    console.print(table)


@data_app.command("show")
@user_errors
def show_cmd(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path(
        "samples.png"
    ),
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "train",
    count: Annotated[int, typer.Option("--count", "-n", help="Images to show.")] = 30,
    cols: Annotated[int, typer.Option("--cols", help="Images per row.")] = 10,
    shuffle_seed: Annotated[
        int | None, typer.Option("--random", help="Pick random images with this seed.")
    ] = None,
    image_size: opt.Size = None,
    channels: opt.Channels = None,
    root: opt.Root = None,
    no_download: opt.NoDownload = False,
    tfrecord_keys: opt.TFRecordKeys = None,
) -> None:
    """Write a PNG grid of sample images titled with their class names."""
    from cnnlab.data import load_dataset
    from cnnlab.viz.samples import sample_grid, save_figure

    opts = load_options(
        image_size, channels, root=root, no_download=no_download, tfrecord_keys=tfrecord_keys
    )
    with shown_warnings():
        images = load_dataset(source, split, opts)
    path = save_figure(sample_grid(images, count, cols, shuffle_seed), out)
    console.print(f"wrote {path} ({min(count, len(images))} images of {images.name})")


def _stats_tables(stats) -> list[Table]:
    table = Table(title=f"{stats.source}: {len(stats.classes)} classes")
    table.add_column("class")
    for s in stats.splits:
        table.add_column(s.name.rsplit("/", 1)[-1], justify="right")
    for name in stats.classes:
        table.add_row(*cells(name, *(f"{s.class_counts.get(name, 0):,}" for s in stats.splits)))
    table.add_row(*cells("total", *(f"{s.count:,}" for s in stats.splits)), style="bold")
    info = Table(title="decoded images (mean/std per channel on [0, 1])")
    for col in ("split", "shape (HxWxC)", "mean", "std", "skipped"):
        info.add_column(col)
    for s in stats.splits:
        c, h, w = s.shape
        mean = ", ".join(f"{v:.4f}" for v in s.mean)
        std = ", ".join(f"{v:.4f}" for v in s.std)
        info.add_row(*cells(s.name, f"{h}x{w}x{c}", mean, std, str(s.skipped)))
    return [table, info]


@data_app.command("stats")
@user_errors
def stats_cmd(
    source: SourceArg,
    image_size: opt.Size = None,
    channels: opt.Channels = None,
    val_split: ValSplitOpt = 0.1,
    seed: SeedOpt = 0,
    strict: opt.Strict = False,
    root: opt.Root = None,
    no_download: opt.NoDownload = False,
    tfrecord_keys: opt.TFRecordKeys = None,
) -> None:
    """Print images per class and split, image sizes, and per-channel mean/std."""
    from cnnlab.data.stats import dataset_stats

    opts = load_options(
        image_size, channels, val_split, seed, strict, root, no_download, tfrecord_keys
    )
    with shown_warnings():
        stats = dataset_stats(source, opts)
    for table in _stats_tables(stats):
        console.print(table)
    if stats.file_sizes:
        common = ", ".join(f"{h}x{w} ({n:,})" for (h, w), n in stats.file_sizes.most_common(5))
        console.print(
            f"file sizes: {len(stats.file_sizes)} distinct; most common: {common}", highlight=False
        )


@data_app.command("pack")
@user_errors
def pack_cmd(
    source: SourceArg,
    out: Annotated[Path, typer.Argument(help="Folder to write the shards and manifest.json to.")],
    shards: Annotated[int, typer.Option("--shards", help="Shards per split.")] = 16,
    image_size: opt.Size = None,
    channels: opt.Channels = None,
    val_split: ValSplitOpt = 0.1,
    seed: SeedOpt = 0,
    strict: opt.Strict = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace another pack already in OUT.")
    ] = False,
    root: opt.Root = None,
    no_download: opt.NoDownload = False,
    tfrecord_keys: opt.TFRecordKeys = None,
) -> None:
    """Pack a folder, dataset or TFRecord files into tar shards (WebDataset layout) for
    streaming."""
    from cnnlab.data.shards import pack_shards

    opts = load_options(
        image_size, channels, val_split, seed, strict, root, no_download, tfrecord_keys
    )
    with shown_warnings():
        manifest = pack_shards(source, out, shards, opts, overwrite=overwrite)
    for split, record in manifest["splits"].items():
        console.print(
            f"{split}: {record['num_samples']:,} images in {len(record['shards'])} shards",
            highlight=False,
        )
    console.print(f"wrote {out / 'manifest.json'}; stream it with --data {out}", highlight=False)
