"""Pretrained weights: torchvision state dicts into the zoo, heads dropped/replaced, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from cnnlab import create_model
from cnnlab.build_record import record_of
from cnnlab.errors import WeightsError
from cnnlab.models.pretrained import imagenet_weights, read_state_dict


def test_torchvision_mobilenet_v2_loads_headless_and_matches(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2().eval()
    torch.save(reference.state_dict(), tmp_path / "mnv2.pth")
    with pytest.warns(UserWarning, match=r"its head \(classifier: 2 tensors\) unused"):
        model = create_model(
            "mobilenet_v2",
            include_top=False,
            input_shape="64x64x3",
            pretrained=tmp_path / "mnv2.pth",
        )
    x = torch.randn(2, 3, 64, 64)
    expected = reference.features(x).mean(dim=(2, 3))
    torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-5)
    assert record_of(model).pretrained.mean == (0.485, 0.456, 0.406)


def test_head_of_other_class_count_is_replaced_and_said(tmp_path):
    reference = torchvision.models.resnet18()
    save_file(reference.state_dict(), tmp_path / "r18.safetensors")
    with pytest.warns(UserWarning, match="new head initialized: fc.bias, fc.weight"):
        model = create_model("resnet18", num_classes=5, pretrained=tmp_path / "r18.safetensors")
    assert model.fc.weight.shape == (5, 512)
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)
    assert len(record_of(model).pretrained.loaded) == len(reference.state_dict()) - 2


def test_prefixes_of_ddp_and_compile_are_removed(tmp_path):
    state = torchvision.models.squeezenet1_1().state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    loaded = read_state_dict(tmp_path / "w.pt")
    assert set(loaded) == set(state)


def test_other_key_mismatches_are_errors_listing_keys(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state["layer5.0.weight"] = torch.zeros(3)
    del state["layer1.0.conv1.weight"]
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        create_model("resnet18", pretrained=tmp_path / "bad.pth")
    text = str(err.value)
    assert "unexpected keys (1): layer5.0.weight" in text
    assert "missing keys (1): layer1.0.conv1.weight" in text
    assert "conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)" in text


class Payload:
    """Anything that is not a tensor: a pickle that weights_only loading must refuse."""


def test_pickled_objects_are_refused_and_files_named(tmp_path):
    torch.save({"weight": torch.zeros(2), "extra": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"evil.pth' holds more than tensors and is refused"):
        read_state_dict(tmp_path / "evil.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(WeightsError, match=r"cut\.safetensors' is not a readable safetensors"):
        read_state_dict(tmp_path / "cut.safetensors")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"unknown suffix '\.npz'"):
        read_state_dict(tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="not a run"):
        read_state_dict(tmp_path)


def _relays_torch_advice(text: str) -> bool:
    """Whether ``text`` passes on torch's advice to load with weights_only=False (which would
    run the file's code), or any of torch's multi-line explanation."""
    lowered = text.lower()
    return "weights_only" in lowered or "re-run" in lowered or "\n" in text or "\x1b" in text


@pytest.mark.parametrize("payload", [Payload(), print], ids=["object", "function"])
def test_refusal_says_why_and_never_relays_torchs_advice(tmp_path, payload):
    torch.save({"weight": torch.zeros(2), "extra": payload}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError) as err:
        read_state_dict(tmp_path / "evil.pth")
    text = str(err.value)
    assert "evil.pth' holds more than tensors" in text and "is refused" in text
    assert "Payload" in text or "print" in text  # names what it refused
    assert not _relays_torch_advice(text), text


def test_imagenet_file_with_objects_is_refused_without_torchs_advice(tmp_path, monkeypatch):
    """A hub-cache file that holds a pickled object: refused in cnnlab's words."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = imagenet_weights("squeezenet1_1").url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"features.0.weight": Payload()}, cache / url.rsplit("/", 1)[1])
    with pytest.raises(WeightsError, match=r"holds more than tensors.*is refused") as err:
        create_model("squeezenet1_1", pretrained="imagenet")
    assert not _relays_torch_advice(str(err.value)), str(err.value)


def test_imagenet_uses_torchvision_hub_cache(tmp_path, monkeypatch):
    """The real mechanism, offline: torchvision reads $TORCH_HOME/hub/checkpoints first."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.squeezenet1_1()
    url = imagenet_weights("squeezenet1_1").url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same class count: nothing to say
        model = create_model("squeezenet1_1", pretrained="imagenet")
    torch.testing.assert_close(model.features[0].weight, reference.features[0].weight)
    assert record_of(model).pretrained.source.startswith("imagenet:SqueezeNet1_1_Weights")


def test_imagenet_failures_say_what_to_do(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"Without a network, download that file elsewhere"):
        create_model("resnet18", pretrained="imagenet")
    with pytest.raises(WeightsError, match=r"no published ImageNet weights.*mobilenet_v2"):
        create_model("xception", pretrained="imagenet")
