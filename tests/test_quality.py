"""Quality metrics: CMMD / MMD estimator, Fréchet distance, CLIP embedder and score, recogniser stand-ins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from spatialgen.eval import SceneRecogniser
from spatialgen.eval.metrics.clip import ClipImageEmbedder, ClipScorer
from spatialgen.eval.metrics.distances import (
    cmmd,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    mmd_rbf,
)
from spatialgen.eval.metrics.images import centre_crop_resize
from spatialgen.eval.metrics.quality import (
    DEFAULT_RECOGNISER_LAYERS,
    compare_image_sets,
    recogniser_features,
    scene_quality,
    scene_reference_images,
)
from spatialgen.eval.runs.image_sets import list_images
from spatialgen.models.tokenizer import build_word_tokenizer
from spatialgen.scenes import make_sample, scene_seed

try:  # transformers 5 splits the PIL and torchvision backends; 4.x's class is the PIL one
    from transformers import CLIPImageProcessorPil as _ImageProcessor
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers import CLIPImageProcessor as _ImageProcessor

PROMPTS = ["a red cube", "a blue sphere left of a red cube", "the cube", "a sphere", "red"]


# ------------------------------------------------------------------------------------ MMD / CMMD


def test_mmd_of_a_set_with_itself_is_zero_and_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 6, generator=g), torch.randn(5, 6, generator=g) + 0.5
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-12)
    assert cmmd(x, y) == pytest.approx(cmmd(y, x), rel=1e-12)
    assert cmmd(x, y) > 0


def test_mmd_matches_the_hand_computed_biased_estimator() -> None:
    # x = {a, b} with |a - b| = 5, y = {a}. Biased (diagonals included):
    # k_xx = (2 + 2e) / 4, k_yy = 1, k_xy = (1 + e) / 2  ->  MMD^2 = (1 - e) / 2, e = exp(-25 / (2 sigma^2)).
    x, y = [[0.0, 0.0], [3.0, 4.0]], [[0.0, 0.0]]
    for sigma in (10.0, 5.0):
        e = math.exp(-25.0 / (2 * sigma**2))
        assert mmd_rbf(x, y, sigma=sigma) == pytest.approx(1000 * (1 - e) / 2, rel=1e-12)
    assert mmd_rbf(x, y, scale=1.0) == pytest.approx((1 - math.exp(-25 / 200)) / 2, rel=1e-12)


def test_cmmd_normalises_embeddings_first() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 4, generator=g), torch.randn(7, 4, generator=g)
    unit_x, unit_y = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    # float32 inputs are normalised in float32: equal up to its rounding.
    assert cmmd(3.0 * x, y) == pytest.approx(cmmd(x, y), rel=1e-6)
    assert cmmd(x, y) == pytest.approx(mmd_rbf(unit_x, unit_y), rel=1e-6)
    assert cmmd(x, y) != pytest.approx(mmd_rbf(x, y), rel=1e-3)
    with pytest.raises(ValueError, match="zero vector"):
        cmmd(torch.zeros(2, 4), y)


def test_cmmd_grows_with_a_shift() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 8, generator=g)
    direction = torch.randn(8, generator=g)
    values = [cmmd(x, x + t * direction) for t in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values


def test_chunked_mmd_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(11, 5, generator=g), torch.randn(7, 5, generator=g) * 2
    whole = mmd_rbf(x, y, sigma=2.0, chunk_size=1000)
    for chunk in (1, 2, 3, 4):
        assert mmd_rbf(x, y, sigma=2.0, chunk_size=chunk) == pytest.approx(whole, rel=1e-12)
    assert mmd_rbf(x, y, sigma=2.0, dtype=torch.float32) == pytest.approx(whole, rel=1e-4)


def test_mmd_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="different dimensions"):
        mmd_rbf(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="matrix"):
        mmd_rbf(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        mmd_rbf(torch.tensor([[float("nan")]]), torch.ones(1, 1))


# ------------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_from_stats_closed_forms() -> None:
    eye = np.eye(3)
    mu = np.array([1.0, -2.0, 0.5])
    assert frechet_distance_from_stats(mu, eye, mu, eye) == pytest.approx(0.0, abs=1e-12)
    assert frechet_distance_from_stats(np.zeros(3), eye, mu, eye) == pytest.approx(float(mu @ mu), rel=1e-12)
    # Commuting (diagonal) covariances, two of them singular: sum (sqrt(a) - sqrt(b))^2 + |mu|^2.
    a, b = np.array([1.0, 0.0, 4.0]), np.array([0.0, 1.0, 1.0])
    expected = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + mu @ mu)
    assert frechet_distance_from_stats(mu, np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # The ridge keeps identical Gaussians at zero and barely moves a well-conditioned case.
    assert frechet_distance_from_stats(mu, eye, mu, eye, eps=1e-3) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance_from_stats(mu, eye, mu[:2], eye)


def test_frechet_distance_matches_scipy_sqrtm_on_a_general_case() -> None:
    from scipy import linalg

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_samples() -> None:
    rng = np.random.default_rng(5)
    mu = np.array([1.0, 2.0, -1.0])
    x, y = rng.normal(size=(20000, 3)), rng.normal(size=(20000, 3)) + mu
    assert frechet_distance(x, y) == pytest.approx(float(mu @ mu), abs=0.15)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    mean, cov = feature_statistics(x[:50])
    np.testing.assert_allclose(cov, np.cov(x[:50], rowvar=False))
    np.testing.assert_allclose(mean, x[:50].mean(0))
    # Fewer samples than dimensions: singular covariances still give a finite, non-negative value.
    small = frechet_distance(rng.normal(size=(4, 10)), rng.normal(size=(5, 10)))
    assert math.isfinite(small) and small > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(x[:1], y)


# ----------------------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip():
    tokenizer = build_word_tokenizer(
        {w for p in PROMPTS for w in p.split()}, model_max_length=16
    )  # ids: pad 0, unk 1, bos 2, eos 3
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer.get_vocab()),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    processor = _ImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3]
    )
    return model, tokenizer, processor


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(6)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]


def _projected_image(model: CLIPModel, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def test_cmmd_embedder_preprocesses_like_the_official_code(tiny_clip, images) -> None:
    model, _, _ = tiny_clip
    embedder = ClipImageEmbedder(model)
    assert embedder.image_size == 32
    pixels = embedder.preprocess(images[:1])
    # Official: centre square crop (40 x 40 from 40 x 48: columns 4..43), PIL bicubic to 32, /255, CLIP mean/std.
    square = Image.fromarray(np.ascontiguousarray(images[0][:, 4:44])).resize((32, 32), Image.BICUBIC)
    expected = (np.asarray(square, np.float32) / 255.0 - [0.48145466, 0.4578275, 0.40821073]) / [
        0.26862954,
        0.26130258,
        0.27577711,
    ]
    np.testing.assert_allclose(pixels[0].permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert centre_crop_resize(Image.fromarray(images[0]), 32).size == (32, 32)


def test_cmmd_embedder_end_to_end(tiny_clip, images) -> None:
    model, _, _ = tiny_clip
    embedder = ClipImageEmbedder(model, batch_size=2)
    embeds = embedder.embed(images)
    assert embeds.shape == (5, 16)
    torch.testing.assert_close(embeds.norm(dim=1), torch.ones(5))
    manual = _projected_image(model, embedder.preprocess(images))
    torch.testing.assert_close(embeds, manual / manual.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedder.embed(images, batch_size=5), embeds, atol=1e-6, rtol=1e-5)
    assert embedder.cmmd(images, images) == pytest.approx(0.0, abs=1e-9)
    assert embedder.cmmd(images[:3], images[2:]) == pytest.approx(cmmd(embeds[2:], embeds[:3]), rel=1e-4)


def _cosines(model: CLIPModel, tokenizer, processor, images, prompts) -> torch.Tensor:
    pixels = processor(images=[Image.fromarray(im) for im in images], return_tensors="pt")["pixel_values"]
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = _projected_image(model, pixels)
        pooled = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
        txt = model.text_projection(pooled)
    return torch.nn.functional.cosine_similarity(img, txt, dim=-1)


def test_clip_score_matches_a_manual_computation(tiny_clip, images) -> None:
    model, tokenizer, processor = tiny_clip
    scorer = ClipScorer(model, tokenizer, processor, batch_size=2)
    cos = _cosines(model, tokenizer, processor, images, PROMPTS)
    torch.testing.assert_close(scorer.cosines(images, PROMPTS), cos, atol=1e-5, rtol=1e-5)
    result = scorer.score(images, PROMPTS)
    expected = (100 * cos.clamp_min(0)).tolist()
    assert result.scores == pytest.approx(expected, abs=1e-3)
    assert result.mean == pytest.approx(float(np.mean(expected)), abs=1e-3)
    assert all(0.0 <= s <= 100.0 for s in result.scores)
    # One batch gives the same; one prompt string is used for every image.
    assert scorer.score(images, PROMPTS, batch_size=5).scores == pytest.approx(result.scores, abs=1e-4)
    assert scorer.score(images, "a red cube").scores == pytest.approx(
        scorer.score(images, ["a red cube"] * 5).scores, abs=1e-6
    )
    with pytest.raises(ValueError, match="one prompt per image"):
        scorer.score(images, PROMPTS[:2])


def test_clip_score_clamps_each_image(tiny_clip, images) -> None:
    model, tokenizer, processor = tiny_clip
    scorer = ClipScorer(model, tokenizer, processor)
    cos = scorer.cosines(images, PROMPTS)
    positive = scorer.score(images, PROMPTS)
    flipped = ClipScorer(_with_negated_text_projection(model), tokenizer, processor).score(images, PROMPTS)
    # cos and -cos: between them every image is clamped once, so the two scores add up to 100 |cos|.
    totals = [a + b for a, b in zip(positive.scores, flipped.scores, strict=True)]
    assert totals == pytest.approx((100 * cos.abs()).tolist(), abs=1e-3)
    assert min(positive.scores) == 0.0 or min(flipped.scores) == 0.0
    by_mean = scorer.score(images, PROMPTS, clamp="mean")
    assert by_mean.mean == pytest.approx(max(float(100 * cos.mean()), 0.0), abs=1e-3)


def _with_negated_text_projection(model: CLIPModel) -> CLIPModel:
    flipped = CLIPModel(model.config).eval()
    flipped.load_state_dict(model.state_dict())
    with torch.no_grad():
        flipped.text_projection.weight.neg_()
    return flipped


def test_clip_classes_load_from_a_checkpoint_folder(tiny_clip, images, tmp_path) -> None:
    model, tokenizer, processor = tiny_clip
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    embedder = ClipImageEmbedder.from_pretrained(str(tmp_path), device="cpu", batch_size=3)
    assert type(embedder.model).__name__ == "CLIPVisionModelWithProjection"
    assert embedder.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])  # read from the processor config
    reference = ClipImageEmbedder(model, mean=[0.5, 0.4, 0.3])
    torch.testing.assert_close(embedder.embed(images), reference.embed(images), atol=1e-5, rtol=1e-5)
    scorer = ClipScorer.from_pretrained(str(tmp_path))
    direct = ClipScorer(model, tokenizer, processor)
    assert scorer.score(images, PROMPTS).scores == pytest.approx(direct.score(images, PROMPTS).scores, abs=1e-4)


# ------------------------------------------------------------------------ recogniser stand-ins


@pytest.fixture(scope="module")
def recogniser() -> SceneRecogniser:
    return SceneRecogniser.load()


def test_scene_reference_images_are_held_out_renders() -> None:
    refs = scene_reference_images(3)
    assert len(refs) == 3 and all(r.shape == (64, 64, 3) and r.dtype == np.uint8 for r in refs)
    np.testing.assert_array_equal(refs[2], make_sample(scene_seed(999, 2), 64).rgb)
    assert scene_reference_images(1, seed=7, size=32)[0].shape == (32, 32, 3)


def test_recogniser_features_pool_the_named_activations(recogniser) -> None:
    renders = scene_reference_images(4)
    feats = recogniser_features(renders, recogniser, batch_size=3)
    w = recogniser.net.width
    assert DEFAULT_RECOGNISER_LAYERS == ("enc3", "dec1")
    assert feats.shape == (4, 4 * w + w)
    net = recogniser.net
    x = torch.from_numpy(np.stack(renders)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        e1 = net.enc1(net.stem(x))
        e3 = net.enc3(torch.nn.functional.max_pool2d(net.enc2(torch.nn.functional.max_pool2d(e1, 2)), 2))
    torch.testing.assert_close(feats[:, : 4 * w], e3.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)
    assert not any(m._forward_hooks for m in net.modules())  # hooks are removed again
    # A tensor in [-1, 1] gives the same; a larger render is brought to the recogniser's 64 px.
    torch.testing.assert_close(recogniser_features(x, recogniser), feats)
    assert recogniser_features([make_sample(scene_seed(999, 0), 128).rgb], recogniser).shape == (1, 5 * w)
    with pytest.raises(ValueError, match="unknown recogniser layers"):
        recogniser_features(renders, recogniser, layers=("nope",))


def test_recogniser_distances_separate_renders_from_noise(recogniser) -> None:
    n = 32
    renders = scene_reference_images(n, seed=5)
    rng = np.random.default_rng(7)
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    same = scene_quality(renders, None, recogniser)  # reference: held-out renders (seed 999)
    other = scene_quality(noise, None, recogniser)
    assert same.n_reference == n
    assert same.cmmd_recogniser < other.cmmd_recogniser / 5
    assert same.frechet_recogniser < other.frechet_recogniser / 5


def test_compare_image_sets_from_folders(tiny_clip, recogniser, tmp_path) -> None:
    model, _, _ = tiny_clip
    for i, rgb in enumerate(scene_reference_images(4, seed=3)):
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
    Image.fromarray(scene_reference_images(1, seed=4)[0]).save(tmp_path / "z.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png", "3.png", "z.JPG"]
    report = compare_image_sets(paths, scene_reference_images(6), ClipImageEmbedder(model), recogniser)
    assert (report.n_images, report.n_reference) == (5, 6)
    assert all(v is not None and v > 0 for v in (report.cmmd_clip, report.cmmd_recogniser, report.frechet_recogniser))
    assert set(report.to_dict()) >= {"cmmd_clip", "cmmd_recogniser", "frechet_recogniser"}
    with pytest.raises(ValueError, match="both sets need images; got 0 images"):
        compare_image_sets([], scene_reference_images(2), recogniser=recogniser)


def test_eval_quality_cli_with_a_clip_checkpoint(tiny_clip, images, tmp_path) -> None:
    """`spatialgen eval quality --clip --clip-score` end to end: the runner's numbers are the library's."""
    import json

    from typer.testing import CliRunner

    from spatialgen.cli import app
    from spatialgen.eval.runs.run_folder import read_results

    model, tokenizer, processor = tiny_clip
    checkpoint = tmp_path / "clip"
    for part in (model, tokenizer, processor):
        part.save_pretrained(checkpoint)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (rgb, prompt) in enumerate(zip(images, PROMPTS, strict=True)):
        Image.fromarray(rgb).save(folder / f"{i}.png")
        (folder / f"{i}.json").write_text(json.dumps({"prompt": prompt}))
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "quality",
            "--images",
            str(folder),
            "--out",
            str(tmp_path / "run"),
            "--no-scene-features",
            "--clip",
            str(checkpoint),
            "--clip-score",
            str(checkpoint),
            "--reference",
            str(folder),
        ],
    )
    assert result.exit_code == 0, result.output
    tables = read_results(tmp_path / "run")["tables"]
    assert tables["Distribution distance (lower is better)"]["cmmd_clip"] == pytest.approx(0.0, abs=1e-6)  # itself
    paths = [str(folder / f"{i}.png") for i in range(len(images))]
    expected = ClipScorer(model, tokenizer, processor).score(paths, PROMPTS).mean
    assert tables["Text alignment and preference (higher is better)"]["clip_score"] == pytest.approx(expected, abs=1e-4)
