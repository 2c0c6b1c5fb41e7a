import pytest
import torch
from safetensors.torch import load_file

from ganmoco import FeatureExtractor, GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from ganmoco.images import load_image
from ganmoco.models.generator import AdaptiveInstanceNorm, FusionHead, NormStats
from ganmoco.pixels import to_tensor

from .conftest import EXAMPLES, TINY_DISCRIMINATOR, TINY_GENERATOR, TINY_STYLE_ENCODER


def _round_trip(model, tmp_path, *inputs, **kw):
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file()
    weights = list(tmp_path.glob("*.safetensors"))
    assert len(weights) == 1 and not list(tmp_path.glob("*.bin"))
    reloaded = type(model).from_pretrained(tmp_path).eval()
    state = load_file(weights[0])
    for key, value in model.state_dict().items():
        if key in state:
            assert torch.equal(state[key], value), key
    with torch.no_grad():
        a, b = model(*inputs, **kw), reloaded(*inputs, **kw)
    return a, b


def test_generator_shapes_and_round_trip(tmp_path):
    G = GanMocoGenerator(**TINY_GENERATOR)
    content, code = torch.rand(2, 3, 37, 50) * 2 - 1, torch.randn(2, 16)
    a, b = _round_trip(G, tmp_path, content, code)
    assert a.shape == (2, 3, 37, 50) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def _perturbed_fusion_head(G):
    """A fresh head starts near uniform weights and no tone change: perturb it so that both matter."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in G.fusion.parameters():
            p.normal_(std=0.3)
    return G


@pytest.mark.parametrize(
    "config",
    [
        TINY_GENERATOR,
        {**TINY_GENERATOR, "stem_kernel_size": 9, "encoder_norm": False},
    ],
)
def test_generator_fuses_any_number_of_inputs_order_invariant(config):
    G = _perturbed_fusion_head(GanMocoGenerator(**config).eval())
    sources = torch.rand(1, 3, 3, 33, 40) * 2 - 1
    with torch.no_grad():
        out, weights = G.fusion_weights(sources, task=2)
        permuted = G(sources[:, [2, 0, 1]], task=2)
        two = G(sources[:, :2], task=0)
        same = G(sources[:, [1, 1, 1]], task=0)
    assert out.shape == (1, 3, 33, 40) and two.shape == (1, 3, 33, 40) and weights.shape == (1, 3, 1, 33, 40)
    # float rounding only (up to 2e-4 with AVX2 kernels): far below one 8-bit level (7.8e-3)
    assert torch.allclose(out, permuted, atol=1e-3)
    # the weights are a partition of unity per pixel, and they really choose (not all 1/3)
    assert torch.allclose(weights.sum(1), torch.ones(1, 1, 33, 40), atol=1e-6) and weights.min() >= 0
    assert weights.std() > 0.05
    # copies of one image fuse to that image: the tone curve of an agreeing stack is the identity
    assert (same - sources[:, 1]).abs().max() < 1 / 255
    assert (out - sources.mean(1)).abs().mean() > 0.01


def test_fused_image_is_a_weighted_sum_of_the_toned_sources():
    """Fusion writes weights, not pixels: where one source has all the weight, the output is that source
    (through its tone curve), at full resolution."""
    G = _perturbed_fusion_head(GanMocoGenerator(**TINY_GENERATOR).eval())
    with torch.no_grad():
        G.fusion.tone[2].weight.zero_()  # no tone change
        G.fusion.tone[2].bias.zero_()
    sources = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out, weights = G.fusion_weights(sources)
    assert torch.allclose(out, (weights * sources).sum(1), atol=1e-5)


def test_generator_spatial_code_map_equals_uniform_code():
    G = GanMocoGenerator(**TINY_GENERATOR).eval()
    for p in G.parameters():  # make the code matter: the CIN projections start at zero
        p.data.add_(torch.randn_like(p) * 0.05)
    x, code = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 16)
    with torch.no_grad():
        flat = G(x, code)
        mapped = G(x, code[:, :, None, None].expand(1, 16, 4, 4))
        other = G(x, torch.randn(1, 16))
    assert torch.allclose(flat, mapped, atol=1e-5)
    assert not torch.allclose(flat, other, atol=1e-3)


def _perturbed_generator():
    torch.manual_seed(0)
    G = GanMocoGenerator(**TINY_GENERATOR).eval()
    with torch.no_grad():  # an untrained generator has identity modulation; make the norms matter
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return G


def test_sub_pixel_upsampling_equals_nearest_upsample_then_conv():
    from ganmoco.models.generator import UpBlock

    torch.manual_seed(0)
    block, x = UpBlock(5, 4, code_dim=None), torch.randn(1, 5, 9, 7)
    reference = torch.nn.Conv2d(5, 4, 3, padding=1, padding_mode="reflect")
    # fold the 3x3 kernel of the high-resolution conv onto each of the four output phases
    fold = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]])
    with torch.no_grad():
        kernel = torch.einsum("aij,ocjk,blk->oabcil", fold, reference.weight, fold).reshape(16, 5, 3, 3)
        block.conv.weight.copy_(kernel)
        block.conv.bias.copy_(reference.bias.repeat_interleave(4))
        expected = reference(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_fresh_sub_pixel_upsampling_has_no_checkerboard():
    from ganmoco.models.generator import UpBlock

    torch.manual_seed(0)
    block, x = UpBlock(5, 4, code_dim=None), torch.randn(1, 5, 9, 7)
    with torch.no_grad():
        out = block(x)
        # ICNR start: every 2x2 output cell is one value, i.e. nearest-upsampling of a low-resolution conv
        assert torch.equal(out, torch.nn.functional.interpolate(out[..., ::2, ::2], scale_factor=2, mode="nearest"))
        assert out.std() > 0.1  # and not by being constant


def test_running_norm_statistics_over_frames():
    G, code = _perturbed_generator(), torch.randn(1, 16)
    a, b = torch.rand(1, 3, 32, 40) * 2 - 1, torch.rand(1, 3, 32, 40) * 2 - 1

    def frames(*clip, momentum=0.9):
        previous, outs = None, []
        for x in clip:
            stats = NormStats(previous=previous, momentum=momentum)
            outs.append(G(x, code, stats=stats))
            previous = stats.used
        return outs

    with torch.no_grad():
        # momentum 0: every frame on its own
        assert all(torch.allclose(o, G(x, code)) for o, x in zip(frames(a, b, momentum=0.0), (a, b), strict=True))
        outs = frames(a, a, a)  # a static clip stays static
        assert all(torch.allclose(outs[0], o, atol=1e-6) for o in outs[1:])
        assert torch.allclose(outs[0], G(a, code), atol=1e-5)
        b_after_a = frames(a, b)[1]  # the second frame leans on the first frame's statistics
        assert (b_after_a - G(b, code)).abs().mean() > 1e-3
        # the statistics are an argument: a call in between (another request) changes nothing
        first = NormStats(momentum=0.9)
        G(a, code, stats=first)
        assert G(a, code).shape == a.shape
        assert torch.equal(G(b, code, stats=NormStats(previous=first.used, momentum=0.9)), b_after_a)
    with pytest.raises(ValueError, match="momentum"):
        NormStats(momentum=1.0)


def test_shared_statistics_normalise_a_crop_like_the_whole():
    G, code = _perturbed_generator(), torch.randn(1, 16)
    x = torch.rand(1, 3, 192, 64) * 2 - 1
    x[..., 96:, :] = x[..., 96:, :] * 0.2 + 0.5  # the lower half differs, so a crop's own statistics would too
    with torch.no_grad():
        whole = G.norm_stats(x, code)
        assert len(whole) == sum(isinstance(m, torch.nn.Module) and hasattr(m, "_normalise") for m in G.modules())
        crop = x[..., :128, :]
        own, shared = G(crop, code), G(crop, code, stats=NormStats(given=whole))
        assert not torch.allclose(own, shared, atol=1e-3)
        # far from the crop's edge, a pixel sees what it sees in the whole image, normalised alike
        assert torch.allclose(shared[..., :48, :], G(x, code)[..., :48, :], atol=1e-4)
        with pytest.raises(ValueError, match="statistics were given"):
            G(crop, code, stats=NormStats(given=whole[:3]))


def test_adain_gives_the_input_the_style_statistics():
    x = torch.randn(2, 5, 9, 11) * 3 + 1
    mean, std = torch.randn(2, 5), torch.rand(2, 5) + 0.5
    out = AdaptiveInstanceNorm()(x, torch.cat([mean, std], dim=1))
    assert torch.allclose(out.mean((2, 3)), mean, atol=1e-4)
    assert torch.allclose(out.std((2, 3), unbiased=False), std, atol=1e-3)


def test_match_colors_gives_the_output_the_style_colour_statistics():
    G = GanMocoGenerator(**TINY_GENERATOR, match_colors=True).eval()
    plain = GanMocoGenerator(**TINY_GENERATOR).eval()
    plain.load_state_dict(G.state_dict())  # no extra weights: an older checkpoint loads into either
    x, z = torch.rand(1, 3, 32, 40) * 2 - 1, torch.randn(1, 16) * 0.1
    style = torch.stack([torch.rand(40, 56) * 0.4 + 0.2, torch.rand(40, 56) * 0.3 - 0.4, torch.rand(40, 56) * 0.2])[
        None
    ]
    ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])

    def stats(image):  # per-channel YCbCr mean and std
        y = torch.einsum("ij,njhw->nihw", ycc, image)
        return y.mean((2, 3)), y.std((2, 3), unbiased=False)

    with torch.no_grad():
        code = G.style_code(z, style)
        assert G.style_code_dim == 22 and code.shape == (1, 22) and torch.equal(code[:, :16], z)
        assert torch.equal(plain.style_code(z, style), z)
        out = G(x, z, style=style)
        assert torch.equal(out, G(x, code))
        for got, want in zip(stats(out), stats(style), strict=True):
            assert torch.allclose(got, want, atol=1e-3)
        assert not torch.allclose(out, plain(x, z), atol=1e-2)
    with pytest.raises(ValueError, match="22"):
        G(x, z)
    with pytest.raises(ValueError, match="match_colors"):
        GanMocoGenerator(match_colors="yes")


def test_generator_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="base_channels"):
        GanMocoGenerator(base_channels=-4)
    with pytest.raises(ValueError, match="num_res_blocks"):
        GanMocoGenerator(num_res_blocks="2")
    with pytest.raises(ValueError, match="trunk_dilation must be a positive integer, got 0"):
        GanMocoGenerator(trunk_dilation=0)
    G = GanMocoGenerator(**TINY_GENERATOR)
    with pytest.raises(ValueError, match="code"):
        G(torch.rand(1, 3, 16, 16), torch.randn(1, 5))
    with pytest.raises(ValueError, match="N>=2"):
        G(torch.rand(1, 1, 3, 16, 16))
    with pytest.raises(ValueError, match="task ids"):
        G(torch.rand(1, 2, 3, 16, 16), task=9)


def test_style_encoder_round_trip(tmp_path):
    E = StyleEncoder(**TINY_STYLE_ENCODER)
    a, b = _round_trip(E, tmp_path, torch.rand(2, 3, 120, 80) * 2 - 1)
    assert a.shape == (2, 16) and torch.equal(a, b)
    with pytest.raises(ValueError, match="trunk_layer"):
        StyleEncoder(trunk_layer="fc")


def test_style_encoder_keeps_the_aspect_ratio_and_scales():
    """A style is seen at image_size on its shorter side, never squashed into a square: a square crop at that
    size passes as it is (training), a wide painting keeps its shape, a long strip is squeezed to MAX_ASPECT,
    and `scale` enlarges what the encoder sees (its effect on a trained model: test_pipeline)."""
    from ganmoco.models.style_encoder import MAX_ASPECT

    encoder = StyleEncoder(**TINY_STYLE_ENCODER).eval()  # image_size 96
    square = torch.rand(1, 3, 96, 96) * 2 - 1
    assert encoder.resized(square) is square
    assert encoder.resized(torch.zeros(1, 3, 300, 600)).shape[-2:] == (96, 192)
    assert encoder.resized(torch.zeros(1, 3, 300, 600), scale=1.5).shape[-2:] == (144, 288)
    assert encoder.resized(torch.zeros(1, 3, 40, 4000)).shape[-2:] == (96, 96 * MAX_ASPECT)
    wide = to_tensor(load_image(EXAMPLES / "van_gogh_night_cafe.jpg"))  # a real painting, wider than high
    assert wide.shape[-1] > 1.2 * wide.shape[-2] and encoder(wide).shape == (1, 16)
    stats = encoder.feature_statistics(torch.rand(1, 3, 128, 128) * 2 - 1)  # this trunk ends at stride 4
    # the last stage at stride 4 (Conv2d_4a_3x3: unpadded, 28 of 128 px, still stride 4, not "4.6")
    assert len(stats) == 1 and stats[0][0].shape == stats[0][1].shape == (1, 192)
    with pytest.raises(ValueError, match="scale must be positive"):
        encoder(wide, scale=0)


def test_discriminator_round_trip(tmp_path):
    D = GanMocoDiscriminator(**TINY_DISCRIMINATOR)
    a, b = _round_trip(D, tmp_path, torch.rand(2, 3, 64, 64), torch.randn(2, 16))
    assert [t.shape for t in a] == [(2, 1, 16, 16), (2, 1, 8, 8)]
    # the weights are bit-exact (checked above); spectral norm's division may round differently by layout
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="num_scales"):
        GanMocoDiscriminator(num_scales=0)


def test_discriminator_is_conditioned_on_the_code():
    D = GanMocoDiscriminator(**TINY_DISCRIMINATOR).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = D(x, torch.randn(1, 16)), D(x, torch.randn(1, 16))
    assert not torch.allclose(a[0], b[0])


def test_feature_extractor_round_trip_and_names(tmp_path):
    fx = FeatureExtractor("vgg16", layers=("relu1_2", "relu2_2"), pretrained=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    a, b = _round_trip(fx, tmp_path, x)
    assert set(a) == {"relu1_2", "relu2_2"}
    assert a["relu1_2"].shape == (1, 64, 32, 32) and a["relu2_2"].shape == (1, 128, 16, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in fx.parameters())
    fx.train()
    assert not fx.training
    with pytest.raises(ValueError, match="unknown vgg16 layers"):
        FeatureExtractor("vgg16", layers=("relu9_9",), pretrained=False)
    with pytest.raises(ValueError, match="network"):
        FeatureExtractor("resnet", pretrained=False)


def test_fusion_head_convolves_the_stack_once_as_if_beside_every_source():
    torch.manual_seed(0)
    head = FusionHead([8, 16], 4)
    for conv in (head.lateral[0], head.tone[0]):  # a 1x1 and a replicate-padded 3x3 convolution
        f = torch.randn(2, 3, conv.in_channels // 3, 10, 12)  # (B, N, C, h, w)
        stack = FusionHead._stack(f).unsqueeze(1).expand(-1, 3, -1, -1, -1)
        beside = conv(torch.cat([f, stack], dim=2).flatten(0, 1))
        assert torch.allclose(FusionHead._beside_stack(conv, f), beside, atol=1e-5)
