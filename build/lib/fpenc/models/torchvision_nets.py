"""torchvision ResNet18/34, VGG16, DenseNet121 and GoogLeNet adapted to small images.

Peng et al. (CVPR 2022) fingerprint these nets on CIFAR-10 (32x32) and TinyImageNet
(64x64). torchvision's versions are built for 224x224 ImageNet: their stems shrink the
input 4x (stride-2 7x7 conv + stride-2 max-pool) before the first block, which leaves a
32x32 image as an 8x8 map and throws away most of the spatial detail. Each builder
below therefore takes the torchvision model (always ``weights=None``: never pretrained,
nothing is downloaded) and applies the standard CIFAR adaptation, for any
``in_channels`` and ``num_classes``. The same adaptation is used for 64x64 inputs
(feature maps are then 2x larger per side and the nets ~4x more expensive).

Each builder returns ``(body, head)`` for :class:`fpenc.models.classifier.ImageClassifier`:
``body`` maps normalized images ``[B, C, H, W]`` to flattened penultimate features
``[B, D]`` and ``head`` is the final ``nn.Linear(D, num_classes)``. Replaced layers are
re-initialized the way torchvision initializes the layer they replace. Construction
draws from the global torch RNG; the caller seeds.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.googlenet import BasicConv2d
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers as make_vgg_layers

__all__ = [
    "build_densenet121",
    "build_googlenet",
    "build_resnet18",
    "build_resnet34",
    "build_vgg16",
]


def _kaiming_conv(conv: nn.Conv2d, **kwargs) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, **kwargs)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _resnet(factory, in_channels: int, num_classes: int) -> tuple[nn.Sequential, nn.Linear]:
    net = factory(weights=None, num_classes=num_classes)
    # CIFAR stem: 3x3 stride-1 conv, no max-pool (torchvision: 7x7 stride-2 conv + 3x3 stride-2 max-pool).
    conv1 = _kaiming_conv(
        nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
        mode="fan_out",
        nonlinearity="relu",
    )
    body = nn.Sequential(
        OrderedDict(
            conv1=conv1,
            bn1=net.bn1,
            relu=net.relu,
            layer1=net.layer1,
            layer2=net.layer2,
            layer3=net.layer3,
            layer4=net.layer4,
            avgpool=net.avgpool,
            flatten=nn.Flatten(),
        )
    )
    return body, net.fc


def build_resnet18(in_channels: int, input_size: tuple[int, int], num_classes: int) -> tuple[nn.Sequential, nn.Linear]:
    """torchvision ResNet18 with the CIFAR stem.

    Changed: ``conv1`` is a 3x3 stride-1 conv from ``in_channels`` (was 7x7 stride 2 from 3)
    and the stem max-pool is removed, so a 32x32 input reaches ``layer4`` as 4x4
    (64x64 -> 8x8) instead of 1x1. Features: ``[B, 512]``.
    """
    del input_size  # any size >= 8x8 works thanks to the adaptive average pool
    return _resnet(tvm.resnet18, in_channels, num_classes)


def build_resnet34(in_channels: int, input_size: tuple[int, int], num_classes: int) -> tuple[nn.Sequential, nn.Linear]:
    """torchvision ResNet34 with the CIFAR stem (see :func:`build_resnet18`). Features: ``[B, 512]``."""
    del input_size
    return _resnet(tvm.resnet34, in_channels, num_classes)


def build_vgg16(
    in_channels: int,
    input_size: tuple[int, int],
    num_classes: int,
    batch_norm: bool = True,
) -> tuple[nn.Sequential, nn.Linear]:
    """torchvision VGG16 for small images. Features: ``[B, 512]``.

    Changed:

    * ``batch_norm=True`` (default) uses the conv stack of torchvision's ``vgg16_bn``: plain VGG16
      (13 conv layers, no normalization) trained from scratch is prone to stalling at chance
      level unless the learning rate is tuned/warmed up, whereas the BN variant trains
      reliably with ordinary SGD settings.
      ``batch_norm=False`` gives the plain conv stack.
    * the first conv takes ``in_channels`` (was 3);
    * the 7x7 adaptive average pool + 25088 -> 4096 -> 4096 classifier (~120M parameters)
      becomes an adaptive average pool to 1x1, ``Linear(512, 512)``, ReLU, ``Dropout(0.5)``,
      then the head ``Linear(512, num_classes)``.

    The five 2x2 max-pools need inputs of at least 32x32 (32 -> 1x1, 64 -> 2x2).
    """
    del input_size
    # torchvision's own VGG16 ("D") conv stack; built without the VGG wrapper so the unused
    # 120M-parameter ImageNet classifier is never allocated.
    features = make_vgg_layers(vgg_cfgs["D"], batch_norm=batch_norm)
    first = features[0]
    features[0] = nn.Conv2d(in_channels, first.out_channels, kernel_size=3, padding=1)
    for m in features.modules():  # torchvision VGG's init
        if isinstance(m, nn.Conv2d):
            _kaiming_conv(m, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    hidden = nn.Linear(512, 512)
    head = nn.Linear(512, num_classes)
    for lin in (hidden, head):  # torchvision VGG's Linear init
        nn.init.normal_(lin.weight, 0, 0.01)
        nn.init.zeros_(lin.bias)
    body = nn.Sequential(
        OrderedDict(
            features=features,
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=hidden,
            relu=nn.ReLU(inplace=True),
            dropout=nn.Dropout(0.5),
        )
    )
    return body, head


def build_densenet121(
    in_channels: int, input_size: tuple[int, int], num_classes: int
) -> tuple[nn.Sequential, nn.Linear]:
    """torchvision DenseNet121 with a CIFAR stem. Features: ``[B, 1024]``.

    Changed: ``features.conv0`` is a 3x3 stride-1 conv from ``in_channels`` (was 7x7 stride 2
    from 3) and ``features.pool0`` (3x3 stride-2 max-pool) is an identity, so a 32x32 input
    enters ``denseblock1`` at 32x32 and ``denseblock4`` at 4x4. The final ReLU + global
    average pool of ``DenseNet.forward`` are explicit modules of the body.
    """
    del input_size
    net = tvm.densenet121(weights=None, num_classes=num_classes)
    old = net.features.conv0
    net.features.conv0 = _kaiming_conv(nn.Conv2d(in_channels, old.out_channels, 3, stride=1, padding=1, bias=False))
    net.features.pool0 = nn.Identity()
    body = nn.Sequential(
        OrderedDict(
            features=net.features,
            relu=nn.ReLU(inplace=True),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    return body, net.classifier


def build_googlenet(in_channels: int, input_size: tuple[int, int], num_classes: int) -> tuple[nn.Sequential, nn.Linear]:
    """torchvision GoogLeNet (Inception v1) for small images. Features: ``[B, 1024]``.

    Built with ``aux_logits=False`` (no auxiliary classifiers: one logits tensor),
    ``transform_input=False`` (normalization is the ``ImageClassifier``'s job) and
    ``init_weights=True`` (torchvision's truncated-normal init). Changed: ``conv1`` is a
    3x3 stride-1 ``BasicConv2d`` from ``in_channels`` (was 7x7 stride 2 from 3) and
    ``maxpool1``/``maxpool2`` are dropped, so a 32x32 input reaches the inception-3
    blocks at 32x32, inception-4 at 16x16 and inception-5 at 8x8 (the usual CIFAR
    GoogLeNet). The 0.2 dropout before ``fc`` ends the body (identity in eval mode).
    """
    del input_size
    net = tvm.googlenet(
        weights=None, num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
    )
    conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
    torch.nn.init.trunc_normal_(conv1.conv.weight, mean=0.0, std=0.01, a=-2, b=2)  # as init_weights=True does
    body = nn.Sequential(
        OrderedDict(
            conv1=conv1,
            conv2=net.conv2,
            conv3=net.conv3,
            inception3a=net.inception3a,
            inception3b=net.inception3b,
            maxpool3=net.maxpool3,
            inception4a=net.inception4a,
            inception4b=net.inception4b,
            inception4c=net.inception4c,
            inception4d=net.inception4d,
            inception4e=net.inception4e,
            maxpool4=net.maxpool4,
            inception5a=net.inception5a,
            inception5b=net.inception5b,
            avgpool=net.avgpool,
            flatten=nn.Flatten(),
            dropout=net.dropout,
        )
    )
    return body, net.fc
