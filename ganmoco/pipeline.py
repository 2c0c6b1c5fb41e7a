"""GanMocoPipeline: stylize and fuse PIL images (or paths) with a trained GAN-MoCo generator."""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import options
from .align import (
    ALIGN_SIDE,
    GHOST_SIDE,
    MIN_ALIGN_SIDE,
    common_box,
    focus_energy,
    ghost_masks,
    register,
    sample,
    sharpest,
    well_exposed,
)
from .cpu import tune_allocator
from .images import ImageInput, load_image
from .migrate import ConvertError, outdated
from .models.generator import FUSION_TASKS, GanMocoGenerator, NormStats
from .models.style_encoder import StyleEncoder
from .motion import IDENTITY, carry_over
from .options import DEFAULT_MODEL, PAINT_SIDE
from .pixels import fit_within, load_mask, to_pil, to_tensor
from .tiling import run_tiled, thumbnail

_STYLE_CACHE_SIZE = 96  # codes (one per image and scale) and picked scales; a code is 106 floats
AUTO_TILE_PIXELS = 2048 * 2048  # above this, stylize works in tiles unless told otherwise
DEFAULT_TILE = 1024
TILE_MARGIN = 64  # fusion tiles' context (> the encoder and fusion head's reach); stylize's is the generator's
CODE_MAP_STRIDE = 8  # a mask's per-pixel code map is at 1/8 of the image (the generator resizes it per layer)
FUSE_TILE_PIXELS = 2_000_000  # frames x pixels fused in one piece: ~0.7 GB a megapixel (two 2048^2 frames: 6.5 GB)
THUMBNAIL_SIDE = 2048  # tiles share the statistics of the image at up to this side: exact up to 2048 px
UPSCALE_AUTO_TILE_PIXELS = 1024 * 1024  # input pixels above which upscale works in tiles
UPSCALE_TILE = 512  # input pixels a side
UPSCALE_MARGIN = 32  # input pixels: more than the upscaling head's receptive-field radius (~26)
BATCH_PIXELS = 4_000_000  # input pixels of same-size images run in one forward when given a list


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
STYLE_SCALES = (1.0, 1.5)  # the stroke sizes style_scale="auto" chooses between (StyleEncoder.forward's scale)
SCALE_PROBE = DEFAULT_MODEL.parent / "examples" / "castle_chambord.jpg"  # the photo the choice paints
SCALE_PROBE_SIDE = 384


class ModelLoadError(OSError):
    """A model folder or Hub id that cannot be loaded; the message names what is missing."""


class GanMocoPipeline(DiffusionPipeline):
    """Arbitrary style transfer and N-image fusion with one shared generator.

    >>> pipe = GanMocoPipeline.from_pretrained()           # the bundled default model, offline
    >>> out = pipe.stylize("photo.jpg", "painting.jpg", strength=0.8)
    >>> fused = pipe.fuse(["near_focus.jpg", "far_focus.jpg"], task="multi-focus")
    >>> big = pipe.upscale("photo.jpg", scale=4)
    """

    model_cpu_offload_seq = "style_encoder->generator"

    def __init__(self, generator: GanMocoGenerator, style_encoder: StyleEncoder):
        super().__init__()
        if generator.config.code_dim != style_encoder.config.code_dim:
            raise ValueError(
                f"generator code_dim {generator.config.code_dim} != style_encoder code_dim "
                f"{style_encoder.config.code_dim}"
            )
        self.register_modules(generator=generator, style_encoder=style_encoder)
        self._style_cache: OrderedDict[tuple, torch.Tensor | float] = OrderedDict()
        # guards the cache's bookkeeping only: the generator is a pure function, so calls may run concurrently
        self._cache_lock = threading.Lock()
        tune_allocator()  # large activations from the heap, not fresh pages (see ganmoco/cpu.py)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs):
        """Load from a local folder, a Hub repo id (downloaded with snapshot_download), or, with no argument,
        the bundled default model."""
        path = DEFAULT_MODEL if pretrained_model_name_or_path is None else pretrained_model_name_or_path
        local = Path(path)
        if not local.is_dir():
            # a Hub id is exactly "owner/name"; anything else (./x, ../x, /x, ~/x, a/b/c) is a local path
            if not _HUB_ID.fullmatch(os.fspath(path)) or local.exists():
                raise ModelLoadError(f"model folder {os.fspath(path)!r} does not exist")
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

            hub_keys = ("revision", "cache_dir", "token", "local_files_only")
            try:
                local = Path(snapshot_download(os.fspath(path), **{k: kwargs.pop(k) for k in hub_keys if k in kwargs}))
            except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
                raise ModelLoadError(
                    f"cannot fetch {os.fspath(path)!r} from the Hub: {str(err).splitlines()[0]}"
                ) from None
        try:
            older = outdated(local)  # also: the files a pipeline folder needs, weights in safetensors only
        except ConvertError as err:
            raise ModelLoadError(str(err)) from None
        if older:
            raise ModelLoadError(
                f"{local} was {older[0]} (an older ganmoco): convert it once with `ganmoco convert {local} NEW_FOLDER`"
            )
        kwargs.setdefault("use_safetensors", True)
        generator_weights = next((local / "generator").glob("*.safetensors"))
        with safe_open(generator_weights, "pt") as weights:
            stored_dtype = weights.get_slice(next(iter(weights.keys()))).get_dtype()
        # two small components: a loading bar is noise on stderr (the CLI promises one line on error)
        was_enabled = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()
        try:
            pipe = super().from_pretrained(local, **kwargs)
        except (ValueError, RuntimeError) as err:  # diffusers: ValueError, or RuntimeError without low_cpu_mem_usage
            text = str(err)
            if not any(key in text for key in ("expected shape", "size mismatch")) and "missing" not in text.lower():
                raise
            first = next((line.strip() for line in text.splitlines() if "mismatch" in line), text.split(". ")[0])
            raise ModelLoadError(
                f"the weights in {local} do not fit its config.json (a model saved by an older ganmoco, whose "
                f"fusion head differs?): {first}"
            ) from None
        finally:
            if was_enabled:
                diffusers_logging.enable_progress_bar()
        pipe.generator.eval()
        pipe.style_encoder.eval()
        pipe._stored_dtype = {"F16": torch.float16, "BF16": torch.bfloat16}.get(stored_dtype, torch.float32)
        return pipe

    # -- style codes ---------------------------------------------------------------------------------

    @torch.no_grad()  # not inference mode: cached codes may meet autograd later
    def style_code(self, style: ImageInput | torch.Tensor, style_scale: float | str = "auto") -> torch.Tensor:
        """The (1, d) style code of one image (cached by pixel content); a code passes through.

        d = generator.style_code_dim: the style encoder's code, then (with match_colors) the image's colour
        statistics, so that blends, strength and masks mix both linearly.
        style_scale: how large the style's strokes and patterns are painted (1 = as the encoder sees the style
            at 256 px on its shorter side; 1.5 = half as large again). "auto" picks, per style, the one of
            STYLE_SCALES at which a painted photo's features have the statistics of the style's own
            (`auto_style_scale`): repeating patterns and textures mostly get 1.5, paintings 1."""
        if isinstance(style, torch.Tensor):
            if style.shape != (1, self.generator.style_code_dim):
                raise ValueError(
                    f"a style code must have shape (1, {self.generator.style_code_dim}), got {tuple(style.shape)}"
                )
            return style.to(self.device, self.style_encoder.dtype)
        image = load_image(style)
        options.style_image(image.size)
        key = _pixels_key(image)  # once: hashing a 12-megapixel style takes 0.09 s
        scale = self._auto_scale(image, key) if style_scale == "auto" else options.style_scale(style_scale)
        return self._image_code(image, scale, key)

    @torch.no_grad()
    def auto_style_scale(self, style: ImageInput) -> float:
        """The one of STYLE_SCALES at which this style, painted onto a bundled photo, gives features (the style
        encoder's, at strides 4, 8 and 16) whose per-channel mean and std are nearest the style image's own
        (cached). The generator paints a pattern smaller than the encoder sees it, so patterns often want the
        larger scale; a painting's brushwork mostly does not."""
        image = load_image(style)
        return self._auto_scale(image, _pixels_key(image))

    def _auto_scale(self, image: Image.Image, key: str) -> float:
        return self._cached(("scale", key), lambda: self._pick_scale(image, key))

    def _pick_scale(self, image: Image.Image, key: str) -> float:
        encoder, dtype = self.style_encoder, self.generator.dtype
        x = to_tensor(image).to(self.device, encoder.dtype)
        target = encoder.feature_statistics(encoder.resized(x, SCALE_PROBE_SIDE / encoder.config.image_size))
        probe = to_tensor(fit_within(load_image(SCALE_PROBE), SCALE_PROBE_SIDE)).to(self.device, dtype)

        def miss(scale: float) -> float:
            painted = self.generator(probe, self._image_code(image, scale, key)).to(encoder.dtype)
            return sum(
                float(F.mse_loss(mean, m) + F.mse_loss(std, s))
                for (mean, std), (m, s) in zip(encoder.feature_statistics(painted), target, strict=True)
            )

        return min(STYLE_SCALES, key=miss)

    def _image_code(self, image: Image.Image, scale: float = 1.0, key: str | None = None) -> torch.Tensor:
        """The (1, d) code of any image (a content's own code too, whatever its size), cached by pixels (`key`:
        their _pixels_key, when the caller has it)."""

        def encode():
            x = to_tensor(image).to(self.device, self.style_encoder.dtype)
            code = self.style_encoder(x, scale).to(self.generator.dtype)
            return self.generator.style_code(code, x.to(self.generator.dtype))

        return self._cached(("code", key or _pixels_key(image), scale), encode)

    @torch.no_grad()
    def _cached(self, key, compute):
        with self._cache_lock:
            if key in self._style_cache:
                self._style_cache.move_to_end(key)
                return self._style_cache[key]
        value = compute()
        with self._cache_lock:  # two calls may have computed the same thing: same value, either one is kept
            self._style_cache[key] = value
            if len(self._style_cache) > _STYLE_CACHE_SIZE:
                self._style_cache.popitem(last=False)
        return value

    # -- presets: saved style codes ("photo filters") ---------------------------------------------------

    @property
    def presets(self) -> dict[str, Path]:
        """Preset name -> file: the `presets/` folder of the model folder this pipeline came from, then (for
        the bundled model) the user's own, saved in the cache."""
        return options.presets(self.name_or_path) if self.name_or_path else {}

    def preset(self, name: str) -> torch.Tensor:
        """The (1, d) style code saved as preset `name`; pass it to stylize in place of a style image."""
        presets = self.presets
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; this model has {sorted(presets) or 'none'}")
        return load_file(presets[name])["code"].to(self.device, self.style_encoder.dtype)

    def save_preset(
        self,
        name: str,
        styles,
        weights: Sequence[float] | None = None,
        folder: str | os.PathLike | None = None,
        style_scale: float | str = "auto",
    ) -> Path:
        """Save the (blended) code of `styles` as a preset in `folder` (default: this model folder's
        `presets/`; for the bundled model, the user's cache). `save_pretrained` carries presets along."""
        options.preset_name(name)
        styles = list(styles) if isinstance(styles, list | tuple) else [styles]
        mine = options.user_presets(self.name_or_path) if self.name_or_path else None
        default = mine or Path(self.name_or_path or ".") / "presets"
        target = Path(folder) if folder is not None else default
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{name}.safetensors"
        save_file(
            {"code": self.blend_codes(styles, weights, style_scale).float().cpu().contiguous()},
            path,
            metadata={"name": name, "code_dim": str(self.generator.style_code_dim)},
        )
        return path

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """diffusers' save_pretrained, then the presets beside the model, and the weights in the precision they
        were loaded from (the bundled model's fp16 stays fp16: half the size, same pictures to a level)."""
        presets = self.presets  # before saving: saving over the source folder must not lose them
        codes = {name: load_file(path) for name, path in presets.items()}
        super().save_pretrained(save_directory, **kwargs)
        folder = Path(save_directory)
        if codes:
            (folder / "presets").mkdir(exist_ok=True)
            for name, tensors in codes.items():
                save_file(tensors, folder / "presets" / f"{name}.safetensors", metadata={"name": name})
        if getattr(self, "_stored_dtype", None) == torch.float16:
            for weights in folder.glob("*/diffusion_pytorch_model.safetensors"):
                to_fp16(weights, weights)

    def blend_codes(
        self, styles: Sequence[ImageInput], weights: Sequence[float] | None = None, style_scale: float | str = "auto"
    ) -> torch.Tensor:
        """The (1, d) blend sum_i w_i z_i of the styles' codes, the weights normalised to sum to 1."""
        codes = torch.cat([self.style_code(s, style_scale) for s in styles])
        return (_normalised(weights, len(styles)).to(codes)[:, None] * codes).sum(0, keepdim=True)

    # -- style transfer --------------------------------------------------------------------------------

    @torch.inference_mode()
    def stylize(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        weights: Sequence[float] | None = None,
        strength: float = 1.0,
        preserve_color: bool = False,
        mask: ImageInput | Sequence[ImageInput] | None = None,
        tile: int | bool | None = None,
        style_scale: float | str = "auto",
        split_styles: bool = False,
        paint_side: int | str | None = PAINT_SIDE,
    ) -> Image.Image:
        """Stylize `content` with one style or a weighted blend of several; returns an image of content's size.

        strength: 0 returns the content, 1 the full style; in between, the style code moves toward the
            content's own code and the result toward the content (both by `strength`), so the painting fades
            in its texture and colours together rather than as a double exposure.
        preserve_color: keep the content's colours and transfer only luminance.
        mask: one mask (white = styled, black = the content as it is), or one mask per style choosing where
            each goes; grey levels and the mask's edges blend softly.
        tile: tile side in pixels; None tiles automatically above AUTO_TILE_PIXELS, False never tiles. Tiles
            overlap by the generator's reach and share one set of normalisation statistics, so there are no seams.
        style_scale: how large the strokes and patterns are painted (see `style_code`); "auto" per style.
        split_styles: with one mask and several styles, the first style inside the mask and the weighted blend
            of the others outside it (their `weights`), e.g. a painted sky over a differently painted town.
        paint_side: the longer side at which the painting is laid out. A larger photo is painted at this side
            first, then repainted level by level at twice the size up to its own, each level adding only the
            finer strokes, so strokes and swirls keep their size relative to the picture (a 24 MP photo looks
            like the 512-px painting, with brush work at 1:1). Smaller: larger strokes; "full" (or None) paints
            at the photo's own size in one pass, strokes a fixed number of pixels.

        `content` may be a list: then a list comes back, and images of one size (each untiled) run through the
        generator together, up to BATCH_PIXELS at a time; the results are within one level of one call per image.
        """
        styles = list(styles) if isinstance(styles, list | tuple) else [styles]
        if not styles:
            raise ValueError("stylize needs at least one style image")
        strength = options.strength(strength)
        paint_side = options.paint_side(paint_side)
        if split_styles:
            if mask is None or isinstance(mask, list | tuple) or len(styles) < 2:
                raise ValueError("split_styles needs one mask and at least 2 styles")
            outside = self.blend_codes(styles[1:], options.blend_weights(weights, len(styles))[1:], style_scale)
            region = load_image(mask).convert("L")
            styles, weights, mask = [styles[0], outside], None, [region, ImageOps.invert(region)]
        if isinstance(content, list | tuple):
            if mask is not None:
                raise ValueError("a mask fits one content image; stylize a list without one")
            images = [_paintable(load_image(c)) for c in content]
            code = self.blend_codes(styles, weights, style_scale)
            alone = [i for i, im in enumerate(images) if tile or im.width * im.height > AUTO_TILE_PIXELS]
            results = {
                i: self.stylize(
                    images[i], styles, weights, strength, preserve_color, None, tile, style_scale, paint_side=paint_side
                )
                for i in alone
            }
            for group in _same_size_batches(images, exclude=set(alone)):
                x = torch.cat([to_tensor(images[i]) for i in group]).to(self.device, self.generator.dtype)
                codes = code.expand(len(group), -1)
                if strength < 1.0:
                    codes = _toward(torch.cat([self._image_code(images[i]) for i in group]), codes, strength)
                out = _toward(x, self._paint(x, codes, False, paint_side), strength)
                for k, i in enumerate(group):
                    result = to_pil(out[k : k + 1])
                    results[i] = _keep_colours(result, images[i]) if preserve_color else result
            return [results[i] for i in range(len(images))]
        image = _paintable(load_image(content))
        x = to_tensor(image).to(self.device, self.generator.dtype)
        options.tile(tile)
        if mask is None:
            code = self.blend_codes(styles, weights, style_scale)
            if strength < 1.0:
                code = _toward(self._image_code(image), code, strength)
            out, styled = self._paint(x, code, tile, paint_side), strength
        else:
            codes = torch.cat([self.style_code(s, style_scale) for s in styles])
            share, region_codes = self._regions(image, codes, _normalised(weights, len(styles)), mask, strength)
            m = F.interpolate(share, size=x.shape[-2:], mode="bilinear", align_corners=False)
            styled = (1 - m[:, :1]) * strength  # the unstyled share (k = 0) keeps the content
            if self.generator.config.match_colors:
                # the colour step normalises by the whole output's statistics, which a mix of styles would
                # shift: each region's colours come from stylizing with its own code (one pass per styled
                # region that the mask uses)
                out = sum(
                    m[:, k : k + 1] * self._paint(x, region_codes[k][None], tile, paint_side)
                    for k in range(1, len(region_codes))
                    if share[:, k].any()
                ) / (1 - m[:, :1]).clamp(min=1e-6)
            else:  # code maps at 1/8 of the image: the generator interpolates them to each layer
                out = self._paint(x, torch.einsum("bkhw,kd->bdhw", share, region_codes), tile, paint_side)
        result = to_pil(_toward(x, out, styled))
        return _keep_colours(result, image) if preserve_color else result

    def _paint(self, x: torch.Tensor, code: torch.Tensor, tile: int | bool | None, side: int | None) -> torch.Tensor:
        """x painted coarse to fine (see `stylize`'s paint_side): the painting at the coarsest level; then at each
        finer level the painting so far, carried up, with the photo's detail of that level added back, is
        painted again, and only its band above the level before is kept. The strokes of that band follow the
        coarser painting's, so its large strokes get crisp edges instead of being magnified into blur, and the
        picture seen whole stays the coarsest painting. `code` is (B, d) or a code map at 1/CODE_MAP_STRIDE."""
        out = None
        for size in options.paint_levels((x.shape[-1], x.shape[-2]), side):
            photo = _resized(x, size)
            if code.ndim == 2:
                level_code = code
            else:  # a mask's code map, at 1/CODE_MAP_STRIDE of this level
                level_code = F.interpolate(code, size=[-(-n // CODE_MAP_STRIDE) for n in size], mode="bilinear")
            level_tile = tile if tile is not None else DEFAULT_TILE if size[0] * size[1] > AUTO_TILE_PIXELS else False
            if out is None:
                out = self._run(photo, level_code, int(level_tile))
                continue
            coarse = out.shape[-2:]
            out = _resized(out, size)
            # in place where a tensor is this level's own: at 12 MP each full-size copy is 144 MB
            over = (photo - _resized(_resized(photo, coarse), size)).add_(out).clamp_(-1, 1)
            painted = self._run(over, level_code, int(level_tile))
            del over
            out.add_(painted).sub_(_resized(_resized(painted, coarse), size))
            del painted
        return out.clamp_(-1, 1)  # out is this call's own: clamped in place, not copied once more at full size

    def _run(self, x: torch.Tensor, code: torch.Tensor, tile: int) -> torch.Tensor:
        code = code.to(self.generator.dtype)
        return self._stylize_tiled(x, code, tile) if tile else self.generator(x, code)

    def _stylize_tiled(self, x: torch.Tensor, code: torch.Tensor, tile: int) -> torch.Tensor:
        if tile < 64:
            raise ValueError(f"tile must be at least 64 pixels, got {tile}")
        # tiles start on the generator's stride grid (like the untiled image) and on the code map's
        grid = math.lcm(2**self.generator.config.num_downsamples, CODE_MAP_STRIDE)
        tile -= tile % grid
        shared = self.generator.norm_stats(thumbnail(x, THUMBNAIL_SIDE), code)
        m = CODE_MAP_STRIDE

        def run(piece, box):
            y0, y1, x0, x1 = box  # a code map is at 1/8 scale: the same region of it
            piece_code = code if code.ndim == 2 else code[..., y0 // m : -(-y1 // m), x0 // m : -(-x1 // m)]
            return self.generator(piece, piece_code, stats=NormStats(given=shared))

        margin = -(-self.generator.stylize_reach // grid) * grid  # each kept pixel sees all it would untiled
        return run_tiled(x, run, tile, margin)

    def _regions(self, image, codes, w, mask, strength) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask shares (1, K, h, w) at 1/8 of the image, summing to 1, and the K codes they choose: the
        content's own code first (where no mask selects), then each region's code at `strength`."""
        masks = list(mask) if isinstance(mask, list | tuple) else [mask]
        if len(masks) not in (1, len(codes)):
            raise ValueError(f"give one mask or one per style ({len(codes)}), got {len(masks)}")
        size = (-(-image.width // CODE_MAP_STRIDE), -(-image.height // CODE_MAP_STRIDE))
        m = torch.cat([load_mask(item, size, image.size) for item in masks], dim=1).to(codes)  # (1, M, h, w)
        if len(masks) == 1:
            region_codes = (w.to(codes)[:, None] * codes).sum(0, keepdim=True)
        else:
            region_codes = codes
            m = m / m.sum(1, keepdim=True).clamp(min=1.0)  # overlapping masks share the pixel
        own = self._image_code(image)
        share = torch.cat([1 - m.sum(1, keepdim=True), m], dim=1)
        return share, torch.cat([own, _toward(own.expand_as(region_codes), region_codes, strength)])

    # -- video ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def stylize_frames(
        self,
        frames: Iterable[ImageInput],
        styles: ImageInput | Sequence[ImageInput],
        weights: Sequence[float] | None = None,
        strength: float = 1.0,
        preserve_color: bool = False,
        consistency: float = 0.9,
        motion_blend: float = 0.8,
        style_scale: float | str = "auto",
    ) -> Iterator[Image.Image]:
        """Stylize a sequence of frames, one forward pass each. Each frame is normalised with a running average
        of the frames' norm statistics (`consistency` is its momentum; 0 = every frame on its own), which
        steadies the global tone. The camera's motion since the previous frame is estimated (one affine map,
        ganmoco.motion), the previous stylized frame moved by it, and blended in with weight `motion_blend`
        wherever the moved previous frame shows what the new one shows, so that the painted texture moves with
        the scene instead of being repainted every frame (0 = off); the blend's fine detail is then brought back
        to the new frame's contrast, so that blended frames stay as painted as single ones."""
        consistency = options.below_one("consistency", consistency)
        motion_blend = options.below_one("motion_blend", motion_blend)
        styles = list(styles) if isinstance(styles, list | tuple) else [styles]
        strength = options.strength(strength)
        code = self.blend_codes(styles, weights, style_scale).to(self.generator.dtype)
        previous = None  # the running statistics, carried from frame to frame
        last = None  # the previous frame and its stylization
        device = self.device  # once: diffusers finds it by walking the modules (a millisecond a frame)
        for index, frame in enumerate(frames):
            image = _paintable(load_image(frame))
            x = to_tensor(image).to(device, self.generator.dtype)
            if index == 0 and strength < 1.0:  # the first frame's own code stands for the clip's: one encoding
                code = _toward(self._image_code(image), code, strength)
            stats = NormStats(previous=previous, momentum=consistency)
            # the generator answers in channels-last; the carry-over's full-frame filters run 2x faster on plain
            # layout (same values)
            out = self.generator(x, code, stats=stats).contiguous()
            previous = stats.used
            if motion_blend > 0 and last is not None and last[0].shape == x.shape:
                out = carry_over(last[0], last[1], x, out, motion_blend)
            last = (x, out)
            result = to_pil(_toward(x, out, strength))
            yield _keep_colours(result, image) if preserve_color else result

    def stylize_video(
        self,
        src: str | os.PathLike,
        styles,
        out: str | os.PathLike,
        max_frames: int | None = None,
        progress=None,
        **kwargs,
    ) -> Path:
        """Stylize a video file into `out` (H.264, the source's frame rate; audio is not kept)."""
        from .video import probe, read_frames, write_frames

        rate, count, _ = probe(src)
        frames = self.stylize_frames(read_frames(src, max_frames), styles, **kwargs)
        if progress is not None:
            frames = progress(frames, total=min(count, max_frames or count) or None)
        return write_frames(frames, out, rate)

    # -- fusion ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def fuse(
        self,
        images: Sequence[ImageInput],
        task: str = "general",
        align: bool = True,
        deghost: bool = True,
        border: str = "fill",
        tile: int | bool | None = None,
        well_exposed: bool = False,
        pick_sharpest: bool = True,
    ) -> Image.Image:
        """Fuse 2 or more images of one scene into one, in the first image's frame. Images of another size but
        the same aspect ratio are resized to it, with a warning; another aspect ratio (not one scene's frames)
        is an error.

        task: one of "general", "multi-focus", "multi-exposure", "infrared-visible" (the last is untrained).
        align: fit each frame onto the first by an affine map (shift, rotation, the scale change of focus
            breathing; robust to exposure and focus differences) before fusing: frames shot by hand.
        deghost: where an aligned frame shows something else than the first (a subject that moved), keep the
            first frame's content there instead of mixing both.
        border: "fill" keeps the first image's size, the margins that only some frames cover fused from those
            frames; "crop" returns the largest rectangle that every frame covers.
        tile: tile side in pixels; None tiles stacks of more than FUSE_TILE_PIXELS pixels in all (with a progress
            bar; a tile then holds about that many pixels of all frames together), False never tiles.
        well_exposed: favour, region by region, the frame whose level is nearest mid-grey (the well-exposedness
            weight of exposure fusion): real brackets of 3 or more shots come out bright and open, as from
            enfuse, instead of keeping the scene's own tone (what the head learned; the default).
        pick_sharpest: where the frames show a region at one level (a focus stack), take it, region by region,
            from the frame that shows it sharpest (as enfuse's hard mask, without seams); False leaves the choice
            to the head, which mixes real frames whose focus differs by little more than their noise.
        """
        images = list(images)
        if len(images) < 2:
            raise ValueError(f"fusion needs at least 2 images, got {len(images)}")
        if task not in FUSION_TASKS:
            raise ValueError(f"task must be one of {FUSION_TASKS}, got {task!r}")
        if border not in ("fill", "crop"):
            raise ValueError(f"border must be 'fill' or 'crop', got {border!r}")
        options.tile(tile)
        # frames stay 8-bit until a tile reads them: nine 24 MP frames are 0.6 GB so, 2.6 GB as floats
        frames = [
            torch.from_numpy(np.array(im)).permute(2, 0, 1)[None]
            for im in _same_frame([load_image(item) for item in images])
        ]
        size = tuple(frames[0].shape[-2:])
        if min(size) < MIN_ALIGN_SIDE:  # a strip or a thumbnail: nothing to align on, no region to call a ghost
            align = deghost = pick_sharpest = False
        thetas, keep_small, covered = [IDENTITY.clone() for _ in frames], None, None
        # registered frames taken as they are (every option off) need no small copies at all
        if align or deghost or well_exposed or pick_sharpest:
            small = [_shrunk(f.float().div_(127.5).sub_(1), ALIGN_SIDE) for f in frames]
            energies = [focus_energy(f, GHOST_SIDE) for f in frames] if pick_sharpest else None
            thetas = register(small) if align else thetas
            keep_small, covered = self._keep_maps(small, thetas, deghost, well_exposed, energies)
        if tile is None:  # the head's features of every frame are held at once: memory grows with frames x pixels
            fits = size[0] * size[1] * len(frames) <= FUSE_TILE_PIXELS
            tile = False if fits else max(256, math.isqrt(FUSE_TILE_PIXELS // len(frames)))
        fused = self._fuse_tiles(frames, thetas, keep_small, FUSION_TASKS.index(task), size, int(tile or 0))
        if border == "crop" and covered is not None:  # unmoved frames cover everything: nothing to crop
            y0, y1, x0, x1 = common_box(covered)
            sy, sx = size[0] / covered.shape[0], size[1] / covered.shape[1]
            box = (math.ceil(x0 * sx), math.ceil(y0 * sy), math.floor(x1 * sx), math.floor(y1 * sy))
            fused = fused[..., box[1] : box[3], box[0] : box[2]]
        return to_pil(fused)

    def _keep_maps(
        self, small, thetas, deghost: bool, exposed: bool, energies: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Per frame, at GHOST_SIDE: how much fusion may use it (1 = freely; 0 outside its frame and, with
        deghost, where it shows a moved subject; with `exposed`, less where another frame is better exposed;
        with `energies` (each frame's `focus_energy`), less where another frame shows a region sharper), as
        (1, N, 1, h, w) or None when every frame may be used everywhere; and the (h, w) mask that every frame
        covers."""
        thumbs = [_shrunk(x, GHOST_SIDE) for x in small]
        h, w = thumbs[0].shape[-2:]
        moved, inside = zip(
            # regions, not fine detail: a cubic spline is enough here
            *(sample(x, t, (0, h, 0, w), (h, w), degree=3) for x, t in zip(thumbs, thetas, strict=True)),
            strict=True,
        )
        keep = list(inside)
        if exposed:
            keep = [k * e for k, e in zip(keep, well_exposed(list(moved)), strict=True)]
        if energies is not None:
            # energies are regions, never negative: bilinear, not a spline that could overshoot below 0
            energies = [F.interpolate(e, size=(h, w), mode="area") if e.shape[-2:] != (h, w) else e for e in energies]
            aligned = [sample(e, t, (0, h, 0, w), (h, w), degree=1)[0] for e, t in zip(energies, thetas, strict=True)]
            keep = [k * s for k, s in zip(keep, sharpest(aligned, list(moved)), strict=True)]
        if deghost:
            ghosts = ghost_masks(thumbs[0], list(moved[1:]), list(inside[1:]))
            keep = [keep[0]] + [k * (1 - g) for k, g in zip(keep[1:], ghosts, strict=True)]
        covered = torch.stack(inside).amin(0)[0, 0]
        if all(bool((k == 1).all()) for k in keep):
            return None, covered
        return torch.stack(keep, dim=1), covered

    def _fuse_tiles(self, frames, thetas, keep_small, task: int, size, tile: int) -> torch.Tensor:
        """The fused (1, 3, H, W) image, in tiles of `tile` px (0: one piece) each widened by TILE_MARGIN: every
        frame's part of a tile is read and moved into the first frame's view only there."""
        height, width = size
        step = tile - tile % 2**self.generator.config.num_downsamples if tile else max(height, width)
        tops, lefts = range(0, height, step), range(0, width, step)
        out = torch.empty(1, 3, height, width)
        with tqdm(total=len(tops) * len(lefts), disable=len(tops) * len(lefts) == 1, desc="fuse", unit="tile") as bar:
            for top in tops:
                for left in lefts:
                    bottom, right = min(top + step, height), min(left + step, width)
                    y0, x0 = max(0, top - TILE_MARGIN), max(0, left - TILE_MARGIN)
                    y1, x1 = min(height, bottom + TILE_MARGIN), min(width, right + TILE_MARGIN)
                    piece = self._fuse_box(frames, thetas, keep_small, task, (y0, y1, x0, x1), size)
                    out[..., top:bottom, left:right] = piece[..., top - y0 : bottom - y0, left - x0 : right - x0]
                    bar.update()
        return out

    def _fuse_box(self, frames, thetas, keep_small, task, box, size) -> torch.Tensor:
        y0, y1, x0, x1 = box
        pieces = [sample(f, t, box, size) for f, t in zip(frames, thetas, strict=True)]
        reference = pieces[0][0]
        # where a frame shows nothing, it shows the reference (and keeps no weight there): the head's stack
        # statistics then see agreeing sources
        sources = [reference] + [torch.lerp(reference, p, inside) for p, inside in pieces[1:]]
        # (a spline overshoots a little at hard edges: back into the pixel range)
        sources = torch.stack(sources, dim=1).clamp_(0, 255).div_(127.5).sub_(1).to(self.device, self.generator.dtype)
        keep = None
        if keep_small is not None:
            n = keep_small.shape[1]
            ys = ((torch.arange(y0, y1) * 2 + 1) / size[0] - 1)[:, None].expand(-1, x1 - x0)
            xs = ((torch.arange(x0, x1) * 2 + 1) / size[1] - 1)[None, :].expand(y1 - y0, -1)
            grid = torch.stack([xs, ys], dim=-1)[None].expand(n, -1, -1, -1)
            keep = F.grid_sample(keep_small[0], grid, mode="bilinear", padding_mode="border", align_corners=False)
            keep = (keep * torch.stack([inside for _, inside in pieces])[:, 0])[None].to(self.device)
        return self.generator.fuse(sources, task=task, keep=keep).float().cpu()

    # -- super-resolution ------------------------------------------------------------------------------

    @property
    def upscale_scales(self) -> tuple[int, ...]:
        return tuple(self.generator.config.upscale_scales or ())

    @torch.inference_mode()
    def upscale(
        self, image: ImageInput, scale: int = 2, tile: int | bool | None = None, denoise: float | None = None
    ) -> Image.Image:
        """`image` upscaled by `scale` (2 or 4): exactly scale x its width and height.

        tile: tile side in input pixels; None tiles automatically above UPSCALE_AUTO_TILE_PIXELS, False never
        tiles. Tiles overlap by UPSCALE_MARGIN, more than the head sees, so tiled and untiled outputs agree.
        denoise: 0 (the default) sharpens; for a model whose upscaler has the strength (`upscale_denoise`, the
        bundled one), 1 cleans up a photo's JPEG blocks and noise instead of sharpening them (smoother, fewer
        artefacts: higher SSIM and lower VGG distance on JPEG'd inputs, lower PSNR; see docs/upscaling.md), in
        between blends; other models take 0 only.

        `image` may be a list: then a list comes back, and images of one size (each untiled) are upscaled
        together, up to BATCH_PIXELS at a time.
        """
        if isinstance(scale, bool) or scale not in self.upscale_scales:
            offered = " or ".join(map(str, self.upscale_scales))
            raise ValueError(
                f"scale must be {offered}, got {scale!r}" if offered else "this model has no upscaling head"
            )
        denoise = self._denoise_strength(denoise)
        if isinstance(image, list | tuple):
            images = [load_image(im) for im in image]
            alone = [i for i, im in enumerate(images) if tile or im.width * im.height > UPSCALE_AUTO_TILE_PIXELS]
            results = {i: self.upscale(images[i], scale, tile, denoise) for i in alone}
            for group in _same_size_batches(images, exclude=set(alone)):  # each at most 1 MP: no size check
                x = torch.cat([to_tensor(images[i]) for i in group]).to(self.device, self.generator.dtype)
                out = self.generator(x, scale=scale, denoise=denoise)
                results.update((i, to_pil(out[k : k + 1])) for k, i in enumerate(group))
            return [results[i] for i in range(len(images))]
        image = load_image(image)
        options.upscaled_size(image.size, scale)
        if tile is None:
            tile = UPSCALE_TILE if image.width * image.height > UPSCALE_AUTO_TILE_PIXELS else False
        options.tile(tile)
        x = to_tensor(image).to(self.device, self.generator.dtype)
        if tile:
            out = self._upscale_tiled(x, scale, int(tile), denoise)
        else:
            out = self.generator(x, scale=scale, denoise=denoise)
        return to_pil(out)

    def _denoise_strength(self, denoise: float | None) -> float:
        denoise = options.denoise(denoise)
        if denoise and not getattr(self.generator.config, "upscale_denoise", False):
            raise ValueError("this model's upscaler has no denoise strength: only denoise=0 (or None)")
        return denoise

    def _upscale_tiled(self, x: torch.Tensor, scale: int, tile: int, denoise: float = 0.0) -> torch.Tensor:
        grid = 2**self.generator.config.num_downsamples  # tiles start on the encoder's stride grid, like the image
        tile, margin = max(grid, tile - tile % grid), -(-UPSCALE_MARGIN // grid) * grid
        # an encoder with norms normalises every tile by the whole image's statistics (none in the default model)
        shared = self.generator.norm_stats(thumbnail(x, THUMBNAIL_SIDE))

        def run(piece, _):
            return self.generator(piece, scale=scale, stats=NormStats(given=shared), denoise=denoise)

        return run_tiled(x, run, tile, margin, scale)


def _paintable(image: Image.Image) -> Image.Image:
    options.paintable(image.size)
    return image


def _same_size_batches(images: list[Image.Image], exclude: set[int]) -> Iterator[list[int]]:
    """Indices of `images` (but `exclude`) in groups of one size, each group's pixels at most BATCH_PIXELS."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        if i not in exclude:
            by_size.setdefault(image.size, []).append(i)
    for (width, height), indices in by_size.items():
        step = max(1, BATCH_PIXELS // (width * height))
        for start in range(0, len(indices), step):
            yield indices[start : start + step]


def _resized(x: torch.Tensor, size) -> torch.Tensor:
    """x at (height, width) `size`, bicubic both ways, antialiased down. A level's band is what this round trip
    loses: with a bilinear (triangle) shrink a 2048-px painting seen at 512 px was 8.4 levels from the 512-px one,
    with the sharper cubic 4.7, as crisp at 1:1 (mean |Laplacian| 37 against 39; 4 training photos x 4 styles)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bicubic", antialias=size[0] < x.shape[-2], align_corners=False)


def _shrunk(x: torch.Tensor, side: int) -> torch.Tensor:
    """x (area-)shrunk to at most `side` px on its longer side, each side at least 1 px (a 200000x8 strip too)."""
    h, w = x.shape[-2:]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return x
    return F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rewrite a safetensors state dict with its floating-point tensors in fp16 (half the size)."""
    state = load_file(src)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, dst)


def _same_frame(images: list[Image.Image]) -> list[Image.Image]:
    size = images[0].size
    for i, im in enumerate(images[1:], start=2):
        if im.size == size:
            continue
        if abs(im.width * size[1] - im.height * size[0]) > 0.02 * size[0] * size[1]:
            raise ValueError(
                f"fusion needs frames of one scene: image {i} is {im.width}x{im.height}, image 1 is "
                f"{size[0]}x{size[1]} (another aspect ratio); crop or register them first"
            )
        warnings.warn(
            f"image {i} ({im.width}x{im.height}) resized to image 1's {size[0]}x{size[1]} for fusion", stacklevel=3
        )
    return [im if im.size == size else im.resize(size, Image.BICUBIC) for im in images]


def _toward(start: torch.Tensor, end: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """The one strength blend, of codes and of pixels alike: `start` at 0, `end` at 1 (a float, or a per-pixel
    map); `end` itself when strength is the float 1."""
    if isinstance(strength, float | int) and strength == 1.0:
        return end
    return torch.lerp(start, end, strength)


def _pixels_key(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()


def _normalised(weights: Sequence[float] | None, count: int) -> torch.Tensor:
    return torch.tensor(options.blend_weights(weights, count), dtype=torch.float32)


def _keep_colours(stylized: Image.Image, content: Image.Image) -> Image.Image:
    """Luminance from the stylized image, chroma (Cb, Cr) from the content."""
    y, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
