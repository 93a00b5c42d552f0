"""study.pretrain_visual: the ImageNet stand-in trunk and the path that loads it."""
import pytest
import torch

from models import build_model
from tests.fixtures import tiny


def test_imagenet_stand_in_loads_through_the_imagenet_path(tmp_path):
    """study.pretrain_visual writes a torchvision-layout trunk that model.pretrained=imagenet with
    model.pretrained_path loads at the config's width; a file of another width is named."""
    from study.pretrain_visual import main as pretrain
    out = tmp_path / "trunk.pth"
    report = pretrain(["--config", "configs/synthetic.yaml", "--out", str(out), "--items", "64",
                       "--held-out", "32", "--epochs", "1", "--batch", "32", "model.width=8",
                       "data.image_size=32"])
    assert set(report["held_out"]) == {"per_class_accuracy", "exact_match", "mAP"}
    state = torch.load(out, weights_only=True)
    assert "conv1.weight" in state and "layer4.1.bn2.weight" in state and "fc.weight" in state
    model = build_model(tiny("model.width=8", "model.pretrained=imagenet",
                             f"model.pretrained_path={out}"))
    for k, v in model.visual.trunk.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(ValueError, match=r"trunk.pth does not fit the visual ResNet18 of width 16"):
        build_model(tiny("model.width=16", "model.pretrained=imagenet",
                         f"model.pretrained_path={out}"))
