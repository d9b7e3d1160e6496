"""``cnnlab visualize ...``: lesson 001's convolution and pooling pictures, and a model's filters,
feature maps and saliency maps, as PNG files.

Each command imports viz and training on use: they load matplotlib/torch, `cnnlab --help` does
not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.atomic import save_figure
from cnnlab.cli.common import console, err_console, user_errors
from cnnlab.errors import ConfigError
from cnnlab.shapes import keras_shape

visualize_app = typer.Typer(
    help="Pictures of what convolution and pooling do (lesson 001) and of what a model sees.",
    no_args_is_help=True,
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


SubjectArg = Annotated[
    str,
    typer.Argument(
        help="A run folder, or a registry model / timm:NAME / spec file (random weights)."
    ),
]
ImageArg = Annotated[Path, typer.Argument(help="Image file, converted to the model's input.")]


def _warn_untrained(subject) -> None:
    if not subject.trained:
        err_console.print(
            f"[yellow]warning:[/] {subject.name} has random (untrained) weights; "
            "pass a run folder to see what a trained model does",
            highlight=False,
        )


@visualize_app.command("filters")
@user_errors
def filters_cmd(
    source: SubjectArg,
    layer: Annotated[
        str | None, typer.Option("--layer", help="Conv layer name (default: the first conv).")
    ] = None,
    max_filters: Annotated[int, typer.Option("--max-filters", help="Filters to draw.")] = 64,
    out: OutOpt = Path("filters.png"),
) -> None:
    """A conv layer's kernels: RGB tiles for a colour first layer, else one per channel."""
    from cnnlab.viz.filters import layer_kernels, plot_filters
    from cnnlab.viz.subject import load_subject

    subject = load_subject(source)
    name, weights = layer_kernels(subject.model, layer)
    save_figure(plot_filters(subject.model, name, max_filters), out)
    n_out, n_in, kh, kw = weights.shape
    console.print(f"{name}: {n_out} filters of {kh}x{kw}x{n_in}", highlight=False)
    console.print(f"wrote {out}", highlight=False)


def _layer_names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


@visualize_app.command("featuremaps")
@user_errors
def featuremaps_cmd(
    source: SubjectArg,
    image: ImageArg,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            "--layers",
            help="Layer names, repeatable or comma-separated (default: up to 6 conv/pool layers).",
        ),
    ] = None,
    max_channels: Annotated[
        int, typer.Option("--max-channels", help="Channels drawn per layer.")
    ] = 32,
    out: OutOpt = Path("featuremaps.png"),
) -> None:
    """The activations of chosen layers for one image, one tiled grid per layer."""
    from cnnlab.viz.featuremaps import default_layers, feature_maps, plot_feature_maps
    from cnnlab.viz.subject import load_input, load_subject

    subject = load_subject(source)
    _, batch = load_input(subject, image)
    names = _layer_names(layers) or default_layers(subject.model, batch)
    maps = feature_maps(subject.model, batch, names)
    save_figure(plot_feature_maps(maps, max_channels), out)
    for name, tensor in maps.items():
        console.print(f"{name} {keras_shape(tuple(tensor.shape[1:]))}", highlight=False)
    console.print(f"wrote {out}", highlight=False)


def _class_index(subject, value: str | None) -> int | None:
    """``--class``: a class name of the run, or an index."""
    if value is None:
        return None
    if subject.classes and value in subject.classes:
        return subject.classes.index(value)
    if value.strip().lstrip("-").isdigit():
        return int(value)
    names = ", ".join(subject.classes) if subject.classes else "a class index"
    raise ConfigError(f"class {value!r} is not one of: {names}")


@visualize_app.command("saliency")
@user_errors
def saliency_cmd(
    source: SubjectArg,
    image: ImageArg,
    method: Annotated[
        str, typer.Option("--method", help="gradcam, gradcam++ or integrated-gradients.")
    ] = "gradcam",
    target: Annotated[
        str | None,
        typer.Option("--class", help="Class name or index to explain (default: predicted)."),
    ] = None,
    layer: Annotated[
        str | None, typer.Option("--layer", help="Grad-CAM layer (default: last spatial one).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Integrated-gradients steps.")] = 50,
    out: OutOpt = Path("saliency.png"),
) -> None:
    """Which pixels the predicted (or a chosen) class depends on, over the image."""
    from cnnlab.viz.saliency import METHODS, plot_saliency, saliency
    from cnnlab.viz.subject import load_input, load_subject

    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of: {', '.join(METHODS)}")
    subject = load_subject(source)
    _warn_untrained(subject)
    picture, batch = load_input(subject, image)
    options = {"steps": steps} if method == "integrated-gradients" else {"layer": layer}
    result = saliency(subject.model, batch, method, target=_class_index(subject, target), **options)
    label = subject.class_name(result.target)
    where = f" at {result.layer}" if result.layer else ""
    title = f"{subject.name}: {method}{where}, class {label} (p={result.probability:.2f})"
    save_figure(plot_saliency(picture, result.heatmap, title), out)
    console.print(
        f"class {label} (index {result.target}): p={result.probability:.3f}", highlight=False
    )
    console.print(f"wrote {out}", highlight=False)


DIAGRAM_SUFFIXES = (".png", ".svg", ".pdf")


@visualize_app.command("graph")
@user_errors
def graph_cmd(
    source: Annotated[
        str, typer.Argument(help="Registry model, timm:NAME, spec file, or run folder.")
    ],
    depth: Annotated[int, typer.Option("--depth", help="1: top-level blocks; 2: inside them.")] = 1,
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="HxWxC (default: the model's own).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG, SVG or PDF file.")] = Path(
        "graph.png"
    ),
) -> None:
    """A block diagram of the architecture: layers, output shapes, params, branches."""
    from cnnlab.viz.diagram import plot_diagram

    if out.suffix.lower() not in DIAGRAM_SUFFIXES:
        raise ConfigError(f"--out {out}: the suffix {out.suffix!r} is not one of .png, .svg, .pdf")
    from cnnlab.summary import summary  # torch: imported when the command runs, not at --help

    s = summary(_graph_model(source), input_shape, depth=depth)
    try:
        figure = plot_diagram(s)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}; try --depth 1") from None
    save_figure(figure, out, fmt=out.suffix.lower().lstrip("."))
    console.print(f"{s.name}: {len(s.rows)} layers; wrote {out}", highlight=False)


def _graph_model(source: str):
    """A run folder's model (built on the meta device: no weights needed), else the name."""
    if Path(source).is_dir():
        from cnnlab.models import build

        return build(source, device="meta")
    return source
