"""Two small families outside Table 1, for suspects fpenc never trains its encoder on: a
multi-layer perceptron and a residual CNN with BatchNorm (both fast on 28x28 images).

Each builder returns ``(body, head)`` for :class:`fpenc.models.classifier.ImageClassifier`:
``body`` maps normalized images ``[B, C, H, W]`` to penultimate features ``[B, D]``, ``head`` is
``nn.Linear(D, num_classes)``. Construction draws from the global torch RNG; the caller seeds.
"""

from __future__ import annotations

from torch import nn

__all__ = ["build_bn_resnet", "build_mlp"]


def build_mlp(
    in_channels: int, input_size: tuple[int, int], num_classes: int, hidden: tuple[int, ...] = (256, 128)
) -> tuple[nn.Module, nn.Linear]:
    """Flatten ``[B, C, H, W]`` -> ``Linear + ReLU`` per width of ``hidden`` -> ``[B, hidden[-1]]``."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * input_size[0] * input_size[1]
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
        width = int(h)
    return nn.Sequential(*layers), nn.Linear(width, num_classes)


class _Block(nn.Module):
    """Pre-activation-free basic residual block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def build_bn_resnet(
    in_channels: int, input_size: tuple[int, int], num_classes: int, channels: tuple[int, ...] = (16, 32, 64)
) -> tuple[nn.Module, nn.Linear]:
    """Stem ``conv3x3 + BN + ReLU`` at ``channels[0]``, one residual block per width (stride 2 from
    the second on), global average pooling -> ``[B, channels[-1]]``."""
    c0 = int(channels[0])
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c0),
        nn.ReLU(inplace=True),
    ]
    cin = c0
    for i, c in enumerate(int(c) for c in channels):
        layers.append(_Block(cin, c, 1 if i == 0 else 2))
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), nn.Linear(cin, num_classes)
