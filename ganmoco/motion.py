"""Global motion between two video frames, for temporally stable video stylization.

The camera motion of a frame pair (pan, zoom, rotation, shear) is fitted as one affine map by Gauss-Newton
least squares on small grey copies (Lucas-Kanade, coarse to fine). The previous stylized frame is then warped
by it and blended into the new one where the warped previous input agrees with the new input (elsewhere:
occlusions, moving objects, the border the camera uncovers, the new frame stays as it is).
Frames are (1, 3, H, W) tensors in [-1, 1]; a motion is the (1, 2, 3) `theta` of torch's affine_grid
(normalised coordinates, align_corners=False) that samples the previous frame at each pixel of the next.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IDENTITY = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def _grey(x: torch.Tensor, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (max(8, round(h * width / w)), width)
    return F.interpolate(x.float().mean(1, keepdim=True), size=size, mode="area")


def _grid(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """affine_grid(theta, x's size, align_corners=False), built from the two axes' coordinates by broadcasting
    (affine_grid multiplies every pixel's coordinates by theta: 2 ms of a 640x360 frame's carry-over, this 0.3)."""
    h, w = x.shape[-2:]
    xs = ((torch.arange(w, device=x.device) * 2 + 1) / w - 1).to(x.dtype)
    ys = ((torch.arange(h, device=x.device) * 2 + 1) / h - 1).to(x.dtype)[:, None]
    t = theta.to(x.dtype).expand(x.shape[0], 2, 3)[..., None, None]  # (B, 2, 3, 1, 1)
    return torch.stack([t[:, i, 0] * xs + t[:, i, 1] * ys + t[:, i, 2] for i in (0, 1)], dim=-1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """`x` sampled at the affine map `theta` (bilinear; outside the frame: its edge); the identity returns x."""
    if torch.equal(theta, IDENTITY.to(theta)):
        return x
    return F.grid_sample(x, _grid(theta, x), mode="bilinear", padding_mode="border", align_corners=False)


def estimate_motion(previous: torch.Tensor, current: torch.Tensor, widths=(48, 96), iters: int = 6) -> torch.Tensor:
    """The affine `theta` with warp(previous, theta) ~ current, by Gauss-Newton on grey copies `widths` px wide
    (coarse to fine). Identical frames give the identity exactly."""
    theta = IDENTITY.clone()
    for width in widths:
        prev, cur = _grey(previous, width), _grey(current, width)
        h, w = cur.shape[-2:]
        ys = (torch.arange(h) + 0.5) / h * 2 - 1
        xs = (torch.arange(w) + 0.5) / w * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # (P, 3)
        for _ in range(iters):
            moved = warp(prev, theta)
            residual = (moved - cur).reshape(-1)
            if not residual.abs().max() > 0:
                break
            # the warped image's gradient in normalised units, then the chain rule to the six parameters
            dx = torch.gradient(moved[0, 0], dim=1)[0].reshape(-1) * (w / 2)
            dy = torch.gradient(moved[0, 0], dim=0)[0].reshape(-1) * (h / 2)
            jac = torch.cat([dx[:, None] * coords, dy[:, None] * coords], dim=1)  # (P, 6)
            normal = jac.T @ jac + 1e-6 * torch.eye(6)  # the 6x6 normal equations: cheaper than lstsq
            step = torch.linalg.solve(normal, -(jac.T @ residual)).reshape(1, 2, 3)
            theta = theta + step
            if step.abs().max() < 0.05 / width:  # moves no grey pixel by 1/40 px: the fit's noise floor
                break
    return theta


def agreement(previous: torch.Tensor, current: torch.Tensor, theta: torch.Tensor, tolerance: float = 0.06):
    """(1, 1, H, W) in [0, 1]: how well the previous frame, moved by `theta`, shows what the current frame shows
    (1 where it agrees within `tolerance` in [-1, 1] units, falling off beyond; 0 where it had to be invented
    at the border)."""
    return _moved_and_trust(previous, current, theta, tolerance)[1]


def _moved_and_trust(
    previous: torch.Tensor, current: torch.Tensor, theta: torch.Tensor, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`previous` (any channels, its first three the frame) moved by `theta`, and the agreement of its frame with
    `current`: one sampling grid for both."""
    if torch.equal(theta, IDENTITY.to(theta)):
        moved, inside = previous, None
    else:
        grid = _grid(theta, current)
        # bicubic: a carried-over picture is resampled again every frame and bilinear's blur compounds (on a
        # 1 %-a-frame zoom the paint washed out: VGG mean/std distance +20 % against +9 %); the sharper moved frame
        # also agrees with the new one in more places
        moved = F.grid_sample(previous, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp_(-1, 1)
        inside = (grid.abs() <= 1).all(-1)[:, None].to(current.dtype)
    difference = torch.sub(moved[:, :3], current).abs_().mean(1, keepdim=True)
    trust = difference.div_(tolerance).square_().neg_().exp_()  # exp(-(difference / tolerance)^2)
    return moved, trust if inside is None else trust * inside


def _coarse(x: torch.Tensor, cell: int) -> torch.Tensor:
    """`x` averaged over cells of `cell` px and brought back to full size smoothly: a cheap low-pass (a few ms at
    640x360, where a 5x5 box blur costs ten)."""
    return F.interpolate(F.avg_pool2d(x, cell, ceil_mode=True), size=x.shape[-2:], mode="bilinear", align_corners=False)


def keep_contrast(blended: torch.Tensor, reference: torch.Tensor, max_gain: float = 2.0) -> torch.Tensor:
    """`blended` with its fine detail (what averaging over 4-px cells removes) scaled up, locally, to the detail
    energy of `reference`: a blend of two unlike brush textures is flatter than either (its variance drops), and
    that flattening is what made blended video frames look less painted. Only restores (gain in [1, max_gain])."""
    both = torch.cat([blended, reference.to(blended.dtype)]).float()
    detail = both - _coarse(both, 4)
    energy = _coarse(detail.pow(2).mean(1, keepdim=True), 8)
    b = blended.shape[0]
    gain = (energy[b:] / (energy[:b] + 1e-6)).sqrt().clamp(1.0, max_gain)
    return (blended + (detail[:b] * (gain - 1)).to(blended.dtype)).clamp(-1, 1)  # gain 1: blended, bit for bit


def carry_over(
    previous: torch.Tensor, previous_out: torch.Tensor, current: torch.Tensor, current_out: torch.Tensor, weight: float
) -> torch.Tensor:
    """`current_out` with the previous output, moved by the camera motion from `previous` to `current`, blended
    in with `weight` wherever the moved previous frame agrees with the current one (one warp for both), its
    texture contrast then brought back to the current output's (keep_contrast)."""
    theta = estimate_motion(previous, current)
    stacked = torch.cat([previous, previous_out.to(previous.dtype)], dim=1)
    moved, trust = _moved_and_trust(stacked, current, theta, tolerance=0.06)
    blended = torch.lerp(current_out, moved[:, 3:].to(current_out.dtype), weight * trust)
    return keep_contrast(blended, current_out)
