"""Model architectures (pure ``nn.Module``s): the registry, the shared classifier shape and the nets.

Every model is an :class:`ImageClassifier` (``normalize -> body -> head``) taking images
``[B, C, H, W]`` in [0, 1] and returning logits ``[B, K]``; ``features(x)`` gives the
penultimate representation ``[B, D]``. Build one with :func:`build_model` and persist
``arch_config(model)`` next to its ``state_dict``.
"""

from fpenc.models.classifier import ImageClassifier, Normalize
from fpenc.models.fmnist_cnn import FMNIST_ARCS, FmnistArcSpec, build_fmnist_cnn
from fpenc.models.registry import (
    ARCHITECTURES,
    ArchSpec,
    arch_config,
    build_model,
    canonical_arch,
    known_architectures,
    resolve_architecture,
)
from fpenc.models.torchvision_nets import (
    build_densenet121,
    build_googlenet,
    build_resnet18,
    build_resnet34,
    build_vgg16,
)

__all__ = [
    "ARCHITECTURES",
    "FMNIST_ARCS",
    "ArchSpec",
    "FmnistArcSpec",
    "ImageClassifier",
    "Normalize",
    "arch_config",
    "build_densenet121",
    "build_fmnist_cnn",
    "build_googlenet",
    "build_model",
    "build_resnet18",
    "build_resnet34",
    "build_vgg16",
    "canonical_arch",
    "known_architectures",
    "resolve_architecture",
]
