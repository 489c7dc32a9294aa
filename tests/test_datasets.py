"""Tests for fpenc.data.datasets and datamodules.image (over fpenc.data.images) on tiny generated files."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fpenc.data import datasets
from fpenc.data.datasets import FMNIST_CLASSES, load_dataset, locate_dataset, read_idx
from fpenc.errors import ConfigError, DatasetNotFoundError, FpencError

N_TRAIN, N_TEST = 40, 12


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the 4 IDX files (``N_TRAIN`` / ``N_TEST`` images 28x28) and return their contents."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    content = {
        "train_x": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for key, stem in datasets.FMNIST_FILES.items():
        magic = 2051 if key.endswith("_x") else 2049
        data = _idx_bytes(content[key], magic)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return content


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "FMNIST_DEBIAN_ROOT", str(tmp_path / "no-such-debian-dir"))


# ----------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_fmnist_idx(tmp_path, no_debian, gz):
    content = write_fmnist(tmp_path, gz=gz)
    arrays = load_dataset("fashion_mnist", root=str(tmp_path))
    assert arrays.name == "fashion_mnist" and arrays.source == str(tmp_path)
    assert arrays.train_x.shape == (N_TRAIN, 1, 28, 28) and arrays.train_x.dtype == torch.uint8
    assert arrays.test_x.shape == (N_TEST, 1, 28, 28)
    assert arrays.train_y.dtype == torch.int64 and arrays.test_y.shape == (N_TEST,)
    assert np.array_equal(arrays.train_x[:, 0].numpy(), content["train_x"])
    assert np.array_equal(arrays.test_y.numpy(), content["test_y"])
    assert arrays.input_shape == (1, 28, 28) and arrays.num_classes == 10
    assert arrays.classes == FMNIST_CLASSES and arrays.classes[9] == "Ankle boot"


def test_fmnist_torchvision_layout(tmp_path, no_debian):
    write_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    arrays = load_dataset("fashion_mnist", root=str(tmp_path))
    assert arrays.train_x.shape == (N_TRAIN, 1, 28, 28)


def test_fmnist_debian_fallback(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_fmnist(debian, gz=True)
    monkeypatch.setattr(datasets, "FMNIST_DEBIAN_ROOT", str(debian))
    assert locate_dataset("fashion_mnist", root=str(tmp_path / "empty")) == debian
    assert load_dataset("fashion_mnist").source == str(debian)


def test_fmnist_missing_names_all_ways(tmp_path, no_debian):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", root=str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg
    assert "data.root" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "data.download: true" in msg and isinstance(info.value, FileNotFoundError)


def test_fmnist_truncated_idx(tmp_path, no_debian):
    write_fmnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FpencError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_fmnist_truncated_gzip(tmp_path, no_debian):
    write_fmnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(FpencError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_idx_bytes(np.zeros(3, np.uint8), 2049))
    with pytest.raises(FpencError, match="magic number 2049"):
        read_idx(path, 2051)


@pytest.mark.skipif(not Path(datasets.FMNIST_DEBIAN_ROOT).is_dir(), reason="dataset-fashion-mnist not installed")
def test_fmnist_real_debian():
    arrays = load_dataset("fashion_mnist")
    assert arrays.train_x.shape == (60000, 1, 28, 28) and arrays.test_x.shape == (10000, 1, 28, 28)
    assert arrays.train_y.shape == (60000,) and set(arrays.train_y.unique().tolist()) == set(range(10))
    assert arrays.train_x.dtype == torch.uint8 and int(arrays.train_x.max()) == 255


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="fashion_mnist, cifar10, tiny_imagenet"):
        load_dataset("mnist")


# ----------------------------------------------------------------------------- CIFAR-10


def write_cifar(root: Path, per_batch: int = 4) -> np.ndarray:
    """Write ``cifar-10-batches-py`` with ``per_batch`` images per batch; return train data [N,3072]."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with (folder / name).open("wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh)
        if name != "test_batch":
            train.append((data, labels))
    with (folder / "batches.meta").open("wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in datasets.CIFAR10_CLASSES]}, fh)
    return train


def test_cifar10(tmp_path):
    train = write_cifar(tmp_path)
    arrays = load_dataset("cifar10", root=str(tmp_path))
    assert arrays.train_x.shape == (20, 3, 32, 32) and arrays.train_x.dtype == torch.uint8
    assert arrays.test_x.shape == (4, 3, 32, 32) and arrays.test_y.dtype == torch.int64
    first, labels = train[0]
    # CIFAR rows are 1024 R, then 1024 G, then 1024 B values, each 32x32 row-major
    assert np.array_equal(arrays.train_x[0, 1].numpy().ravel(), first[0, 1024:2048])
    assert arrays.train_y[:4].tolist() == labels
    assert arrays.classes[0] == "airplane" and arrays.num_classes == 10
    assert arrays.input_shape == (3, 32, 32)


def test_cifar10_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz.*data.download: true"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar10_corrupt(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(FpencError, match="data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path))


# ----------------------------------------------------------------------------- Tiny ImageNet


def write_tiny(root: Path) -> None:
    """Two wnids, 3 train images each (one 32x32 to test resizing), 2 val images, RGB + grayscale."""
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # deliberately unsorted
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\nn09\tother\n")
    for k, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(3):
            size = 32 if i == 2 else 64
            Image.new("RGB", (size, size), (k * 100, 50, 200)).save(images / f"{wnid}_{i}.JPEG")
    Image.new("L", (64, 64), 128).save(folder / "val" / "images" / "val_0.JPEG")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(folder / "val" / "images" / "val_1.JPEG")
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t10\t10\nval_1.JPEG\tn01\t1\t2\t3\t4\n")


def test_tiny_imagenet(tmp_path):
    write_tiny(tmp_path)
    arrays = load_dataset("tiny_imagenet", root=str(tmp_path))
    assert arrays.train_x.shape == (6, 3, 64, 64) and arrays.train_x.dtype == torch.uint8
    assert arrays.test_x.shape == (2, 3, 64, 64)
    assert arrays.classes == ["goldfish", "tabby"]  # labels follow sorted wnids
    assert arrays.train_y.tolist() == [0, 0, 0, 1, 1, 1] and arrays.test_y.tolist() == [1, 0]
    assert arrays.train_y.dtype == torch.int64
    assert abs(int(arrays.train_x[0, 0].float().mean()) - 100) < 8  # red channel of n01 (label 0)
    assert int(arrays.train_x[3, 0].float().mean()) < 8  # red channel of n02 (label 1)
    assert abs(int(arrays.test_x[0].float().mean()) - 128) < 4  # grayscale -> RGB
    assert int(arrays.test_x[1, 0].float().mean()) > 240 and int(arrays.test_x[1, 1].float().mean()) < 15


def test_tiny_imagenet_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="tiny-imagenet-200.zip.*unzip"):
        load_dataset("tiny_imagenet", root=str(tmp_path))


# ----------------------------------------------------------------------------- ImageDataModule


def test_datamodule_batches_cover_split(tmp_path, no_debian):
    from datamodules import ImageDataModule
    from fpenc.data.splits import make_splits

    write_fmnist(tmp_path, gz=True)
    splits = make_splits(N_TRAIN, seed=3)
    dm = ImageDataModule("fashion_mnist", root=str(tmp_path), split="victim", splits=splits, batch_size=7, seed=5)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    seen = []
    for x, y, idx in dm.train_dataloader():
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and len(x) <= 7
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
        assert torch.equal(y, dm.arrays.train_y[idx])
        assert torch.equal(x, dm.arrays.train_x[idx].float() / 255)
        seen.append(idx)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == splits["victim"].tolist()
    assert seen.tolist() != splits["victim"].tolist()  # shuffled
    test_idx = torch.cat([b[2] for b in dm.test_dataloader()])
    assert test_idx.tolist() == list(range(N_TEST))


def test_datamodule_seeded_and_val(tmp_path, no_debian):
    from datamodules import ImageDataModule

    write_fmnist(tmp_path, gz=False)
    arrays = load_dataset("fashion_mnist", root=str(tmp_path))

    def order(seed: int, val_fraction: float = 0.0):
        dm = ImageDataModule(arrays=arrays, batch_size=8, seed=seed, val_fraction=val_fraction)
        dm.setup()
        return dm, torch.cat([b[2] for b in dm.train_dataloader()]).tolist()

    assert order(1)[1] == order(1)[1] and order(1)[1] != order(2)[1]
    dm, train_idx = order(1, val_fraction=0.25)
    val_idx = torch.cat([b[2] for b in dm.val_dataloader()]).tolist()
    assert len(val_idx) == 10 and not set(val_idx) & set(train_idx)
    assert sorted(val_idx + train_idx) == list(range(N_TRAIN))
    assert order(1)[0].val_dataloader() == []


def test_datamodule_bad_args(tmp_path, no_debian):
    from datamodules import ImageDataModule

    with pytest.raises(ConfigError, match="unknown split"):
        ImageDataModule(split="thief", splits={"victim": np.arange(3)})
    with pytest.raises(ConfigError, match="val_fraction"):
        ImageDataModule(val_fraction=1.0)
    with pytest.raises(DatasetNotFoundError):
        ImageDataModule(root=str(tmp_path)).prepare_data()


def test_train_loader_serves_exactly_the_datamodules_batches(tmp_path, no_debian):
    """The zoo, the UAP bank and the fine-tuned copies train on fpenc.data.images.train_loader: the
    same batches, in the same order, as ImageDataModule's train loader with the same seed."""
    from datamodules import ImageDataModule
    from fpenc.data.images import train_loader
    from fpenc.data.splits import make_splits

    write_fmnist(tmp_path, gz=False)
    arrays = load_dataset("fashion_mnist", root=str(tmp_path))
    splits = make_splits(N_TRAIN, seed=3)
    dm = ImageDataModule(arrays=arrays, split="attacker", splits=splits, batch_size=6, seed=4)
    dm.setup("fit")
    expected_loader, loader = dm.train_dataloader(), train_loader(arrays, splits, "attacker", 6, seed=4)
    for _ in range(2):  # the second epoch draws its order from the same generator, in both
        expected, got = list(expected_loader), list(loader)
        assert len(got) == len(expected) == 4
        assert all(torch.equal(a, b) for e, g in zip(expected, got) for a, b in zip(e, g))
    with pytest.raises(ConfigError, match="unknown split"):
        train_loader(arrays, splits, "thief", 6, seed=4)
    with pytest.raises(ConfigError, match="outside"):
        train_loader(arrays, {"victim": np.array([0, N_TRAIN])}, "victim", 6, seed=4)
