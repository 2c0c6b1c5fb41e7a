"""Gatys et al. 2016: style transfer by optimising the pixels (the slow quality reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import losses
from ..models.features import FeatureExtractor
from .adain import ENCODER_LAYER, STYLE_LAYERS


class Gatys:
    """Gatys et al. 2016 by Adam on the pixels, started from the content: content loss at relu4_1 plus a
    weighted Gram loss at relu1_1..relu4_1 (the weight puts the two on a comparable scale for the caffe-scaled
    HED VGG16 features)."""

    def __init__(self, steps: int = 200, style_weight: float = 1.0, lr: float = 0.02, progress: bool = False):
        self.steps, self.style_weight, self.lr, self.progress = steps, style_weight, lr, progress
        self.vgg = FeatureExtractor("vgg16", layers=STYLE_LAYERS)

    @torch.enable_grad()
    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f_content = self.vgg(content)[ENCODER_LAYER]
            f_style = self.vgg(style)
        image = content.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=self.lr)
        for _ in tqdm(range(self.steps), desc="gatys", leave=False, disable=not self.progress):
            feats = self.vgg(image)
            loss = F.mse_loss(feats[ENCODER_LAYER], f_content) + self.style_weight * losses.gram_style_loss(
                feats, f_style
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                image.clamp_(-1, 1)
        return image.detach()
