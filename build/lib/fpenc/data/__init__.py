"""Data of the pipeline, without Lightning: dataset readers (:mod:`fpenc.data.datasets`, over the
format readers :mod:`fpenc.data.fashion_mnist`, :mod:`fpenc.data.cifar10` and
:mod:`fpenc.data.tiny_imagenet`, which return an :class:`fpenc.data.arrays.ImageArrays`), the
seeded victim / attacker / homologous splits (:mod:`fpenc.data.splits`) and in-memory image
batches and loaders (:mod:`fpenc.data.images`). The LightningDataModules over them live in the
top-level ``datamodules`` package, which imports this one (never the other way round)."""
