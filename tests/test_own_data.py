"""The owner's own data: an .npz of arrays or an image folder per class, read into the same
in-memory dataset as the built-in ones (compared with the arrays they were written from), and a
zoo trained on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from fpenc.data.datasets import load_dataset, num_classes_of
from fpenc.errors import DatasetNotFoundError, FpencError


def tiny_arrays(seed: int = 0, n_train: int = 120, n_test: int = 40):
    """Grey 12x12 images, 3 classes: class c has a bright band at rows 4c..4c+2."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 50, (n, 12, 12)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 4 * c : 4 * c + 3] = 220
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


def test_npz_layouts_read_as_arrays(tmp_path):
    a = tiny_arrays()
    np.savez(tmp_path / "grey.npz", **a, classes=np.array(["low", "mid", "high"]))
    d = load_dataset("npz", root=str(tmp_path / "grey.npz"))
    assert d.train_x.shape == (120, 1, 12, 12) and d.train_x.dtype == torch.uint8
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(a["train_x"])) and d.classes == ["low", "mid", "high"]
    assert num_classes_of("npz", str(tmp_path / "grey.npz")) == 3
    rgb = {
        **a,
        "train_x": np.repeat(a["train_x"][..., None], 3, -1) / 255.0,
        "test_x": np.repeat(a["test_x"][..., None], 3, -1) / 255.0,
    }
    np.savez(tmp_path / "rgb.npz", **rgb)  # float [N, H, W, C] in [0, 1]
    d = load_dataset("npz", root=str(tmp_path / "rgb.npz"))
    assert d.train_x.shape == (120, 3, 12, 12) and torch.equal(d.train_x[:, 1], torch.from_numpy(a["train_x"]))
    np.savez(tmp_path / "bad.npz", **{**a, "train_x": a["train_x"] * 2.0})
    with pytest.raises(FpencError, match="float images must be in \\[0, 1\\]"):
        load_dataset("npz", root=str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "short.npz", train_x=a["train_x"])
    with pytest.raises(FpencError, match="lacks train_y, test_x, test_y"):
        load_dataset("npz", root=str(tmp_path / "short.npz"))
    with pytest.raises(DatasetNotFoundError, match="needs data.root"):
        load_dataset("npz")


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    from PIL import Image

    a = tiny_arrays(n_train=12, n_test=6)
    names = ["bag", "coat", "shoe"]
    for split in ("train", "test"):
        for i, (x, y) in enumerate(zip(a[f"{split}_x"], a[f"{split}_y"])):
            folder = tmp_path / "imgs" / split / names[y]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x, mode="L").save(folder / f"{i:03d}.png")
    d = load_dataset("image_folder", root=str(tmp_path / "imgs"))
    assert (
        d.classes == names
        and d.train_x.shape == (12, 1, 12, 12)
        and num_classes_of("image_folder", str(tmp_path / "imgs")) == 3
    )
    order = np.argsort([f"{names[y]}/{i:03d}" for i, y in enumerate(a["train_y"])], kind="stable")
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(a["train_x"][order]))
    assert torch.equal(d.train_y, torch.from_numpy(a["train_y"][order]))
    (tmp_path / "imgs/test/hat").mkdir()
    with pytest.raises(FpencError, match="has classes hat that train/ lacks"):
        load_dataset("image_folder", root=str(tmp_path / "imgs"))
    with pytest.raises(DatasetNotFoundError, match="train/<class>/ and test/<class>/"):
        load_dataset("image_folder", root=str(tmp_path))


def test_zoo_trains_on_an_npz(tmp_path):
    from fpenc.cli import main

    a = tiny_arrays(n_train=300, n_test=60)
    big = {
        k: (np.kron(v, np.ones((1, 2, 2), dtype=np.uint8))[:, :, :] if k.endswith("_x") else v) for k, v in a.items()
    }
    np.savez(tmp_path / "mine.npz", **big)  # 24x24 grey images, 3 classes
    config = tiny_config(
        tmp_path,
        tmp_path / "mine.npz",
        "npzzoo",
        ["{role: homologous, architectures: [mlp], epochs: 1, batch_sizes: [64]}"],
    )
    config.write_text(config.read_text().replace("dataset: fashion_mnist", "dataset: npz"))
    assert main(["zoo", "--config", str(config), "--no-progress"]) == 0
    import json

    manifest = json.loads((tmp_path / "runs/npzzoo/manifest.json").read_text())
    assert manifest["num_classes"] == 3 and manifest["input_shape"] == [1, 24, 24]
    assert manifest["models"][0]["test_accuracy"] > 0.6


DM_MODULE = '''
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class TinyDM(pl.LightningDataModule):
    """The owner's datamodule: float images in [0, 1], 3 classes."""

    num_classes = 3
    classes = ["low", "mid", "high"]

    def __init__(self, n_train: int = 90, seed: int = 0):
        super().__init__()
        self.n_train, self.seed = n_train, seed

    def setup(self, stage=None):
        rng = np.random.default_rng(self.seed)
        n = self.n_train if stage == "fit" else 30
        y = rng.integers(0, 3, n)
        x = rng.random((n, 1, 12, 12)).astype(np.float32) * 0.2
        for i, c in enumerate(y):
            x[i, 0, 4 * c : 4 * c + 3] = 0.9
        self.ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=32)

    def test_dataloader(self):
        return DataLoader(self.ds, batch_size=32)
'''


def test_a_lightning_datamodule_by_class_path(tmp_path, monkeypatch):
    from fpenc.config.schema import DataConfig
    from fpenc.data.datasets import load_data

    (tmp_path / "owndm.py").write_text(DM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    d = load_data(DataConfig(dataset="owndm.TinyDM", init_args={"n_train": 70}))
    assert d.train_x.shape == (70, 1, 12, 12) and d.test_x.shape == (30, 1, 12, 12) and d.train_x.dtype == torch.uint8
    assert d.classes == ["low", "mid", "high"] and int(d.train_x.max()) == round(0.9 * 255)
    assert num_classes_of("owndm.TinyDM", None, {}) == 3
    with pytest.raises(FpencError, match="fix data.init_args"):
        load_data(DataConfig(dataset="owndm.TinyDM", init_args={"size": 3}))
    from fpenc.errors import ConfigError

    with pytest.raises(ConfigError, match="has no LightningDataModule class 'Nope'"):
        load_data(DataConfig(dataset="owndm.Nope"))
