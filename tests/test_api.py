import pytest
import torch

from fpenc.api import ApiSpec, apply_api, parse_api
from fpenc.errors import ConfigError


def test_parse_api_forms():
    assert parse_api("probs") == ApiSpec("probs")
    assert parse_api("topk:3") == ApiSpec("topk", 3)
    assert parse_api("label") == ApiSpec("label")
    assert str(parse_api("topk:2")) == "topk:2"
    for bad in ["topk:0", "topk:x", "logits", ""]:
        with pytest.raises(ConfigError, match="probs, topk:K"):
            parse_api(bad)


def test_apply_api_topk_and_label():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert torch.equal(apply_api(probs, "probs"), probs)
    top1 = apply_api(probs, "topk:1")
    assert torch.allclose(top1, torch.tensor([[0.0, 0.6, 0.0], [0.5, 0.0, 0.0]]))
    top2 = apply_api(probs, "topk:2")
    assert torch.allclose(top2, torch.tensor([[0.0, 0.6, 0.3], [0.5, 0.0, 0.3]]))
    assert torch.equal(apply_api(probs, "label"), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.equal(apply_api(probs, "topk:10"), probs)  # k larger than K keeps everything
