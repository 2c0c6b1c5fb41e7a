"""Registering a hand-held stack before fusion: global motion, borders and ghosts.

Frames of a bracket or a focus stack shot by hand differ by a small camera motion (shift, rotation, the scale
change of focus breathing): fused as they are, every edge doubles. `register` fits one affine map per frame onto
a reference frame, robust to exposure and focus differences:
- each frame is compared as a locally normalised grey image (its local mean removed and divided by its local
  contrast), which an exposure change or a defocus alters far less than it alters the pixels;
- a phase correlation proposes shifts (any size up to half the frame), the best of them (as proposed or after a
  coarse fit, by correlation) goes on, then Gauss-Newton least squares (Lucas-Kanade, coarse to fine, with
  Cauchy weights so that a moving subject does not pull the fit, clipped areas left out) refines the six affine
  parameters at up to `max_side` pixels; a fit that diverges falls back to its start.
`sharpest` weighs each region towards the frame that shows it sharpest, wherever the frames show it at one level
(a focus stack): the head alone mixes real frames whose defocus differs by little more than their noise.
`ghost_masks` marks where an aligned frame still disagrees with the reference once the exposure difference is
undone and their fine detail (what focus changes) is smoothed away: something moved there, and fusion keeps
the reference.

A motion is the (1, 2, 3) `theta` of torch's affine_grid (normalised coordinates, align_corners=False) that
samples the frame at each pixel of the reference; it is the same at every resolution of the frame.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .motion import IDENTITY, _grid

ALIGN_SIDE = 1024  # the fit works on copies at most this long: ~0.02 px there, well under a pixel at 24 MP
MIN_ALIGN_SIDE = 48  # frames smaller than this are too small to align (they are fused as given)
GHOST_SIDE = 256  # ghosts are found on copies this long: they are regions, not pixels
GHOST_TOLERANCE = 0.05  # a channel's difference in [0, 1], past two spreads of its tone mapping: motion
WELL_EXPOSED_SIGMA = 0.2  # exposure fusion's well-exposedness Gaussian (Mertens et al. 2007), levels in [0, 1]
MIN_COVERED = 0.5  # a hand-held frame covers at least this much of the reference: a fit that leaves more out failed
MAX_LINEAR = 0.15  # rotation, scale and shear of a hand (9 degrees, 15 %) at most: a fit past it diverged
CLIPPED = 0.02  # levels this close to 0 or 1 are clipped: they predict nothing of another exposure
FOCUS_RADII = (1, 2)  # box radii at full resolution, each box taken twice (triangles of sigma 1.15 and 2 px): the
# band between them is what a defocus blur takes first
FOCUS_POWER = 32.0  # a region's weight is (its band energy / the sharpest frame's) ** this: 1.1x sharper, 21x
FOCUS_SAME_LEVEL = 0.05  # regions whose mean levels spread wider than this are an exposure question (off by 2x)


def grey(x: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] -> (1, 1, h, w) grey in [0, 1] with its longer side at most `side` (area)."""
    h, w = x.shape[-2:]
    scale = min(1.0, side / max(h, w))
    g = (x.float().mean(1, keepdim=True) + 1) / 2
    if scale < 1.0:
        g = F.interpolate(g, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="area")
    return g


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over a (2 radius + 1)-px square, edges replicated, by running sums (5x faster than pooling)."""
    k = 2 * radius + 1
    x = F.pad(x, (radius + 1, radius, radius + 1, radius), mode="replicate")
    x = x.cumsum(-1)
    x = x[..., k:] - x[..., :-k]
    x = x.cumsum(-2)
    return (x[..., k:, :] - x[..., :-k, :]) / (k * k)


def normalised(g: torch.Tensor, radius: int = 4, floor: float = 0.01) -> torch.Tensor:
    """Local contrast normalisation: (g - local mean) / (local std + floor), locals over ~2 `radius` px. An
    exposure change (a gain and a gamma) barely moves it; flat or clipped areas go to 0."""
    detail = g - _box(_box(g, radius), radius)
    return detail / (_box(_box(detail.square(), radius), radius).sqrt() + floor)


def _region_radius(g: torch.Tensor) -> int:
    """1/128 of g's frame, in its pixels: wider than a defocus blur changes an edge."""
    return max(2, round(max(g.shape[-2:]) / 128))


def _regions(g: torch.Tensor) -> torch.Tensor:
    """g smoothed over regions (two box passes of `_region_radius`): what a region shows, not its edges."""
    radius = _region_radius(g)
    return _box(_box(g, radius), radius)


def _region_levels(frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each frame's ((1, 3, h, w) in [-1, 1]) mean grey level in [0, 1] over regions: what defocus keeps."""
    return [_regions((f.float().mean(1, keepdim=True) + 1) / 2) for f in frames]


def _with_trust(g: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w): the normalised grey image and 1 where no pixel near it is clipped (a clipped highlight
    or shadow has edges that move with the exposure, not with the camera)."""
    unclipped = ((g > CLIPPED) & (g < 1 - CLIPPED)).float()
    return torch.cat([normalised(g), (_box(unclipped, 2) > 0.999).float()], dim=1)  # a 5x5 min, cheaply


def _shifts_by_phase(reference: torch.Tensor, moving: torch.Tensor, count: int = 3) -> list[tuple[float, float]]:
    """The `count` likeliest whole-pixel (dx, dy) with moving(p) ~ reference(p - (dx, dy)), by phase
    correlation of (1, 1, h, w) images (the highest peaks first)."""
    h, w = reference.shape[-2:]
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    a, b = torch.fft.rfft2(reference[0, 0] * window), torch.fft.rfft2(moving[0, 0] * window)
    cross = a.conj() * b
    surface = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(h, w))
    peaks = surface == F.max_pool2d(surface[None, None], 5, 1, 2, ceil_mode=False)[0, 0]
    shifts = []
    for peak in torch.where(peaks.reshape(-1), surface.reshape(-1), -torch.inf).topk(count).indices.tolist():
        dy, dx = divmod(peak, w)
        shifts.append((float(dx - w if dx > w // 2 else dx), float(dy - h if dy > h // 2 else dy)))
    return shifts


def _fit(
    reference: torch.Tensor, moving: torch.Tensor, theta: torch.Tensor, iters: int, shift_only: bool = False
) -> torch.Tensor:
    """Gauss-Newton refinement of `theta` so that moving sampled at theta matches reference ((1, 2, h, w):
    a normalised image and the mask of its unclipped pixels), with Cauchy weights (outliers: a moving
    subject). The Jacobian uses the reference's gradient, computed once (near the fit the moved frame's
    gradient is the same). `shift_only` fits the shift alone (a safe first step from a rough start)."""
    reference, trusted = reference[:, :1], reference[:, 1:]
    if trusted.mean() < 0.3:  # mostly clipped: its edges are all there is to fit
        trusted, moving = torch.ones_like(trusted), torch.cat([moving[:, :1], torch.ones_like(trusted)], dim=1)
    h, w = reference.shape[-2:]
    # every other row and column on the large copies: the gradient still comes from every pixel, a quarter of
    # the equations are as good a fit (a 512-px copy then costs what a 256-px one does)
    stride = 2 if h * w > 120_000 else 1
    ys = (torch.arange(0, h, stride) + 0.5) / h * 2 - 1
    xs = (torch.arange(0, w, stride) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)
    dx = torch.gradient(reference[0, 0], dim=1)[0][::stride, ::stride].reshape(-1, 1) * (w / 2)
    dy = torch.gradient(reference[0, 0], dim=0)[0][::stride, ::stride].reshape(-1, 1) * (h / 2)
    jac = torch.cat([dx * coords, dy * coords], dim=1)  # (P, 6)
    if shift_only:
        jac = jac * torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])  # the four linear terms get no step
    target = reference[0, 0, ::stride, ::stride].reshape(-1)
    trusted = trusted[0, 0, ::stride, ::stride].reshape(-1)
    for _ in range(iters):
        grid = (coords @ theta[0].T).reshape(1, *gx.shape, 2)
        moved = F.grid_sample(moving, grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = (grid.abs() < 1).all(-1).reshape(-1).float() * (moved[0, 1].reshape(-1) * trusted > 0.99)
        residual = moved[0, 0].reshape(-1) - target
        spread = (residual.abs() * inside).sum() / inside.sum().clamp(min=1) * 2.5 + 0.05
        weighted = jac * (inside / (1 + (residual / spread).square()))[:, None]
        normal = weighted.T @ jac
        # damped relative to its size: a frame whose trusted edges all run one way (a clipped bracket) leaves
        # no shift along them, and the plain system is singular there
        normal = normal + (1e-6 + 1e-5 * normal.diagonal().max()) * torch.eye(6)
        step, info = torch.linalg.solve_ex(normal, -(weighted.T @ residual))
        if info.item() != 0 or not bool(torch.isfinite(step).all()):
            break
        theta = theta + step.reshape(1, 2, 3)
        if step.abs().max() < 0.01 / max(h, w):  # moves no pixel by 1/200 px: done at this scale
            break
    return theta


def _misfit(reference: torch.Tensor, moving: torch.Tensor, theta: torch.Tensor) -> float:
    """1 - the correlation of the normalised images ((1, 2, h, w), as `_with_trust` gives them) where both are
    unclipped and moving, sampled at theta, lands inside: 0 for a perfect fit. A correlation, not a difference:
    flat regions (normalised to 0) then agree with nothing, and the contrast an exposure changes does not count.
    A theta that leaves most of the reference uncovered is no hand-held motion: the worst score, 2."""
    grid = _grid(theta, reference)
    inside = (grid.abs() < 1).all(-1)[:, None].float()
    if inside.mean() < MIN_COVERED:
        return 2.0
    moved = F.grid_sample(moving, grid, mode="bilinear", padding_mode="border", align_corners=False)
    both = inside * (reference[:, 1:] > 0.99) * (moved[:, 1:] > 0.99)
    a, b = reference[:, :1] * both, moved[:, :1] * both
    return float(1 - (a * b).sum() / ((a.square().sum() * b.square().sum()).sqrt() + 1e-9))


def estimate(reference: torch.Tensor, moving: torch.Tensor, max_side: int = ALIGN_SIDE) -> torch.Tensor:
    """The affine theta with moving sampled at theta ~ reference, for (1, 3, H, W) frames of one size in
    [-1, 1] (their pixels as given: the fit works on small grey copies)."""
    side = min(max_side, max(reference.shape[-2:]))
    ref_full, mov_full = grey(reference, side), grey(moving, side)
    h, w = ref_full.shape[-2:]
    # the shift first, on copies up to 256 px: the gradient steps below only converge within a few pixels.
    # The likeliest shifts and no shift at all each start a coarse fit; the best of them goes on.
    probe = min(256, side) / max(h, w)
    size = (max(8, round(h * probe)), max(8, round(w * probe)))
    probe_ref = _with_trust(F.interpolate(ref_full, size=size, mode="area"))
    probe_mov = _with_trust(F.interpolate(mov_full, size=size, mode="area"))
    shifts = _shifts_by_phase(probe_ref[:, :1], probe_mov[:, :1])
    starts = []
    for dx, dy in [(0.0, 0.0), *shifts]:
        theta = IDENTITY.clone()
        theta[0, 0, 2], theta[0, 1, 2] = 2 * dx / size[1], 2 * dy / size[0]
        starts.append(theta)
    width, theta = 64, None
    while True:
        scale = min(1.0, width / max(h, w))
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        if size == tuple(probe_ref.shape[-2:]):  # the probe's copies, made once
            ref, mov = probe_ref, probe_mov
        else:
            ref = _with_trust(F.interpolate(ref_full, size=size, mode="area") if scale < 1 else ref_full)
            mov = _with_trust(F.interpolate(mov_full, size=size, mode="area") if scale < 1 else mov_full)
        if theta is None:
            # the starts as proposed and as the coarsest fit left them, judged on the sharper probe copies: on
            # a bracket the 64-px copies can pull a right start away (a facade's repeated windows, clipping)
            candidates = []
            for t in starts + [_fit(ref, mov, start, iters=20, shift_only=True) for start in starts]:
                if all(float((t - c).abs().max()) * max(probe_ref.shape[-2:]) > 1 for c in candidates):
                    candidates.append(t)  # (fits that met at one place within half a probe pixel: judged once)
            theta = start = min(candidates, key=lambda t: _misfit(probe_ref, probe_mov, t))
        else:
            # rotation and scale only from 256 px (or half the frame's side) on: on coarser copies a bracket's
            # clipped frame can pull them astray
            shift_only = width < min(256, max(h, w) // 2)
            theta = _fit(ref, mov, theta, iters=3 if scale == 1.0 else 8, shift_only=shift_only)
        if scale == 1.0:
            # a fit that diverged (a bracket with little unclipped in common) falls back to its start's shift,
            # or to no motion at all where that fits better (a frame with nothing to hold on to)
            candidates = ([theta] if _plausible(theta) else []) + [start, IDENTITY]
            return min(candidates, key=lambda t: _misfit(probe_ref, probe_mov, t)).clone()
        width *= 2


def _plausible(theta: torch.Tensor) -> bool:
    """Whether theta's rotation, scale and shear are a hand's (within MAX_LINEAR of the identity's)."""
    return float((theta[0, :, :2] - IDENTITY[0, :, :2]).abs().max()) < MAX_LINEAR


def displacement(theta: torch.Tensor, size: tuple[int, int]) -> float:
    """The largest distance in pixels (of an image of `size` (H, W)) that theta moves a corner from itself."""
    h, w = size
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    moved = corners @ (theta[0] - IDENTITY[0]).T * torch.tensor([w / 2, h / 2])
    return float(moved.norm(dim=1).max())


def register(frames: list[torch.Tensor], reference: int = 0, max_side: int = ALIGN_SIDE) -> list[torch.Tensor]:
    """One theta per frame onto frames[reference] ((1, 3, H, W), one size): the identity for the reference
    itself, for frames too small to align and for motions under 0.3 px (a registered stack stays as it is:
    clipping in an exposure bracket biases a fit by up to ~0.2 px)."""
    size = tuple(frames[reference].shape[-2:])
    thetas = []
    for i, frame in enumerate(frames):
        theta = IDENTITY.clone()
        if i != reference and min(size) >= MIN_ALIGN_SIDE:
            theta = estimate(frames[reference], frame, max_side)
            if displacement(theta, size) < 0.3:
                theta = IDENTITY.clone()
        thetas.append(theta)
    return thetas


SPLINE_DEGREE = 7  # moved frames are resampled with a B-spline of this degree (odd): 3 -> 7 keeps 0.3 dB more detail
SPLINE_PAD = 32  # extra pixels read around a crop: the prefilter's reach (its largest pole: -0.535; 0.535^32 ~ 2e-9)


def _bspline(x: torch.Tensor, degree: int) -> torch.Tensor:
    """The centred B-spline of `degree` at x: a sum of truncated powers."""
    total = torch.zeros_like(x)
    for k in range(degree + 2):
        total += (-1) ** k * math.comb(degree + 1, k) * (x + (degree + 1) / 2 - k).clamp(min=0) ** degree
    return total / math.factorial(degree)


@functools.cache
def _tap_polynomials(degree: int) -> tuple[tuple[float, ...], ...]:
    """For each tap of a position with fractional part f: its weight as a polynomial in f (highest power first).
    On [0, 1) each tap's B-spline piece is one polynomial; Horner's rule then costs a fraction of the sum of
    truncated powers on every pixel."""
    f = torch.linspace(0, 1, 2 * degree + 2, dtype=torch.float64)
    powers = torch.stack([f**i for i in range(degree, -1, -1)], dim=1)
    return tuple(
        tuple(torch.linalg.lstsq(powers, _bspline(f - k, degree)[:, None]).solution[:, 0].tolist())
        for k in range(-(degree // 2), degree // 2 + 2)
    )


def _horner(poly: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
    value = torch.full_like(x, poly[0])
    for c in poly[1:]:
        value = value * x + c
    return value


def _spline_coefficients(x: torch.Tensor, degree: int) -> torch.Tensor:
    """The B-spline coefficients of x (..., H, W) along both axes (edges mirrored): dividing the spectrum by the
    spline's own at the pixels (for degree 3: (4 + 2 cos w) / 6) makes the spline pass through every pixel."""
    taps = _bspline(torch.arange(degree // 2 + 1, dtype=torch.float64), degree).tolist()
    for axis in (-1, -2):
        x = x.movedim(axis, -1)
        pad = min(SPLINE_PAD, x.shape[-1] - 1)
        mirrored = torch.cat([x[..., 1 : pad + 1].flip(-1), x, x[..., -pad - 1 : -1].flip(-1)], dim=-1)
        n = mirrored.shape[-1]
        w = torch.fft.rfftfreq(n) * 2 * torch.pi
        response = taps[0] + sum(2 * tap * torch.cos(k * w) for k, tap in enumerate(taps) if k)
        x = torch.fft.irfft(torch.fft.rfft(mirrored) / response, n=n)[..., pad : pad + x.shape[-1]].movedim(-1, axis)
    return x


def _spline_sample(image: torch.Tensor, px: torch.Tensor, py: torch.Tensor, degree: int) -> torch.Tensor:
    """image (1, C, H, W) at the pixel positions (px, py) (h, w) (0 = the first pixel's centre; edges clamped) by
    B-spline interpolation of `degree`: a moved frame keeps more of its fine detail than with bicubic (and
    degree 7 more than 3). The (degree + 1)^2 taps are read as bilinear samples of 2x2 taps each (the B-spline's
    weights are all positive, so each pair of taps is one bilinear read at the right place between them: Sigg
    and Hadwiger, GPU Gems 2, ch. 20)."""
    coefficients = _spline_coefficients(image.float(), degree)
    height, width = coefficients.shape[-2:]

    def reads(t):  # per axis: each pair's bilinear position (pixels) and weight
        base = t.floor()
        f = t - base
        weights = [_horner(poly, f) for poly in _tap_polynomials(degree)]
        first = -(degree // 2)  # the taps of t are floor(t) + first ... floor(t) + first + degree
        return [
            (base + first + k + weights[k + 1] / (weights[k] + weights[k + 1]), weights[k] + weights[k + 1])
            for k in range(0, degree + 1, 2)
        ]

    across, total = reads(px), 0
    # the columns' read positions and weights, the same for every row of pairs: stacked once
    xs = torch.stack([hx * 2 / max(width - 1, 1) - 1 for hx, _ in across])
    x_weights = torch.stack([gx for _, gx in across])[:, None]
    for hy, gy in reads(py):  # a row of pairs a call: one batched read, memory (degree + 1) / 2 x the piece
        grid = torch.stack([xs, (hy * 2 / max(height - 1, 1) - 1).expand_as(xs)], dim=-1)
        row = F.grid_sample(
            coefficients.expand(len(across), -1, -1, -1),
            grid,
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        total = total + gy * (x_weights * row).sum(0, keepdim=True)
    return total


def sample(
    frame: torch.Tensor,
    theta: torch.Tensor,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    degree: int | None = None,
):
    """The part `box` = (y0, y1, x0, x1) of the reference view (of `size` (H, W)) of `frame` (1, C, H, W, any
    dtype: uint8 frames are converted only where they are read) moved by theta: (1, C, h, w) float32 (a B-spline
    of `degree`, default SPLINE_DEGREE), and the (1, 1, h, w) mask of the pixels that fall inside the frame
    (elsewhere the frame shows nothing: 0)."""
    y0, y1, x0, x1 = box
    h, w = size
    if torch.equal(theta, IDENTITY.to(theta)):
        piece = frame[..., y0:y1, x0:x1].float()
        return piece, piece.new_ones(1, 1, y1 - y0, x1 - x0)
    xs = ((torch.arange(x0, x1) * 2 + 1) / w - 1)[None, :]
    ys = ((torch.arange(y0, y1) * 2 + 1) / h - 1)[:, None]
    t = theta[0].float()
    gx = t[0, 0] * xs + t[0, 1] * ys + t[0, 2]
    gy = t[1, 0] * xs + t[1, 1] * ys + t[1, 2]
    inside = ((gx.abs() <= 1) & (gy.abs() <= 1)).float()[None, None]
    # read only the frame's pixels this box needs (+ the spline's reach), in the frame's own pixels
    px, py = (gx + 1) * w / 2 - 0.5, (gy + 1) * h / 2 - 0.5
    c0, c1 = max(0, int(px.min()) - SPLINE_PAD), min(w, int(px.max()) + SPLINE_PAD + 2)
    r0, r1 = max(0, int(py.min()) - SPLINE_PAD), min(h, int(py.max()) + SPLINE_PAD + 2)
    if c1 - c0 < 2 or r1 - r0 < 2:  # the box lies wholly outside the frame
        return frame.new_zeros(1, frame.shape[1], y1 - y0, x1 - x0, dtype=torch.float32), inside
    piece = _spline_sample(frame[..., r0:r1, c0:c1], px - c0, py - r0, degree or SPLINE_DEGREE)
    return piece, inside


def _expected(source: torch.Tensor, target: torch.Tensor, usable: torch.Tensor, bins: int = 64):
    """Per pixel, the mean and std of `target` over the usable pixels where `source` has the same grey level
    (of `bins`): what the target should show there if the two frames show one scene, whatever the exposure or
    tone curve between them (a clipped level predicts a wide spread, so it is never called a ghost)."""
    index = (source * (bins - 1)).round().long().clamp(0, bins - 1).reshape(-1)
    weight, value = usable.reshape(-1), target.reshape(-1)
    count = torch.bincount(index, weight, bins).clamp(min=1e-6)
    mean = torch.bincount(index, weight * value, bins) / count
    spread = (torch.bincount(index, weight * value.square(), bins) / count - mean.square()).clamp(min=0).sqrt()
    return mean[index].reshape(target.shape), spread[index].reshape(target.shape)


def ghost_masks(
    reference: torch.Tensor, moved: list[torch.Tensor], inside: list[torch.Tensor], tolerance: float = GHOST_TOLERANCE
) -> list[torch.Tensor]:
    """Per moved frame ((1, 3, h, w) aligned to `reference`, with its inside mask, all at one small size) a
    (1, 1, h, w) mask in [0, 1]: 1 where it shows something else than the reference (a subject that moved):
    where, smoothed past focus differences, the reference is further than `tolerance` beyond two standard
    deviations from what the frame's grey level predicts of it (in either direction)."""
    radius = _region_radius(reference)
    # per colour channel: an exposure change maps each channel through one curve, not the grey of a colour;
    # mapped first, smoothed after (a curve of a blurred edge is not the blurred curve of the edge)
    ref = ((reference.float() + 1) / 2).unbind(1)
    masks = []
    for frame, valid in zip(moved, inside, strict=True):
        usable = (valid > 0.99).float()
        if usable.sum() < 64:
            masks.append(torch.zeros_like(valid))
            continue
        found = torch.zeros_like(valid)
        for a, b in zip(ref, ((frame.float() + 1) / 2).unbind(1), strict=True):
            for source, target in ((b[:, None], a[:, None]), (a[:, None], b[:, None])):
                mean, spread = _expected(source, target, usable)
                excess = (_regions(target) - _regions(mean)).abs() - 2 * _regions(spread)
                # a clipped level says nothing of the other frame there (a white fur, a black shadow)
                informative = _regions(((source > CLIPPED) & (source < 1 - CLIPPED)).float()) > 0.5
                found = torch.maximum(found, (excess > tolerance).float() * usable * informative)
        found = -F.max_pool2d(-found, 3, 1, 1)  # opened: isolated pixels are noise, not a subject
        found = F.max_pool2d(found, 2 * radius + 1, 1, radius)  # grown back and past the subject's soft edge
        masks.append(_regions(F.max_pool2d(found, 2 * radius + 1, 1, radius)).clamp(0, 1))
    return masks


def well_exposed(frames: list[torch.Tensor], sigma: float = WELL_EXPOSED_SIGMA) -> list[torch.Tensor]:
    """Per frame ((1, 3, h, w) in [-1, 1], aligned, at one small size) a (1, 1, h, w) weight in (0, 1]: how near
    mid-grey its region's mean level is (a Gaussian of `sigma`), relative to the best exposed frame there (which
    gets 1). Regions, not pixels: a change of focus keeps a region's mean, so a focus stack is left alone."""
    score = torch.stack([torch.exp(-((v - 0.5) ** 2) / (2 * sigma**2)) for v in _region_levels(frames)])
    score = score / score.amax(0, keepdim=True).clamp(min=1e-6)
    return list(score.clamp(min=1e-3).unbind(0))


def focus_energy(frame: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 3, H, W) frame (8-bit or in [-1, 1]) -> (1, 1, h, w) its band-pass energy, taken at full resolution
    (a defocus of a pixel or two is gone at any smaller size) and area-pooled to at most `side` px; in strips of
    rows, so a 24 MP frame never exists as floats."""
    height, width = frame.shape[-2:]
    factor = max(1, math.floor(max(height, width) / side / 2))  # pooled strip by strip, then to the final size
    rows, margin = factor * max(1, 512 // factor), 2 * max(FOCUS_RADII)
    pooled = []
    for top in range(0, height, rows):
        y0, y1 = max(0, top - margin), min(height, top + rows + margin)
        g = frame[..., y0:y1, :].float().mean(1, keepdim=True)
        g = g / 255 if frame.dtype == torch.uint8 else (g + 1) / 2
        fine, coarse = (_box(_box(g, radius), radius) for radius in FOCUS_RADII)
        band = fine.sub_(coarse)[..., top - y0 : top - y0 + min(rows, height - top), :]
        pooled.append(F.avg_pool2d(band.square_(), factor, ceil_mode=True) if factor > 1 else band.square_())
    energy = torch.cat(pooled, dim=-2)
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(energy, size=size, mode="area") if energy.shape[-2:] != size else energy


def sharpest(energies: list[torch.Tensor], frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per frame (aligned `focus_energy` maps and the frames, (1, 3, h, w) in [-1, 1], at one small size) a
    (1, 1, h, w) weight in (0, 1]: per region, (its band energy / the sharpest frame's) ** FOCUS_POWER, where the
    frames' mean levels agree (within FOCUS_SAME_LEVEL, fading out by twice that); 1 elsewhere, where exposure,
    not focus, tells the frames apart. Enfuse's hard mask, by regions: no seams at the choices."""
    logs = torch.stack([torch.log(_regions(e) + 1e-7) for e in energies])
    score = torch.exp(FOCUS_POWER * (logs - logs.amax(0, keepdim=True)))
    level = torch.stack(_region_levels(frames))
    same = (2 - (level.amax(0) - level.amin(0)) / FOCUS_SAME_LEVEL).clamp(0, 1)
    return list((1 - same * (1 - score)).clamp(min=1e-3).unbind(0))


def common_box(inside: torch.Tensor) -> tuple[int, int, int, int]:
    """The (y0, y1, x0, x1) of a large axis-aligned rectangle where `inside` (h, w) is all 1: the frame's edges
    moved in, one row or column at a time from the side with the most missing pixels."""
    y0, x0, (y1, x1) = 0, 0, inside.shape
    ok = inside > 0.5
    while y1 - y0 > 1 and x1 - x0 > 1:
        box = ok[y0:y1, x0:x1]
        missing = {
            "top": int((~box[0]).sum()),
            "bottom": int((~box[-1]).sum()),
            "left": int((~box[:, 0]).sum()),
            "right": int((~box[:, -1]).sum()),
        }
        side = max(missing, key=missing.get)
        if missing[side] == 0:
            break
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
    return y0, y1, x0, x1
