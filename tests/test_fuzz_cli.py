"""Fuzzed flags and files for `cnnlab summary | explain | models | train` (issue 13).

Each invocation must exit 0, or exit 2 with one ``error:`` line (or Click's usage error for a
flag of the wrong type), within its time limit: no traceback, no ``internal error`` (exit 1),
no hang. Training cases use the bundled digits with ``--epochs 1 --max-steps 1`` unless the
flag under test is one of those, so a case that succeeds finishes in seconds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cnnlab.cli import app
from fuzz_helpers import (
    OK,
    USER_ERROR,
    Case,
    SpecMutator,
    assert_no_failures,
    run_cli,
    special_file,
    summarize,
    write_case,
)

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
QUICK = {"--epochs": "1", "--max-steps": "1", "--progress": "none", "--device": "cpu"}

TRAIN_FLAGS: dict[str, list[str]] = {
    "--epochs": ["0", "-1", "1000000000000", "x", "1.5"],
    "--batch-size": ["0", "-3", "1000000000", "1"],
    "--lr": ["nan", "inf", "-1", "0", "1e308", "-inf"],
    "--image-size": ["100000x100000", "0x0", "-1", "x", "1x1", "65536x65536", "12"],
    "--max-steps": ["0", "-1", str(2**70)],
    "--val-split": ["1.5", "nan", "-0.1"],
    "--momentum": ["nan", "-1"],
    "--weight-decay": ["-1", "inf", "nan"],
    "--label-smoothing": ["2", "nan", "-1"],
    "--grad-clip": ["nan", "0", "-1"],
    "--warmup-epochs": ["-1", "nan"],
    "--early-stop": ["0", "-1"],
    "--seed": ["-1", str(2**70), str(2**64)],
    "--optimizer": ["bogus", ""],
    "--schedule": ["bogus", ""],
    "--augment": ["crop=-4", "bogus", "crop=100000", "flip,,"],
    "--normalize": ["bogus"],
    "--in-memory": ["bogus"],
    "--channels": ["0", "2", "-1"],
    "--precision": ["fp8", ""],
    "--device": ["bogus", "cuda:99999999999999999999"],
    "--model-opt": ["=", "x=1", "activation=" + "x" * 500],
    "--init": ["bogus"],
    "--workers": ["-1"],
    "--data": ["", "nonexistent_dataset_xyz", "/dev/null"],
}
"""Flag -> hostile values; a case takes one or two of them."""

SHAPES = ["100000x100000x3", "0x0x0", "1x1x1", "-1x2x3", "x", "28x28x1", "9" * 400, "3x3x70000"]
INTS = ["0", "-1", "1", "3", "1000000000000", str(2**64), "x", "1048577"]


def _spec_cases(tmp_path: Path, seed: int, n: int) -> list[Case]:
    """`summary`/`explain` of mutated spec files, with fuzzed -i/-c/-d now and then."""
    bases = [(SPECS / f"{name}.yaml").read_text() for name in ("lenet5", "basic_cnn", "two_branch")]
    mutator, rng = SpecMutator(bases, seed), random.Random(seed)
    # the unmutated bases first: the commands must still succeed on a valid spec
    cases = [
        Case(-1 - k, "base", ["summary", str(SPECS / f"{name}.yaml")])
        for k, name in enumerate(("lenet5", "basic_cnn", "two_branch"))
    ]
    for i in range(n):
        spec = mutator.case(i)
        path = write_case(tmp_path / f"spec{i}.yaml", spec.payload)
        args = [rng.choice(["summary", "explain"]), str(path)]
        if rng.random() < 0.3:
            args += ["-i", rng.choice(SHAPES)]
        if args[0] == "summary" and rng.random() < 0.3:
            args += [rng.choice(["-c", "-d"]), rng.choice(INTS)]
        if args[0] == "summary" and rng.random() < 0.2:
            args.append("--explain")
        cases.append(Case(i, f"{args[0]} {spec.what}", args))
    return cases


def _flag_cases(seed: int, n: int, run_root: Path) -> list[Case]:
    """`train` with one or two hostile flags; `explain --size`; `models --filter`."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        flags = dict(QUICK)
        for flag in rng.sample(sorted(TRAIN_FLAGS), rng.choice([1, 1, 2])):
            flags[flag] = rng.choice(TRAIN_FLAGS[flag])
        model = rng.choice(["lenet5", "lenet5", str(SPECS / "lenet5.yaml")])
        args = ["train", model, *[x for kv in flags.items() for x in kv]]
        cases.append(Case(1000 + i, "train", [*args, "--run-dir", str(run_root / f"r{i}")]))
    for i in range(n):
        size, kernel, stride = (rng.choice(INTS) for _ in range(3))
        cases.append(
            Case(
                2000 + i,
                "explain",
                ["explain", "--size", size, "--kernel", kernel, "--stride", stride],
            )
        )
    for i, text in enumerate(["[", "\x00", "*", "res*", "x" * 5000]):
        cases.append(Case(3000 + i, "models", ["models", "--filter", text]))
    return cases


def _run(cases: list[Case], seed: int, limit_s: float = 60) -> dict[str, int]:
    results = [(case, run_cli(app, case.payload, limit_s=limit_s)) for case in cases]
    assert_no_failures(results, seed)
    return summarize(results)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a run folder left by a case lands here, not in the checkout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "huge"])
@pytest.mark.parametrize("command", ["summary", "explain", "train"])
def test_special_spec_files_are_one_line_errors(tmp_path, kind, command):
    path = special_file(tmp_path, kind)
    args = [command, str(path)]
    if command == "train":
        args += [x for kv in QUICK.items() for x in kv] + ["--run-dir", str(tmp_path / "run")]
    outcome = run_cli(app, args, limit_s=30)
    assert outcome.kind == USER_ERROR, outcome
    assert str(path) in outcome.detail or "run folder" in outcome.detail, outcome


@pytest.mark.parametrize(
    "text, expect",
    [
        ("input: 8x8x1\nlayers:\n  - {null: 3}\n", "layer 1: key None is not a layer type"),
        ("input: 8x8x1\nlayers:\n  - batchnorm: {epsilon: .nan}\n", "epsilon=nan"),
        ("input: 8x8x1\nlayers:\n  - conv: {filters: 1000000000000}\n", "filters=1000000000000"),
        ("input: 8x8x1\nlayers: &a\n  - conv: *a\n", "contains itself"),
    ],
)
def test_hostile_spec_through_summary_and_train(tmp_path, text, expect):
    path = write_case(tmp_path / "net.yaml", text)
    for args in (
        ["summary", str(path)],
        ["train", str(path), *[x for kv in QUICK.items() for x in kv], "--run-dir", "run"],
    ):
        outcome = run_cli(app, args, limit_s=30)
        assert outcome.kind == USER_ERROR and expect in outcome.detail, (args, outcome)


def test_seed_beyond_int64_is_a_usage_error():
    quick = [x for kv in QUICK.items() for x in kv]
    outcome = run_cli(app, ["train", "--seed", str(2**70), *quick, "--run-dir", "run"])
    assert outcome.kind == USER_ERROR and "--seed" in outcome.detail, outcome


def test_fuzz_spec_commands(tmp_path):
    counts = _run(_spec_cases(tmp_path, seed=7, n=30), seed=7, limit_s=20)
    assert counts.get(USER_ERROR, 0) >= 10 and counts.get(OK, 0) >= 4, counts


def test_fuzz_flags(tmp_path):
    counts = _run(_flag_cases(seed=11, n=12, run_root=tmp_path / "runs"), seed=11)
    assert counts.get(USER_ERROR, 0) >= 10 and counts.get(OK, 0) >= 3, counts


@pytest.mark.slow
def test_fuzz_cli_many(tmp_path):
    cases = _spec_cases(tmp_path, seed=3, n=300) + _flag_cases(3, 120, tmp_path / "runs")
    counts = _run(cases, seed=3)
    assert counts.get(USER_ERROR, 0) >= 100, counts


@pytest.mark.parametrize("value", [str(2**63), "100000000000", "0", "-3"])
def test_summary_classes_of_a_registered_model_are_bounded(value):
    # lenet5's head used to get 2**63 from the flag: torch's TypeError became exit 1
    outcome = run_cli(app, ["summary", "lenet5", "-c", value])
    assert outcome.kind == USER_ERROR and "--classes" in outcome.detail, outcome


def test_fuzz_registered_model_summaries():
    rng = random.Random(5)
    cases = [
        Case(
            i,
            "summary",
            [
                "summary",
                rng.choice(["lenet5", "basic_cnn", "vgg6"]),
                rng.choice(["-i", "-c", "-d"]),
                rng.choice(INTS + SHAPES),
            ],
        )
        for i in range(6)
    ]
    counts = _run(cases, seed=5, limit_s=30)
    assert counts.get(USER_ERROR, 0) >= 2, counts
