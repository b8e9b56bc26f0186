"""Preference adapters: HPSv2's scoring math and ImageReward's grouping, with stand-in models.

The real models (open_clip ViT-H-14 + HPSv2 weights, ImageReward's BLIP) are not installed and
cannot be downloaded here; these tests cover our code around them, not the models.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from spatialgen.eval.metrics.preference import (
    HPSv2Scorer,
    ImageRewardScorer,
    _load_state_dict,
    resize_longest_and_pad,
)

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
PROMPTS = ["a red cube", "a blue sphere", "two cubes"]


class TinyOpenClip(nn.Module):
    """open_clip's interface in miniature: encode_image(pixels), encode_text(token ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.visual.image_size = 16
        self.image_proj = nn.Linear(8, 6)
        self.token_embedding = nn.Embedding(64, 6)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.image_proj(self.visual(image).mean(dim=(2, 3)))

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.token_embedding(text).mean(dim=1)


def tiny_tokenizer(prompts: list[str]) -> torch.Tensor:
    ids = torch.zeros(len(prompts), 8, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        codes = [ord(c) % 64 for c in prompt][:8]
        ids[i, : len(codes)] = torch.tensor(codes)
    return ids


@pytest.fixture
def model() -> TinyOpenClip:
    torch.manual_seed(0)
    return TinyOpenClip().eval()


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((16, 16, 3), (20, 32, 3), (30, 12, 3))]


def test_resize_longest_and_pad_centres_the_image() -> None:
    colour = torch.tensor([0.2, 0.6, 1.0]).view(3, 1, 1)
    # 24 x 10 -> scale 16/24 -> 16 x round(6.67) = 7 rows, padded 4 above and 5 below.
    out = resize_longest_and_pad(colour.expand(3, 10, 24).clone(), 16)
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out[:, 4:11], colour.expand(3, 7, 16))
    assert out[:, :4].abs().max() == 0 and out[:, 11:].abs().max() == 0
    # Portrait: padding left and right; an image of the right size is unchanged.
    tall = resize_longest_and_pad(colour.expand(3, 32, 16).clone(), 16)
    torch.testing.assert_close(tall[:, :, 4:12], colour.expand(3, 16, 8))
    assert tall[:, :, :4].abs().max() == 0 and tall[:, :, 12:].abs().max() == 0
    square = torch.rand(3, 16, 16)
    assert torch.equal(resize_longest_and_pad(square, 16), square)
    # Longer side already the target size: padded (the official transform would leave it non-square).
    assert resize_longest_and_pad(torch.rand(3, 9, 16), 16).shape == (3, 16, 16)


def test_hps_preprocess(model, images) -> None:
    scorer = HPSv2Scorer(model, tiny_tokenizer, image_size=16)
    pixels = scorer.preprocess(images)
    assert pixels.shape == (3, 3, 16, 16)
    exact = torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255.0
    torch.testing.assert_close(pixels[0], (exact - MEAN) / STD)
    # 20 x 32 landscape -> 10 x 16, 3 padding rows above: black before normalisation.
    torch.testing.assert_close(pixels[1][:, :3], ((0 - MEAN) / STD).expand(3, 3, 16))


def test_hps_score_is_the_diagonal_cosine(model, images) -> None:
    scorer = HPSv2Scorer(model, tiny_tokenizer, image_size=16, batch_size=2)
    scores = scorer.score(images, PROMPTS)
    with torch.no_grad():
        img = model.encode_image(scorer.preprocess(images))
        txt = model.encode_text(tiny_tokenizer(PROMPTS))
    expected = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    # Image i is scored against prompt i only, and batching does not change the numbers.
    assert scorer.score(images, PROMPTS[::-1]) != pytest.approx(scores, abs=1e-4)
    assert scorer.score(images, PROMPTS, batch_size=3) == pytest.approx(scores, abs=1e-6)
    assert scorer.score(images, "a red cube") == pytest.approx(scorer.score(images, ["a red cube"] * 3), abs=1e-6)
    with pytest.raises(ValueError, match="one prompt per image"):
        scorer.score(images, PROMPTS[:2])


def test_hps_from_pretrained_with_a_stand_in_open_clip(model, images, tmp_path, monkeypatch) -> None:
    checkpoint = tmp_path / "hps.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    fake = types.ModuleType("open_clip")
    fake.create_model = lambda name, pretrained=None: TinyOpenClip() if name == "ViT-H-14" else None
    fake.get_tokenizer = lambda name: tiny_tokenizer
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    scorer = HPSv2Scorer.from_pretrained(checkpoint)
    assert scorer.image_size == 16
    direct = HPSv2Scorer(model, tiny_tokenizer, image_size=16)
    assert scorer.score(images, PROMPTS) == pytest.approx(direct.score(images, PROMPTS), abs=1e-6)
    with pytest.raises(ValueError, match="unknown HPS version"):
        HPSv2Scorer.from_pretrained(version="v9")


def test_hps_checkpoint_reading(tmp_path) -> None:
    weights = {"module.w": torch.ones(2)}
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "hps.pt")
    assert list(_load_state_dict(tmp_path / "hps.pt")) == ["w"]
    torch.save({"state_dict": weights, "extra": types.SimpleNamespace(a=1)}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="tensors-only"):
        _load_state_dict(tmp_path / "code.pt")
    with pytest.raises(FileNotFoundError):
        _load_state_dict(tmp_path / "missing.pt")


def test_missing_packages_name_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=r"spatialgen\[hps\]"):
        HPSv2Scorer.from_pretrained("whatever.pt")
    monkeypatch.setitem(sys.modules, "ImageReward", None)
    with pytest.raises(ImportError, match=r"spatialgen\[imagereward\]"):
        ImageRewardScorer.from_pretrained()


class StandInReward:
    """The package's score(prompt, images): a list for several images, a bare float for one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def score(self, prompt, images):
        self.calls.append((prompt, len(images)))
        values = [len(prompt) + float(np.asarray(im).mean()) / 255.0 for im in images]
        return values[0] if len(values) == 1 else values


def test_imagereward_groups_by_prompt_and_keeps_order(images, monkeypatch) -> None:
    reward = StandInReward()
    scorer = ImageRewardScorer(reward)
    prompts = ["ab", "abcd", "ab"]
    scores = scorer.score(images, prompts)
    expected = [len(p) + im.mean() / 255.0 for p, im in zip(prompts, images, strict=True)]
    assert scores == pytest.approx(expected)
    assert sorted(reward.calls) == [("ab", 2), ("abcd", 1)]
    fake = types.ModuleType("ImageReward")
    fake.load = lambda name, device, download_root: reward if name == "ImageReward-v1.0" else None
    monkeypatch.setitem(sys.modules, "ImageReward", fake)
    assert ImageRewardScorer.from_pretrained().score(images[:1], "x") == pytest.approx([1 + images[0].mean() / 255])
    with pytest.raises(TypeError, match="score"):
        ImageRewardScorer(object())
