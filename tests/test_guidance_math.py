"""InfSplign's numerics: centroids of known maps, Delta / delta signs, gradients against finite differences."""

from __future__ import annotations

import pytest
import torch

from spatialgen.guidance.centroids import centroids, mean_threshold, object_maps, token_maps
from spatialgen.guidance.config import LOSS_DEFAULTS, InfSplignConfig
from spatialgen.guidance.guide import eps_to_model_output
from spatialgen.guidance.losses import (
    LOSSES,
    displacements,
    orthogonal_loss,
    presence_loss,
    relation_tensors,
    spatial_loss,
)


def _blob(x: float, y: float, size: int = 16, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """A Gaussian bump centred at normalised (x, y) on a ``size`` x ``size`` grid of pixel centres."""
    coords = (torch.arange(size, dtype=dtype) + 0.5) / size
    return torch.exp(-((coords[None, :] - x) ** 2 + (coords[:, None] - y) ** 2) * size**2 / (2 * sigma**2))


def test_centroid_of_a_known_blob_is_its_centre() -> None:
    got = centroids(_blob(0.25, 0.75)[None])[0]
    assert torch.allclose(got, torch.tensor([0.25, 0.75], dtype=got.dtype), atol=1e-3)


def test_uniform_and_empty_maps_sit_in_the_middle() -> None:
    maps = torch.stack([torch.ones(8, 8), torch.zeros(8, 8)])
    assert torch.allclose(centroids(maps), torch.full((2, 2), 0.5))


def test_mean_threshold_removes_the_background_that_drags_centroids_to_the_middle() -> None:
    noisy = _blob(0.2, 0.2) + 0.05
    plain = centroids(noisy[None], threshold=False)[0]
    thresholded = centroids(noisy[None])[0]
    assert float(plain[0]) > 0.3  # the uniform floor pulls the raw centroid toward 0.5
    assert torch.allclose(thresholded, torch.tensor([0.2, 0.2], dtype=thresholded.dtype), atol=0.02)
    kept = mean_threshold(noisy)
    assert float(kept.min()) == 0.0 and torch.equal(kept[kept > 0], noisy[kept > 0])


def test_token_maps_resize_layers_to_the_finest_grid_and_average_them() -> None:
    fine = torch.rand(2, 64, 5)  # (rows, 8 x 8 queries, tokens) on an 8 x 8 latent
    coarse = torch.rand(2, 16, 5)  # 4 x 4
    grid = token_maps({"up.0": coarse, "up.1": fine}, (8, 8))
    assert grid.shape == (2, 5, 8, 8)
    upsampled = torch.nn.functional.interpolate(
        coarse.transpose(1, 2).reshape(2, 5, 4, 4), size=(8, 8), mode="bilinear", align_corners=False
    )
    assert torch.allclose(grid, (upsampled + fine.transpose(1, 2).reshape(2, 5, 8, 8)) / 2)
    weights = torch.tensor([[0, 0.5, 0.5, 0, 0], [0, 0, 0, 1.0, 0]])
    objects = object_maps(grid, weights)
    assert torch.allclose(objects[0], (grid[0, 1] + grid[0, 2]) / 2) and torch.allclose(objects[1], grid[1, 3])


@pytest.mark.parametrize(
    ("relation", "a", "b", "main", "across"),
    [
        ("left of", (0.2, 0.4), (0.8, 0.5), 0.6, -0.1),
        ("right of", (0.2, 0.4), (0.8, 0.5), -0.6, -0.1),
        ("above", (0.3, 0.2), (0.5, 0.9), 0.7, -0.2),  # y grows downward: A higher up has the smaller y
        ("below", (0.3, 0.2), (0.5, 0.9), -0.7, -0.2),
    ],
)
def test_delta_is_positive_exactly_when_the_relation_holds(relation, a, b, main, across) -> None:
    axis, sign, valid = relation_tensors([relation])
    d_main, d_across = displacements(torch.tensor([a]), torch.tensor([b]), axis, sign)
    assert bool(valid[0])
    assert float(d_main[0]) == pytest.approx(main) and float(d_across[0]) == pytest.approx(across)


def test_relations_guidance_cannot_steer_are_refused_and_missing_ones_masked() -> None:
    with pytest.raises(ValueError, match="InfSplign guides"):
        relation_tensors(["in front of"])
    _, _, valid = relation_tensors(["left of", None])
    assert valid.tolist() == [True, False]


@pytest.mark.parametrize("kind", LOSSES)
def test_losses_fall_as_the_relation_is_satisfied_and_follow_the_paper_defaults(kind: str) -> None:
    alpha, margin = LOSS_DEFAULTS[kind]
    deltas = torch.linspace(-0.8, 0.6, 8)  # GELU has its minimum just beyond 0.6 at the defaults, then rises a little
    loss = spatial_loss(deltas, kind, alpha, margin)
    assert torch.all(loss[1:] <= loss[:-1])  # monotone: further in the right direction never costs more
    assert float(loss[0]) > float(loss[-1])
    config = InfSplignConfig(loss=kind)
    assert (config.resolved_alpha, config.resolved_margin) == (alpha, margin)


@pytest.mark.parametrize("kind", LOSSES)
def test_each_loss_gradient_matches_finite_differences_through_the_centroids(kind: str) -> None:
    """From synthetic attention maps to the loss: autograd agrees with central differences."""
    torch.manual_seed(0)
    base = torch.rand(3, 5, 6, 6, dtype=torch.float64)
    base[:, 1] += 4 * _blob(0.7, 0.3, 6)  # A sits right of B: "left of" is violated, "above" too
    base[:, 3] += 4 * _blob(0.3, 0.6, 6)
    weights_a = torch.zeros(3, 5, dtype=torch.float64)
    weights_a[:, 1] = 1.0
    weights_b = torch.zeros(3, 5, dtype=torch.float64)
    weights_b[:, 3] = 0.5
    weights_b[:, 4] = 0.5  # a two-token object
    axis, sign, _ = relation_tensors(["left of", "above", "below"])
    alpha, margin = LOSS_DEFAULTS[kind]

    def total(maps: torch.Tensor) -> torch.Tensor:
        a = centroids(object_maps(maps, weights_a))
        b = centroids(object_maps(maps, weights_b))
        main, across = displacements(a, b, axis, sign)
        return (spatial_loss(main, kind, alpha, margin) + orthogonal_loss(across, 2.0)).sum()

    assert torch.autograd.gradcheck(total, (base.clone().requires_grad_(True),), eps=1e-7, atol=1e-6)


def test_presence_loss_gradient_and_its_meaning() -> None:
    torch.manual_seed(0)
    maps = torch.rand(2, 5, 8, 8, dtype=torch.float64) * 0.02
    maps[0, 1] += _blob(0.3, 0.3, 8) * 0.5  # row 0: A strongly attended; B (token 3) hardly at all
    text = torch.tensor([[False, True, True, True, False]] * 2)
    wa = torch.tensor([[0, 1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    wb = torch.tensor([[0, 0, 0, 1.0, 0]] * 2, dtype=torch.float64)
    loss = presence_loss(maps, wa, wb, text)
    assert torch.all((loss >= 0) & (loss <= 1))
    maps_b = maps.clone()
    maps_b[0, 3] += _blob(0.7, 0.7, 8) * 0.5  # excite B: the weaker object's loss must drop
    assert float(presence_loss(maps_b, wa, wb, text)[0]) < float(loss[0])
    assert torch.autograd.gradcheck(
        lambda m: presence_loss(m, wa, wb, text).sum(), (maps.clone().requires_grad_(True),), eps=1e-7, atol=1e-6
    )


def test_orthogonal_term_is_the_p_power_and_can_be_switched_off() -> None:
    delta = torch.tensor([-0.5, 0.25])
    assert torch.allclose(orthogonal_loss(delta, 2.0), torch.tensor([0.25, 0.0625]))
    assert torch.allclose(orthogonal_loss(delta, 1.0), torch.tensor([0.5, 0.25]))
    assert torch.equal(orthogonal_loss(delta, 0.0), torch.zeros(2))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_the_offset_changes_the_implied_noise_by_exactly_the_offset(kind: str) -> None:
    """Whatever a model predicts, the scheduler's implied epsilon moves by the InfSplign offset."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(prediction_type=kind)
    t = 600
    ab = scheduler.alphas_cumprod[t].double()
    torch.manual_seed(0)
    x_t, output, offset = torch.randn(3, 4, 4, 4, dtype=torch.float64).unbind(0)

    def implied_eps(model_output: torch.Tensor) -> torch.Tensor:
        if kind == "epsilon":
            return model_output
        if kind == "v_prediction":
            return ab.sqrt() * model_output + (1 - ab).sqrt() * x_t
        return (x_t - ab.sqrt() * model_output) / (1 - ab).sqrt()

    moved = implied_eps(output + eps_to_model_output(offset, scheduler, torch.tensor(t)))
    assert torch.allclose(moved - implied_eps(output), offset, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "hinge"}, "unknown InfSplign loss"),
        ({"weight": -1.0}, "weight must be"),
        ({"guide_fraction": 1.5}, "guide_fraction"),
        ({"alpha": 0.0}, "alpha must be positive"),
        ({"orthogonal_p": 0.5}, "orthogonal_p"),
    ],
)
def test_bad_settings_say_what_to_change(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        InfSplignConfig(**kwargs).validate()


def test_guided_step_counts_follow_the_fraction() -> None:
    config = InfSplignConfig()
    assert [config.guided_steps(n) for n in (1, 4, 25, 50, 500)] == [1, 1, 6, 12, 125]
    assert InfSplignConfig(guide_fraction=0.0).guided_steps(50) == 0
    assert InfSplignConfig(presence=True).presence_steps(50) == 25 and config.presence_steps(50) == 0


def test_at_zero_snr_no_output_moves_the_noise_and_the_step_is_left_unguided() -> None:
    from diffusers import DDIMScheduler

    from spatialgen.guidance.guide import noise_is_steerable

    scheduler = DDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
    assert float(scheduler.alphas_cumprod[999]) == 0.0
    assert not noise_is_steerable(scheduler, torch.tensor(999)) and noise_is_steerable(scheduler, torch.tensor(959))
    with pytest.raises(ValueError, match="SNR is 0"):
        eps_to_model_output(torch.ones(1), scheduler, torch.tensor(999))
    assert noise_is_steerable(DDIMScheduler(prediction_type="epsilon", rescale_betas_zero_snr=True), 999)
