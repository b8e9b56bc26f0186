"""I-LDM's cross-domain self-attention: the exactness properties that define it, on three backbones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers import PixArtTransformer2DModel, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from spatialgen.ildm import (
    ConstantSchedule,
    CrossDomainAttnProcessor,
    DropSchedule,
    GaussianSchedule,
    JointLayout,
    block_count,
    block_numbers,
    install_cross_domain,
    load_intrinsic_lora,
    lora_parameters,
    make_schedule,
    save_intrinsic_lora,
    schedule_from_dict,
    schedule_to_dict,
)

CROSS = 16
PLACEMENT_NAMES = ("self-attention", "cross-attention", "feed-forward", "resnets", "conv-io", "partner-input")


def sd_unet(levels: int = 2) -> UNet2DConditionModel:
    torch.manual_seed(0)
    down = ["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"]
    up = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16,) * levels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=1,
        cross_attention_dim=CROSS,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()


def sdxl_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=CROSS,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=CROSS + 6 * 8,
        norm_num_groups=8,
    ).eval()


def pixart() -> PixArtTransformer2DModel:
    torch.manual_seed(0)
    return PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=CROSS,
        sample_size=8,
        patch_size=2,
        caption_channels=CROSS,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()


BUILDERS = {"sd": sd_unet, "sdxl": sdxl_unet, "pixart": pixart}
#: The paper's placement, and the LoRA everywhere a placement can put it (convolutions, cross-attention, ...).
PLACEMENTS = {"paper": ("self-attention",), "everywhere": tuple(PLACEMENT_NAMES)}


def run(model, latents: torch.Tensor, t: float = 500.0, seed: int = 1) -> torch.Tensor:
    """One forward pass with conditioning that depends only on ``seed`` and the batch size."""
    g = torch.Generator().manual_seed(seed)
    n = latents.shape[0]
    text = torch.randn(n, 5, CROSS, generator=g)
    timestep = torch.full((n,), t)
    with torch.no_grad():
        if isinstance(model, PixArtTransformer2DModel):
            out = model(latents, encoder_hidden_states=text, timestep=timestep, added_cond_kwargs={}).sample
        elif model.config.addition_embed_type == "text_time":
            added = {"text_embeds": torch.randn(n, CROSS, generator=g), "time_ids": torch.randn(n, 6, generator=g)}
            out = model(latents, timestep, encoder_hidden_states=text, added_cond_kwargs=added).sample
        else:
            out = model(latents, timestep, encoder_hidden_states=text).sample
    return out


def latents(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def joint(model, images: torch.Tensor, intrinsics: torch.Tensor, state, t: float = 500.0) -> torch.Tensor:
    """Run cat([images, intrinsics]) with the stacked layout; text conditioning is shared per pair."""
    n = images.shape[0]
    state.layout, state.timestep = JointLayout.stacked(n), t
    try:
        g = torch.Generator().manual_seed(1)
        text = torch.randn(n, 5, CROSS, generator=g).repeat(2, 1, 1)
        timestep = torch.full((2 * n,), t)
        x = torch.cat([images, intrinsics])
        with torch.no_grad():
            if isinstance(model, PixArtTransformer2DModel):
                return model(x, encoder_hidden_states=text, timestep=timestep, added_cond_kwargs={}).sample
            if model.config.addition_embed_type == "text_time":
                added = {
                    "text_embeds": torch.randn(n, CROSS, generator=g).repeat(2, 1),
                    "time_ids": torch.randn(n, 6, generator=g).repeat(2, 1),
                }
                return model(x, timestep, encoder_hidden_states=text, added_cond_kwargs=added).sample
            return model(x, timestep, encoder_hidden_states=text).sample
    finally:
        state.layout = None


def randomise_lora(model) -> None:
    torch.manual_seed(3)
    for p in lora_parameters(model):
        p.data.normal_(0, 0.3)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("arch", list(BUILDERS))
def test_without_a_layout_the_processor_is_diffusers_default_attention(arch: str, placement: str) -> None:
    base, ours = BUILDERS[arch](), BUILDERS[arch]()
    install_cross_domain(ours, rank=4, placement=PLACEMENTS[placement])
    randomise_lora(ours)  # LoRA belongs to the intrinsic domain: a single (image) domain never sees it
    x = latents(2)
    assert torch.allclose(run(ours, x), run(base, x), atol=1e-6)
    for name, processor in ours.attn_processors.items():
        expected = CrossDomainAttnProcessor if name.endswith("attn1.processor") else AttnProcessor2_0
        assert isinstance(processor, expected), name  # attn2 keeps its own processor


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("arch", list(BUILDERS))
def test_weight_zero_everywhere_gives_the_base_models_image(arch: str, placement: str) -> None:
    base, ours = BUILDERS[arch](), BUILDERS[arch]()
    state = install_cross_domain(ours, rank=4, placement=PLACEMENTS[placement])
    randomise_lora(ours)
    state.schedule = ConstantSchedule(0.0)
    images = latents(3)
    out = joint(ours, images, latents(3, seed=9), state)
    assert torch.allclose(out[:3], run(base, images), atol=1e-5)
    other = joint(ours, images, latents(3, seed=10), state)
    assert torch.allclose(other[:3], out[:3], atol=1e-6)  # the intrinsic half no longer reaches the image
    assert not torch.allclose(other[3:], out[3:], atol=1e-3)


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_zero_lora_fed_the_image_latents_gives_the_image_half(arch: str) -> None:
    model = BUILDERS[arch]()
    state = install_cross_domain(model, rank=4)  # peft initialises B = 0
    state.schedule = GaussianSchedule()
    images = latents(2)
    out = joint(model, images, images.clone(), state, t=750.0)
    assert torch.allclose(out[:2], out[2:], atol=1e-5)
    # and with identical domains the duplicated keys change nothing: it is the base model
    assert torch.allclose(out[:2], run(BUILDERS[arch](), images, t=750.0), atol=1e-5)


def test_log_weight_path_equals_an_explicit_reference() -> None:
    torch.manual_seed(0)
    state = install_cross_domain(sd_unet(), rank=4)
    processor = CrossDomainAttnProcessor(state, block=1)
    layout = JointLayout(torch.tensor([False, True, True, False]), torch.tensor([2, 3, 0, 1])).validate()
    q, k, v = (torch.randn(4, 2, 5, 8) for _ in range(3))
    for w in (1.0, 0.7, 0.05, 1e-6):
        state.schedule = ConstantSchedule(w)
        got = processor._joint_attention(q, k, v, layout)
        for j in range(4):
            keys = torch.cat([k[j], k[layout.partner[j]]], dim=1)  # (heads, 2N, d)
            values = torch.cat([v[j], v[layout.partner[j]]], dim=1)
            scores = q[j] @ keys.transpose(-1, -2) / math.sqrt(8)
            if not layout.intrinsic[j]:
                scores[..., 5:] += math.log(w)
            expected = scores.softmax(-1) @ values
            assert torch.allclose(got[j], expected, atol=1e-5), (w, j)
    state.schedule = ConstantSchedule(0.0)
    got = processor._joint_attention(q, k, v, layout)
    own = (q[0] @ k[0].transpose(-1, -2) / math.sqrt(8)).softmax(-1) @ v[0]
    assert torch.allclose(got[0], own, atol=1e-5)  # w = 0 leaves the partner keys out


def _forward(model, state, x: torch.Tensor, text: torch.Tensor, layout: JointLayout) -> torch.Tensor:
    state.layout = layout.validate()
    try:
        with torch.no_grad():
            return model(x, torch.full((x.shape[0],), 500.0), encoder_hidden_states=text).sample
    finally:
        state.layout = None


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("n", [1, 3])
def test_pairing_follows_the_layout_not_the_batch_order(n: int, placement: str) -> None:
    model = sd_unet()
    state = install_cross_domain(model, rank=4, placement=PLACEMENTS[placement])
    randomise_lora(model)
    state.schedule = ConstantSchedule(0.6)
    images, intrinsics = latents(n), latents(n, seed=5)
    text = torch.randn(n, 5, CROSS, generator=torch.Generator().manual_seed(1))
    stacked = _forward(model, state, torch.cat([images, intrinsics]), text.repeat(2, 1, 1), JointLayout.stacked(n))
    # Interleaved (image, intrinsic, image, intrinsic, ...) with its own layout gives the same result.
    index = torch.arange(2 * n)
    x = torch.stack([images, intrinsics], 1).flatten(0, 1)
    interleaved = _forward(model, state, x, text.repeat_interleave(2, 0), JointLayout(index % 2 == 1, index ^ 1))
    assert torch.allclose(interleaved[0::2], stacked[:n], atol=1e-5)
    assert torch.allclose(interleaved[1::2], stacked[n:], atol=1e-5)
    # Permuting the pairs permutes the outputs (batch 1 has nothing to permute).
    perm = torch.arange(n).flip(0)
    swapped = _forward(
        model,
        state,
        torch.cat([images[perm], intrinsics[perm]]),
        text[perm].repeat(2, 1, 1),
        JointLayout.stacked(n),
    )
    assert torch.allclose(swapped[:n], stacked[:n][perm], atol=1e-5)
    assert torch.allclose(swapped[n:], stacked[n:][perm], atol=1e-5)


def test_a_wrong_pairing_shows_in_the_image() -> None:
    """Under CFG the batch holds (uncond, cond) x (image, intrinsic): pairing by position would be silent."""
    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    randomise_lora(model)
    images, intrinsics = latents(2), latents(2, seed=5)
    right = joint(model, images, intrinsics, state)
    wrong = joint(model, images, intrinsics.flip(0), state)
    assert not torch.allclose(right[0], wrong[0], atol=1e-4)


def test_layouts_are_checked() -> None:
    with pytest.raises(ValueError, match="mutual"):
        JointLayout(torch.tensor([False, True, True]), torch.tensor([1, 2, 0])).validate()
    with pytest.raises(ValueError, match="other domain"):
        JointLayout(torch.tensor([False, False]), torch.tensor([1, 0])).validate()
    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    state.layout = JointLayout.stacked(2)
    with pytest.raises(ValueError, match="describes 4 samples but the batch has 2"):
        run(model, latents(2))


def test_training_step_moves_only_lora() -> None:
    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "attn1" in n for n in trainable)
    optimizer = torch.optim.AdamW(lora_parameters(model), lr=1e-2)
    model.train()
    state.layout, state.timestep = JointLayout.stacked(2), 100.0
    x = torch.cat([latents(2), latents(2, seed=5)])
    out = model(x, torch.full((4,), 100.0), encoder_hidden_states=torch.randn(4, 5, CROSS)).sample
    out.pow(2).mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    optimizer.step()
    for n, p in model.named_parameters():
        if "lora_" in n:
            continue
        assert torch.equal(p, base_before[n]), n
    assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if "lora_" in n)


def test_intrinsic_lora_saves_in_peft_format_and_reloads(tmp_path: Path) -> None:
    model = sd_unet()
    state = install_cross_domain(model, rank=4, alpha=8, targets=("to_q", "to_v"))
    randomise_lora(model)
    save_intrinsic_lora(model, tmp_path)
    from safetensors.torch import load_file

    keys = list(load_file(str(tmp_path / "intrinsic_lora.safetensors")))
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert all("attn1.to_q" in k or "attn1.to_v" in k for k in keys)
    fresh = sd_unet()
    fresh_state = load_intrinsic_lora(fresh, tmp_path)
    state.schedule = fresh_state.schedule = ConstantSchedule(0.5)
    a = joint(model, latents(2), latents(2, seed=5), state)
    b = joint(fresh, latents(2), latents(2, seed=5), fresh_state)
    assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="no intrinsic LoRA"):
        load_intrinsic_lora(sd_unet(), tmp_path / "missing")


def test_block_numbering() -> None:
    sd21_like = sd_unet(levels=4)
    numbers = block_numbers(sd21_like)
    assert block_count(sd21_like) == 9
    assert numbers["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"] == 1
    assert numbers["mid_block.attentions.0.transformer_blocks.0.attn1.processor"] == 5
    assert numbers["up_blocks.3.attentions.0.transformer_blocks.0.attn1.processor"] == 9
    assert set(numbers.values()) == {1, 2, 3, 5, 7, 8, 9}  # down_blocks.3 and up_blocks.0 have no attention
    assert block_count(sdxl_unet()) == 5 and block_count(pixart()) == 2
    assert set(block_numbers(pixart()).values()) == {1, 2}


def test_schedules() -> None:
    drop = DropSchedule()
    assert drop(3, 900) == 1.0 and drop(3, 901) == 0.0 and drop(2, 100) == 0.0 and drop(8, 0) == 0.0
    gauss = GaussianSchedule()
    assert gauss(1, 800) == 1.0 and gauss(9, 900) == pytest.approx(math.exp(-1))
    for schedule in (drop, gauss, make_schedule("none"), ConstantSchedule(0.3), make_schedule("drop", blocks=[4])):
        assert schedule_from_dict(schedule_to_dict(schedule)) == schedule
    with pytest.raises(ValueError, match="unknown weight schedule"):
        make_schedule("cosine")
    with pytest.raises(ValueError, match=">= 0"):
        ConstantSchedule(-1.0)
    with pytest.raises(TypeError, match="only named schedules"):
        schedule_to_dict(lambda block, t: 1.0)


def _image_lora_state(seed: int = 4) -> dict[str, torch.Tensor]:
    """A random SD-style LoRA (diffusers' peft keys under "unet.") on attention and feed-forward layers."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    donor = sd_unet()
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.2"])
    inject_adapter_in_model(config, donor, adapter_name="default")
    torch.manual_seed(seed)
    for name, p in donor.named_parameters():
        if "lora_" in name:
            p.data.normal_(0, 0.3)
    return {f"unet.{k}": v for k, v in get_peft_model_state_dict(donor, adapter_name="default").items()}


def test_an_image_lora_acts_on_the_image_domain_only() -> None:
    from spatialgen.ildm.adapter import load_image_lora

    lora = _image_lora_state()
    reference = sd_unet()
    reference.load_lora_adapter(dict(lora), prefix="unet", adapter_name="image")
    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    randomise_lora(model)
    reached = load_image_lora(model, state, dict(lora))
    assert any(".attn1." in n for n in reached) and any(".attn2." in n for n in reached)
    assert any("ff.net.2" in n for n in reached)
    x = latents(2)
    assert torch.allclose(run(model, x), run(reference, x), atol=1e-5)  # one domain: the LoRA'd base model
    assert not torch.allclose(run(model, x), run(sd_unet(), x), atol=1e-3)

    captured = {}
    layer = model.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2")
    handle = layer.register_forward_hook(lambda m, args, out: captured.update(x=args[0], out=out))
    state.schedule = ConstantSchedule(0.0)
    joint(model, x, latents(2, seed=5), state)
    handle.remove()
    base_out = layer.base_layer(captured["x"])
    assert torch.allclose(captured["out"][2:], base_out[2:], atol=1e-6)  # intrinsic rows: no image LoRA
    assert not torch.allclose(captured["out"][:2], base_out[:2], atol=1e-4)  # image rows: with it
    with pytest.raises(ValueError, match="intrinsic domain's"):
        load_image_lora(model, state, dict(lora), adapter_name="intrinsic")


def _joint_with_grad(model, images: torch.Tensor, intrinsics: torch.Tensor, state) -> torch.Tensor:
    """``joint`` with autograd on: LoRA weights that train are never merged, so this is the per-row path."""
    n = images.shape[0]
    state.layout, state.timestep = JointLayout.stacked(n), 500.0
    try:
        text = torch.randn(n, 5, CROSS, generator=torch.Generator().manual_seed(1)).repeat(2, 1, 1)
        x = torch.cat([images, intrinsics])
        return model(x, torch.full((2 * n,), 500.0), encoder_hidden_states=text).sample.detach()
    finally:
        state.layout = None


@pytest.mark.parametrize("w", [0.0, 0.6, 1.0])
def test_merged_domain_weights_equal_the_per_row_adapters(w: float) -> None:
    from spatialgen.ildm.adapter import load_image_lora

    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    randomise_lora(model)
    load_image_lora(model, state, _image_lora_state(), scale=0.7)
    state.schedule = ConstantSchedule(w)
    images, intrinsics = latents(3), latents(3, seed=5)
    merged = joint(model, images, intrinsics, state)
    processors = [p for p in model.attn_processors.values() if isinstance(p, CrossDomainAttnProcessor)]
    assert all(p._merged for p in processors)  # inference took the merged path in every attn1 layer
    per_row = _joint_with_grad(model, images, intrinsics, state)
    assert torch.allclose(merged, per_row, atol=1e-5)
    assert not torch.allclose(merged[:3], merged[3:], atol=1e-3)


def test_merged_weights_follow_in_place_updates() -> None:
    """An optimizer step, a reloaded LoRA or a new image-adapter scale must not leave stale merged weights."""
    from spatialgen.ildm.adapter import load_image_lora

    model = sd_unet()
    state = install_cross_domain(model, rank=4)
    randomise_lora(model)
    load_image_lora(model, state, _image_lora_state(), scale=1.0)
    state.schedule = ConstantSchedule(0.6)
    images, intrinsics = latents(2), latents(2, seed=5)
    before = joint(model, images, intrinsics, state)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.mul_(1.5)  # in place, as an optimizer or load_state_dict would
    state.image_adapters["image"] = 0.25
    after = joint(model, images, intrinsics, state)
    assert not torch.allclose(after, before, atol=1e-4)
    assert torch.allclose(after, _joint_with_grad(model, images, intrinsics, state), atol=1e-5)


def test_placements_reach_the_layers_they_name_and_only_the_intrinsic_rows() -> None:
    """Outside attn1 the LoRA is routed to intrinsic rows; peft's own forward never applies it."""
    from peft.tuners.lora import LoraLayer

    model = sd_unet()
    state = install_cross_domain(model, rank=4, placement=PLACEMENTS["everywhere"])
    names = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for expected in ("attn1.to_q", "attn2.to_k", "ff.net.2", "resnets.0.conv1", "conv_in", "conv_out"):
        assert any(n.endswith(expected) for n in names), expected
    assert all(p.requires_grad for p in lora_parameters(model))
    randomise_lora(model)
    state.schedule = ConstantSchedule(0.0)
    images, intrinsics = latents(2), latents(2, seed=4)
    out = joint(model, images, intrinsics, state)
    paper = sd_unet()
    paper_state = install_cross_domain(paper, rank=4)
    paper_state.schedule = ConstantSchedule(0.0)
    # the same attn1 LoRA weights, none elsewhere: the intrinsic rows differ, the image rows do not
    shared = {k: v for k, v in model.state_dict().items() if k in paper.state_dict()}
    paper.load_state_dict(shared, strict=False)
    reference = joint(paper, images, intrinsics, paper_state)
    assert torch.allclose(out[:2], reference[:2], atol=1e-5)
    assert not torch.allclose(out[2:], reference[2:], atol=1e-3)


def test_placement_is_validated_and_saved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown LoRA placement"):
        install_cross_domain(sd_unet(), placement=("self-attention", "everything"))
    with pytest.raises(ValueError, match="must include self-attention"):
        install_cross_domain(sd_unet(), placement=("resnets",))
    model = sd_unet()
    state = install_cross_domain(model, rank=4, placement=("resnets", "self-attention", "conv-io", "partner-input"))
    randomise_lora(model)
    save_intrinsic_lora(model, tmp_path)
    fresh = sd_unet()
    fresh_state = load_intrinsic_lora(fresh, tmp_path)
    assert fresh.spatialgen_lora_config["placement"] == ["self-attention", "resnets", "conv-io", "partner-input"]
    state.schedule = fresh_state.schedule = ConstantSchedule(1.0)
    assert torch.equal(
        joint(model, latents(2), latents(2, seed=5), state), joint(fresh, latents(2), latents(2, seed=5), fresh_state)
    )


def test_the_partner_input_reads_the_image_latent_at_the_same_place() -> None:
    """With only the partner input non-zero, an intrinsic row's output depends on its partner image's latent."""
    model = sd_unet()
    state = install_cross_domain(model, rank=4, placement=("self-attention", "partner-input"))
    state.schedule = ConstantSchedule(0.0)  # the image never sees the maps: any change below comes from the input
    images, intrinsics = latents(2), latents(2, seed=4)
    before = joint(model, images, intrinsics, state)
    with torch.no_grad():
        model.spatialgen_partner_input.weight.normal_(0, 0.3)
    after = joint(model, images, intrinsics, state)
    assert torch.allclose(after[:2], before[:2], atol=1e-6)  # the image domain is untouched
    swapped = joint(model, images.flip(0), intrinsics, state)
    assert not torch.allclose(swapped[2:], after[2:], atol=1e-3)  # another image, other maps
    assert any(p is model.spatialgen_partner_input.weight for p in lora_parameters(model))
