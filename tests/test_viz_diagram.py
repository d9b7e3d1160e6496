"""visualize graph: the block diagram's boxes, rows and arrows follow the model's data flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab import summary
from cnnlab.cli import app
from cnnlab.viz.diagram import diagram_nodes, plot_diagram

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"


def test_a_chain_is_one_column():
    nodes = diagram_nodes(summary("lenet5"))
    assert [n.level for n in nodes] == list(range(len(nodes)))
    assert nodes[1].inputs == ("input",) and nodes[2].inputs == (nodes[1].name,)
    assert "(None, 28, 28, 6)" in nodes[1].label and "156 params" in nodes[1].label


def test_branches_share_a_row_and_merges_sit_below_their_deepest_input():
    nodes = {n.name: n for n in diagram_nodes(summary(SPECS / "two_branch.yaml"))}
    assert nodes["left"].level == nodes["right"].level == nodes["stem"].level + 1
    add = next(n for n in nodes.values() if n.name.startswith("add"))
    assert set(add.inputs) == {"left_out", "right"}
    assert add.level == nodes["left_out"].level + 1
    concat = next(n for n in nodes.values() if n.name.startswith("concat"))
    assert set(concat.inputs) == {"a", "b"} and nodes["a"].level == nodes["b"].level


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_cli_graph_writes_the_picture(tmp_path, suffix):
    out = tmp_path / f"graph.{suffix}"
    result = CliRunner().invoke(
        app, ["visualize", "graph", str(SPECS / "two_branch.yaml"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    if suffix == "png":
        with Image.open(out) as img:
            assert img.size[0] >= 600 and img.size[1] > img.size[0]
    else:
        text = out.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_graph_of_a_run_and_bad_input(tmp_path):
    from cnnlab.train import TrainConfig, fit
    from train_helpers import digits

    run = tmp_path / "run"
    fit(
        "basic_cnn",
        digits(),
        TrainConfig(epochs=1, run_dir=str(run), progress="none", device="cpu"),
    )
    out = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["visualize", "graph", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "basic_cnn" in result.output
    bad = CliRunner().invoke(app, ["visualize", "graph", "lenet6"])
    assert bad.exit_code == 2 and "lenet6" in bad.output
    bad = CliRunner().invoke(app, ["visualize", "graph", "lenet5", "-o", str(tmp_path / "g.gif")])
    assert bad.exit_code == 2 and ".gif" in bad.output


def test_plot_diagram_figure_size_grows_with_depth():
    small = plot_diagram(summary("lenet5")).get_size_inches()
    big = plot_diagram(summary("resnet34_lab")).get_size_inches()
    assert big[1] > 2 * small[1]
