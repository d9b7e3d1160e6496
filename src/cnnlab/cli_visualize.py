"""``cnnlab visualize ...``: lesson 001's convolution and pooling pictures as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli_common import console, user_errors

visualize_app = typer.Typer(
    help="Pictures of what convolution and pooling do (lesson 001).", no_args_is_help=True
)
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")]


def _images(paths: list[Path]) -> dict:
    from cnnlab.viz.convolve import load_image, sample_images

    return {path.stem: load_image(path) for path in paths} if paths else sample_images()


@visualize_app.command("convolve")
@user_errors
def convolve_cmd(
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files (default: scikit-learn's china.jpg and flower.jpg)."),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="vertical, horizontal, sobel or FILE.npy (repeatable)."),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Line filter size (odd).")] = 7,
    out: OutOpt = Path("convolve.png"),
) -> None:
    """Convolve photos with hand-made filters and show the feature maps."""
    from cnnlab.viz.convolve import make_filter, plot_convolution
    from cnnlab.viz.samples import save_figure

    pictures = _images(images or [])
    kinds = filters or ["vertical", "horizontal"]
    kernels = {Path(k).stem: make_filter(k, size, 3) for k in kinds}
    save_figure(plot_convolution(pictures, kernels), out)
    console.print(f"wrote {out}", highlight=False)


@visualize_app.command("pooling")
@user_errors
def pooling_cmd(
    image: Annotated[
        Path | None, typer.Argument(help="Image file (default: a crop of china.jpg).")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Pool window.")] = 2,
    stride: Annotated[int | None, typer.Option("--stride", help="Stride (default: size).")] = None,
    kind: Annotated[str, typer.Option("--kind", help="max or avg.")] = "max",
    out: OutOpt = Path("pooling.png"),
) -> None:
    """Input vs pooled output, and max pooling's invariance to 1- and 2-pixel shifts."""
    from cnnlab.viz.convolve import plot_pooling, translation_invariance
    from cnnlab.viz.samples import save_figure

    if image is None:
        picture = _images([])["china"][:, 150:220, 130:250]  # lesson 001's crop
    else:
        picture = next(iter(_images([image]).values()))
    save_figure(plot_pooling(picture, size, stride, kind), out)
    same = translation_invariance(picture, size, stride)
    console.print(
        "max-pool outputs unchanged by a shift of "
        + ", ".join(f"{s}px: {v:.0%}" for s, v in same.items()),
        highlight=False,
    )
    console.print(f"wrote {out}", highlight=False)
