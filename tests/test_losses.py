import math

import pytest
import torch

from ganmoco import losses


def test_hinge_losses_by_hand():
    real = torch.tensor([[2.0, 0.5]])  # relu(1-2)=0, relu(1-0.5)=0.5 -> mean 0.25
    fake = torch.tensor([[-2.0, 0.0]])  # relu(1-2)=0, relu(1+0)=1 -> mean 0.5
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.75)
    assert losses.hinge_g_loss(fake).item() == pytest.approx(1.0)  # -mean(-2, 0)
    # multi-scale: the mean over scales
    assert losses.hinge_g_loss([fake, torch.tensor([[3.0]])]).item() == pytest.approx((1.0 - 3.0) / 2)


def test_nonsaturating_losses_by_hand():
    zero = torch.zeros(1, 1, 2, 2)
    assert losses.nonsaturating_d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert losses.nonsaturating_g_loss(torch.full((1, 1), 2.0)).item() == pytest.approx(math.log1p(math.exp(-2)))


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / 4.0
    assert torch.allclose(losses.gram_matrix(f)[0], expected)


def test_style_and_feature_losses_by_hand():
    a = {"x": torch.ones(1, 1, 2, 2)}
    b = {"x": torch.zeros(1, 1, 2, 2)}
    assert losses.feature_loss(a, b).item() == pytest.approx(1.0)
    assert losses.gram_style_loss(a, b).item() == pytest.approx(1.0)  # gram(ones)=4/4=1 vs 0
    c = {"x": torch.tensor([[[[0.0, 2.0], [0.0, 2.0]]]])}  # mean 1, std 1
    # (mean 1 - 0)^2 + (std 1 - ~0)^2, with eps=0
    assert losses.mean_std_style_loss(c, b, eps=0.0).item() == pytest.approx(2.0)
    assert losses.mean_std_style_loss(c, c).item() == pytest.approx(0.0, abs=1e-7)


def test_total_variation_by_hand():
    img = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert losses.total_variation_loss(img).item() == pytest.approx(1.0)  # vertical 0, horizontal 1


def test_fusion_terms_by_hand():
    dark = torch.full((1, 3, 16, 16), -1.0)
    bright = torch.full((1, 3, 16, 16), 1.0)
    sources = torch.stack([dark, bright], dim=1)
    # intensity target is the brighter source; the bright image meets it, the dark one misses by 2
    assert losses.fusion_intensity_loss(bright, sources).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.fusion_intensity_loss(dark, sources).item() == pytest.approx(2.0, abs=1e-5)
    # flat images: no gradients anywhere
    assert losses.fusion_gradient_loss(dark, sources).item() == pytest.approx(0.0)
    edge = bright.clone()
    edge[..., :, 8:] = -1.0
    sharp = torch.stack([edge, dark], dim=1)
    assert losses.fusion_gradient_loss(edge, sharp).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.fusion_gradient_loss(dark, sharp).item() > 0.05
    assert losses.fusion_ssim_loss(edge, torch.stack([edge, edge], dim=1)).item() == pytest.approx(0.0, abs=1e-5)


def test_fusion_loss_total_is_the_weighted_sum():
    torch.manual_seed(0)
    fused, sources = torch.rand(2, 3, 24, 24) * 2 - 1, torch.rand(2, 3, 3, 24, 24) * 2 - 1
    total, terms = losses.fusion_loss(fused, sources, w_int=2.0, w_grad=3.0, w_ssim=0.5)
    expected = 2 * terms["fusion_intensity"] + 3 * terms["fusion_gradient"] + 0.5 * terms["fusion_ssim"]
    assert total.item() == pytest.approx(expected.item())


def test_reference_term_supervises_synthetic_pairs_only_when_given():
    torch.manual_seed(0)
    clean = torch.rand(1, 3, 32, 32) * 2 - 1
    sources = torch.stack([clean * 0.5, clean * 0.5 + 0.4], dim=1)
    assert losses.fusion_reference_loss(clean, clean).item() == pytest.approx(0.0, abs=1e-5)
    assert losses.fusion_reference_loss(sources[:, 0], clean) > 0.1
    plain, terms = losses.fusion_loss(sources[:, 0], sources)
    assert "fusion_reference" not in terms
    total, terms = losses.fusion_loss(sources[:, 0], sources, reference=clean, w_ref=2.0)
    assert total.item() == pytest.approx(plain.item() + 2 * terms["fusion_reference"].item(), rel=1e-5)


def test_losses_are_differentiable():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    sources = torch.rand(1, 2, 3, 16, 16)
    total, _ = losses.fusion_loss(x, sources)
    (total + losses.total_variation_loss(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_exposure_brackets_aim_at_the_well_exposed_intensity():
    torch.manual_seed(0)
    clean = torch.rand(1, 3, 16, 16) * 1.2 - 0.6  # mid-grey-ish scene
    dark, bright = (clean - 0.9).clamp(-1, 1), (clean + 0.9).clamp(-1, 1)
    sources = torch.stack([dark, bright], dim=1)
    exposure = torch.tensor([True])
    # the brightest-source target rewards the over-exposed frame; the exposure target the well-exposed scene
    assert losses.fusion_intensity_loss(bright, sources) < losses.fusion_intensity_loss(clean, sources)
    assert losses.fusion_intensity_loss(clean, sources, exposure) < losses.fusion_intensity_loss(
        bright, sources, exposure
    )
    # items that are not brackets keep the max target
    both = torch.cat([sources, sources])
    mixed = losses.fusion_intensity_loss(torch.cat([bright, bright]), both, torch.tensor([False, False]))
    assert mixed == pytest.approx(losses.fusion_intensity_loss(bright, sources).item())


def test_temporal_loss_is_zero_for_a_moving_scene_and_not_for_flicker():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    for dy, dx in ((0, 0), (2, -3), (-1, 1)):
        moved = torch.roll(x, (dy, dx), dims=(2, 3))
        assert losses.temporal_loss(moved, x, dy, dx) == 0  # the output moved with the input
        assert losses.temporal_loss(moved, x, dy, dx + 1) > 0.1  # an output that stayed, or moved wrong
    flicker = x + 0.1 * torch.randn_like(x)  # texture repainted in place
    assert 0.05 < losses.temporal_loss(flicker, x, 0, 0) < 0.1
    with pytest.raises(ValueError, match="no overlap"):
        losses.temporal_loss(x, x, 40, 0, border=10)


def test_colour_loss_compares_colour_distributions_not_places():
    torch.manual_seed(0)
    style = torch.rand(2, 3, 32, 32) * 2 - 1
    shuffled = style.flatten(2)[..., torch.randperm(32 * 32)].view_as(style)  # same colours, other places
    assert losses.colour_loss(shuffled, style) < 1e-5
    bigger = torch.nn.functional.interpolate(style, scale_factor=2, mode="nearest")  # same colours, 4x the pixels
    assert losses.colour_loss(bigger, style) < 0.02
    tinted = (style + torch.tensor([0.3, 0.0, -0.3])[:, None, None]).clamp(-1, 1)
    grey = style.mean(1, keepdim=True).expand_as(style)
    assert losses.colour_loss(tinted, style) > 0.05 and losses.colour_loss(grey, style) > 0.05
    out = grey.clone().requires_grad_()
    losses.colour_loss(out, style).backward()
    assert out.grad.abs().sum() > 0


def test_halo_loss_sees_sharpening_rims_not_blur_or_tone(examples):
    from PIL import ImageFilter

    from ganmoco.images import load_image
    from ganmoco.pixels import to_tensor

    photo = load_image(examples / "castle_chambord.jpg").resize((384, 288))
    content = to_tensor(photo)
    assert len(losses.edge_profiles(content)[0][0]) > 100  # the castle has step edges to look at
    assert losses.halo_loss(content, content) == 0

    def halo(image):
        return losses.halo_loss(to_tensor(image), content).item()

    sharpened = photo.filter(ImageFilter.UnsharpMask(radius=6, percent=120, threshold=0))
    assert halo(sharpened) > 0.25  # rims on both sides of every edge
    assert halo(sharpened.filter(ImageFilter.GaussianBlur(1))) > 0.15  # softened, the rims are still there
    assert halo(photo.filter(ImageFilter.GaussianBlur(2))) < 0.08  # a blurred step only rises
    assert halo(photo.point(lambda v: v * 6 // 10)) < 0.01  # nor is a darker picture a halo

    out = to_tensor(sharpened).requires_grad_()
    loss = losses.halo_loss(out, content)
    loss.backward()
    assert out.grad.abs().sum() > 0
    assert losses.halo_loss((out - 20 * out.grad).detach(), content) < loss  # its gradient removes the rims
    flat = torch.zeros(1, 3, 64, 64, requires_grad=True)
    assert losses.halo_loss(flat, flat.detach()) == 0 and losses.halo_loss(flat, flat.detach()).requires_grad
