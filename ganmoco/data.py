"""Training data: crops and jitter, and the datasets of the three tasks (style photos,
synthetic and folder fusion stacks, degraded super-resolution pairs). The pixel convention is `ganmoco.pixels`,
loading a user's image `ganmoco.images`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .degrade import TRACKS, second_order
from .degrade import degrade as degraded
from .images import find_images, load_image
from .pixels import to_tensor
from .tasks import FUSION_TASKS


def split_train_val(paths: list[Path], val_count: int, seed: int) -> tuple[list[Path], list[Path]]:
    """A seeded split: `val_count` paths held out for validation, the rest for training."""
    if val_count <= 0:
        return list(paths), []
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(order[:val_count])
    held = set(val)
    return [p for i, p in enumerate(paths) if i not in held], [paths[i] for i in val]


def random_crop(image: Image.Image, resolution: int, rng: np.random.Generator, scale=(0.5, 1.0)) -> torch.Tensor:
    """A random square crop covering `scale` of the shorter side, resized to `resolution`, random h-flip."""
    short = min(image.size)
    side = max(1, int(short * rng.uniform(*scale)))
    left = int(rng.integers(0, image.width - side + 1))
    top = int(rng.integers(0, image.height - side + 1))
    crop = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(crop)[0]


def colour_jitter(x: torch.Tensor, rng: np.random.Generator, amount: float = 0.1) -> torch.Tensor:
    """Small brightness / contrast / saturation changes: more views of a scarce style image."""
    brightness = rng.uniform(-amount, amount)
    contrast = rng.uniform(1 - amount, 1 + amount)
    saturation = rng.uniform(1 - amount, 1 + amount)
    gray = x.mean(0, keepdim=True)
    x = gray + (x - gray) * saturation
    x = x.mean() + (x - x.mean()) * contrast + brightness
    return x.clamp(-1, 1)


class ImageDataset(torch.utils.data.Dataset):
    """Random crops of a list of images; item (epoch, index) is deterministic, so a resumed run sees the
    same data it would have seen."""

    def __init__(self, paths: list[Path], resolution: int, seed: int, jitter: bool = False):
        if not paths:
            raise ValueError("no readable images to train on")
        self.paths, self.resolution, self.seed, self.jitter = list(paths), resolution, seed, jitter

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        x = random_crop(load_image(self.paths[index]), self.resolution, rng)
        return colour_jitter(x, rng) if self.jitter else x


FOCUS_SHAPES = ("half", "disc", "depth")


def _focus_mask(size: tuple[int, int], rng: np.random.Generator, shape: str) -> torch.Tensor:
    """(1, H, W) in [0, 1], 1 where the first source is in focus: a straight edge at any angle ("half"), a
    disc ("disc"), or a smooth random depth map ("depth": focus then falls off gradually, as with a lens)."""
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w) * w / h, indexing="ij")
    edge = float(rng.uniform(1.0, 4.0)) / h * 2  # the width of the transition, in the [-1, 1] frame
    if shape == "half":
        angle = float(rng.uniform(0, 2 * np.pi))
        offset = float(rng.uniform(-0.4, 0.4))
        return torch.sigmoid((xx * np.cos(angle) + yy * np.sin(angle) - offset) / edge)[None]
    if shape == "disc":
        cy, cx, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4) * w / h, rng.uniform(0.3, 0.7)
        return torch.sigmoid((r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) / edge)[None]
    if shape == "depth":
        coarse = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32))
        depth = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)[0]
        return ((depth - depth.amin()) / (depth.amax() - depth.amin() + 1e-6)).clamp(0, 1)
    raise ValueError(f"unknown focus mask shape {shape!r}; expected one of {FOCUS_SHAPES}")


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    kernel = int(2 * round(3 * sigma) + 1)
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def _defocus(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x (3, H, W) blurred by a per-pixel Gaussian sigma (1, H, W): linear between a few fixed blurs."""
    levels = [0.0, 1.0, 2.0, 3.0, 4.5]
    stack = torch.stack([x] + [_blur(x, s) for s in levels[1:]])
    pos = torch.from_numpy(np.interp(sigma.numpy(), levels, np.arange(len(levels))).astype(np.float32))
    low = pos.floor().long().clamp(max=len(levels) - 2)
    frac = pos - low
    pick = lambda i: stack.gather(0, i.expand(1, 3, -1, -1))[0]  # noqa: E731
    return pick(low[None]) * (1 - frac) + pick(low[None] + 1) * frac


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (3, H, W) moved by whole pixels, edges repeated: a bracket that was not quite registered."""
    p = max(abs(dy), abs(dx))
    padded = torch.nn.functional.pad(x[None], (p, p, p, p), mode="replicate")[0]
    return padded[:, p - dy : p - dy + x.shape[1], p - dx : p - dx + x.shape[2]]


def synthetic_fusion_pair(
    x: torch.Tensor, kind: str, rng: np.random.Generator, shape: str | None = None, degrade: bool = False
) -> torch.Tensor:
    """Two sources (2, 3, H, W) made from one clean image x (3, H, W) in [-1, 1], whose ideal fusion is x.

    multi-focus: complementary defocus; the in-focus region is a half, a disc or a depth map (`shape`, random
    if None), a depth map defocusing both sources by their distance from two focal planes (beyond a depth of
    field).
    multi-exposure: an under- and an over-exposed bracket (gain and gamma, clipped).
    `degrade` (training): sensor noise, 8-bit quantisation and, half the time, the second source 1-2 px off.
    """
    shape = shape or FOCUS_SHAPES[int(rng.integers(len(FOCUS_SHAPES)))]
    if kind == "multi-focus":
        mask = _focus_mask(tuple(x.shape[-2:]), rng, shape)
        if shape == "depth":
            near, far, strength = float(rng.uniform(0, 0.35)), float(rng.uniform(0.65, 1)), rng.uniform(4, 8)
            field = float(rng.uniform(0.05, 0.15))  # the depth of field: sharp within it, blur grows beyond

            def sigma(plane):
                return ((mask - plane).abs() - field).clamp(min=0) * strength

            sources = [_defocus(x, sigma(near)), _defocus(x, sigma(far))]
        else:
            blurred = [_blur(x, float(rng.uniform(1.5, 3.5))) for _ in range(2)]
            sources = [mask * x + (1 - mask) * blurred[0], (1 - mask) * x + mask * blurred[1]]
        pair = torch.stack(sources)
    elif kind == "multi-exposure":
        unit = (x + 1) / 2
        dark = unit.pow(float(rng.uniform(1.8, 3.0))) * float(rng.uniform(0.5, 0.8))
        bright = (unit * float(rng.uniform(1.6, 2.5))).clamp(0, 1).pow(float(rng.uniform(0.5, 0.8)))
        pair = torch.stack([dark, bright]) * 2 - 1
    else:
        raise ValueError(f"unknown synthetic fusion kind {kind!r}")
    return _as_shot(pair, rng) if degrade else pair


def _as_shot(stack: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Sources (N, 3, H, W) with the degradations of real stacks: sensor noise, 8-bit quantisation and, half the
    time, the sources after the first 1-2 px off."""
    # the noise from the item's own generator, not torch's global one: resumed runs see the same items
    noise = torch.from_numpy(rng.standard_normal(tuple(stack.shape)).astype(np.float32))
    stack = stack + noise * float(rng.uniform(0, 0.02))
    stack = ((stack.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    if rng.random() < 0.5:
        shifts = rng.integers(-2, 3, size=(len(stack) - 1, 2))
        stack = torch.stack(
            [stack[0]] + [_shift(s, int(dy), int(dx)) for s, (dy, dx) in zip(stack[1:], shifts, strict=True)]
        )
    return stack


SRGB_GAMMA = 2.2


def synthetic_bracket(x: torch.Tensor, frames: int, rng: np.random.Generator, degrade: bool = False) -> torch.Tensor:
    """`frames` shots (frames, 3, H, W) of a high-dynamic-range scene made from one clean image x (3, H, W) in
    [-1, 1], whose ideal fusion is x: x in linear light times a smooth random gain field of up to +-1..4 stops
    (a window, a lamp, a shadow), shot 1-2.5 stops apart around a random exposure, clipped and gamma-encoded, in
    random order. Most often no single shot holds the scene, and x is each region at its right exposure: what an
    exposure fusion of a real bracket should give (the two-frame pairs of `synthetic_fusion_pair` vary the
    exposure of the whole picture only). `degrade` as there."""
    if frames < 2:
        raise ValueError(f"a bracket needs at least 2 frames, got {frames}")
    linear = ((x + 1) / 2).clamp(0, 1).pow(SRGB_GAMMA)
    coarse = torch.from_numpy(rng.standard_normal((1, 1, 3, 3)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=tuple(x.shape[-2:]), mode="bicubic", align_corners=True)[0]
    field = (field - field.mean()) / field.abs().amax().clamp(min=1e-6) * float(rng.uniform(1.0, 4.0))
    scene = linear * torch.exp2(field)
    step, centre = float(rng.uniform(1.0, 2.5)), float(rng.uniform(-1.5, 1.5))
    stops = rng.permutation(centre + (np.arange(frames) - (frames - 1) / 2) * step)
    shots = torch.stack([(scene * 2.0 ** float(ev)).clamp(0, 1).pow(1 / SRGB_GAMMA) for ev in stops]) * 2 - 1
    return _as_shot(shots, rng) if degrade else shots


class SyntheticFusionDataset(ImageDataset):
    """(sources (2, 3, H, W), task id, clean reference (3, H, W)) built on the fly from content photos, with
    the degradations of real stacks. A share `general_share` of the items carries the task "general" instead
    of its named kind, so that the default task learns every kind of stack."""

    def __init__(self, paths, resolution, seed, kinds=("multi-focus", "multi-exposure"), general_share=0.5):
        super().__init__(paths, resolution, seed)
        self.kinds, self.general_share = tuple(kinds), general_share

    def __getitem__(self, key):
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        x = random_crop(load_image(self.paths[index]), self.resolution, rng)
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        task = 0 if rng.random() < self.general_share else FUSION_TASKS.index(kind)
        return synthetic_fusion_pair(x, kind, rng, degrade=True), task, x


class UpscaleDataset(ImageDataset):
    """(low x2 (3, R/4, R/4), its high-res (3, R/2, R/2), low x4 (3, R/4, R/4), its high-res (3, R, R), their
    denoise strengths (2,): 0 clean, 1 degraded) from
    content photos: a crop near the photo's own resolution (1-1.5x the side R, so the detail is the camera's,
    not a resize's) for x4, a random half of it for x2 (both low-res inputs the same size, so the two scales
    cost the same), each made small by `degrade.second_order` with the item's own generator, or with `track` by
    that fixed degradation of `degrade.TRACKS` (strength 0 for "clean" and "area", else 1): a head for one known
    degradation, e.g. the best a head can do on one of the evaluator's tracks."""

    def __init__(self, paths, resolution, seed, track: str | None = None):
        if resolution % 4:
            raise ValueError(f"upscaling crops need a resolution divisible by 4, got {resolution}")
        if track is not None and track not in TRACKS:
            raise ValueError(f"unknown degradation track {track!r}; choose from {', '.join(TRACKS)}")
        super().__init__(paths, resolution, seed)
        self.track = track

    def _small(self, image, scale, rng):
        if self.track is None:
            return second_order(image, scale, rng)
        level = 0.0 if self.track in ("clean", "area") else 1.0
        return degraded(image, scale, self.track, seed=int(rng.integers(2**62))), level

    def __getitem__(self, key):
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index, 2])
        image = load_image(self.paths[index])
        r = self.resolution
        side = min(min(image.size), int(r * rng.uniform(1.0, 1.5)))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        hr = image.crop((left, top, left + side, top + side)).resize((r, r), Image.BICUBIC)
        if rng.random() < 0.5:
            hr = hr.transpose(Image.FLIP_LEFT_RIGHT)
        half = r // 2
        left, top = (int(v) for v in rng.integers(0, half + 1, size=2))
        hr2 = hr.crop((left, top, left + half, top + half))
        (low2, level2), (low4, level4) = self._small(hr2, 2, rng), self._small(hr, 4, rng)
        levels = torch.tensor([level2, level4])
        return to_tensor(low2)[0], to_tensor(hr2)[0], to_tensor(low4)[0], to_tensor(hr)[0], levels


class SyntheticBracketDataset(ImageDataset):
    """(sources (frames, 3, H, W), task id, clean reference (3, H, W)): `synthetic_bracket`s of content photos,
    with the degradations of real stacks; half of them carry the task "general", half "multi-exposure"."""

    def __init__(self, paths, resolution, seed, frames: int = 3):
        super().__init__(paths, resolution, seed)
        if frames < 2:
            raise ValueError(f"a bracket needs at least 2 frames, got {frames}")
        self.frames = frames

    def __getitem__(self, key):
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index, 5])
        x = random_crop(load_image(self.paths[index]), self.resolution, rng)
        task = 0 if rng.random() < 0.5 else FUSION_TASKS.index("multi-exposure")
        return synthetic_bracket(x, self.frames, rng, degrade=True), task, x


class FusionFolderDataset(torch.utils.data.Dataset):
    """Registered sets: each sub-folder of `root` holding 2+ images of one scene is one item (the same crop of
    each, task "general"); the first source stands in as the reference."""

    def __init__(self, root, resolution: int, seed: int, sources: int = 2, log=print):
        self.scenes = []
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
            paths, _ = find_images(folder, log=log)
            if len(paths) >= sources:
                self.scenes.append(paths[:sources])
        if not self.scenes:
            raise ValueError(f"{root} has no sub-folder with {sources} or more readable images")
        self.resolution, self.seed = resolution, seed

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, key):
        epoch, index = key
        images = [load_image(p) for p in self.scenes[index]]
        size = images[0].size
        images = [im if im.size == size else im.resize(size, Image.BICUBIC) for im in images]
        crops = [random_crop(im, self.resolution, np.random.default_rng([self.seed, epoch, index])) for im in images]
        return torch.stack(crops), 0, crops[0]


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Endless seeded batches of (epoch, index) keys for one process's shard. Batch k of the stream is a pure
    function of (seed, k), so resuming after `start` batches replays nothing and skips nothing."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        # every process gets the same number of items per epoch (the shard wraps around)
        self.per_rank = -(-size // world_size)
        self.batches_per_epoch = max(1, self.per_rank // batch_size)

    def __len__(self):
        return self.batches_per_epoch

    def __iter__(self):
        epoch, position = divmod(self.start, self.batches_per_epoch)
        while True:
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            needed = max(self.per_rank, self.batch_size) * self.world_size
            shard = perm.repeat(-(-needed // self.size))[self.rank :: self.world_size].tolist()
            for b in range(position, self.batches_per_epoch):
                yield [(epoch, i) for i in shard[b * self.batch_size : (b + 1) * self.batch_size]]
            epoch, position = epoch + 1, 0
