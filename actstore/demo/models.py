"""The two embedded demo models, built from torchvision's own building blocks.

Both take 3x32x32 inputs (the digits upsampled) and keep an 8x8 map in their last conv block,
so interpretation maps have room. Widths are sized to train in seconds on 2 CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.vgg import VGG, make_layers

__all__ = ["DemoResNet", "demo_resnet", "demo_vgg", "DEMO_VGG_CFG", "DEMO_MODELS", "register"]

DEMO_MODELS = ("demo-resnet", "demo-vgg")

DEMO_VGG_CFG: list[int | str] = [16, "M", 32, "M", 64, 64]


class DemoResNet(nn.Module):
    """A narrow ResNet of torchvision ``BasicBlock`` s: stem, layer1..layer3, avgpool, fc.

    Node names follow torchvision's ResNet (``layer3``, ``layer3.0.relu_1``, ``fc``), so the same
    layer names, heads and ReLU-call counting apply to both.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, inplanes = [], widths[0]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def demo_resnet(num_classes: int = 10) -> DemoResNet:
    """``demo-resnet``: BasicBlock ResNet, widths 16-32-64, last block ``layer3`` at 8x8x64."""
    return DemoResNet(num_classes)


def demo_vgg(num_classes: int = 10) -> VGG:
    """``demo-vgg``: torchvision ``VGG`` over ``make_layers`` (BN), last conv ReLU at 8x8x64.

    The stock classifier expects 512x7x7 inputs (102 M weights); it is built on the meta device
    and replaced by a small 1x1-pooled head, so nothing large is ever allocated.
    """
    with torch.device("meta"):
        model = VGG(make_layers(DEMO_VGG_CFG, batch_norm=True), num_classes=num_classes, init_weights=False)
    model.features = make_layers(DEMO_VGG_CFG, batch_norm=True)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    width = int(next(c for c in reversed(DEMO_VGG_CFG) if isinstance(c, int)))
    model.classifier = nn.Sequential(
        nn.Linear(width, 64), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(64, num_classes)
    )
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def register() -> None:
    """Entry point (``actstore.models``): make ``demo-resnet`` and ``demo-vgg`` models every verb knows, with
    their trained weights (trained on the digits once, cached) and the digits' normalisation."""
    from ..extract.datasets import DIGITS_MEAN, DIGITS_SIZE, DIGITS_STD
    from ..extract.models import ModelSpec, register_model
    from ..config import home
    from .train import demo_weights

    mean, std = (DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3
    for name, build, family in (("demo-resnet", demo_resnet, "resnet"), ("demo-vgg", demo_vgg, "vgg")):
        register_model(ModelSpec(name, build, family, DIGITS_SIZE, 10, trained=lambda n=name: demo_weights(n),
                                 is_trained=lambda n=name: (home() / "models" / f"{n}.pt").is_file(),
                                 mean=mean, std=std))
