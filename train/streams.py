"""The training data as endless, resumable streams of batches: content, style, synthetic and folder fusion
stacks, and super-resolution crops, each from its own seeded dataset."""

from __future__ import annotations

from accelerate.logging import get_logger
from torch.utils.data import DataLoader

from ganmoco.data import (
    FusionFolderDataset,
    ImageDataset,
    ResumableBatchSampler,
    SyntheticBracketDataset,
    SyntheticFusionDataset,
    UpscaleDataset,
    split_train_val,
)
from ganmoco.images import find_images

logger = get_logger(__name__)


class Stream:
    """An endless, resumable stream of batches from one dataset on this process."""

    def __init__(self, dataset, args, accelerator, salt: int):
        self.dataset, self.args, self.accelerator, self.salt = dataset, args, accelerator, salt
        self.consumed = 0
        self._iter = None

    def next(self):
        if self._iter is None:
            sampler = ResumableBatchSampler(
                len(self.dataset),
                self.args.train_batch_size,
                self.args.seed + self.salt,
                self.accelerator.process_index,
                self.accelerator.num_processes,
                start=self.consumed,
            )
            loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.args.dataloader_num_workers)
            self._iter = iter(loader)
        self.consumed += 1
        batch = next(self._iter)
        return (
            [b.to(self.accelerator.device) for b in batch]
            if isinstance(batch, list)
            else batch.to(self.accelerator.device)
        )


def build_data(args, accelerator):
    log = logger.warning
    contents, skipped_c = find_images(args.content_dir, log=log)
    styles, skipped_s = find_images(args.style_dir, log=log)
    logger.info(
        f"content: {len(contents)} images ({skipped_c} unreadable skipped); "
        f"style: {len(styles)} images ({skipped_s} unreadable skipped)",
        main_process_only=True,
    )
    n_val = args.validation_images
    if len(contents) <= n_val or len(styles) <= n_val:
        raise SystemExit(
            f"error: need more than --validation_images={n_val} content and style images, "
            f"got {len(contents)} and {len(styles)}"
        )
    train_c, val_c = split_train_val(contents, n_val, args.seed)
    train_s, val_s = split_train_val(styles, n_val, args.seed + 1)
    streams = {
        "content": Stream(ImageDataset(train_c, args.resolution, args.seed), args, accelerator, 0),
        "style": Stream(ImageDataset(train_s, args.resolution, args.seed, jitter=True), args, accelerator, 1),
    }
    if not args.no_synthetic_fusion:
        streams["synthetic_fusion"] = Stream(
            SyntheticFusionDataset(train_c, args.resolution, args.seed), args, accelerator, 2
        )
    if args.bracket_frames:
        streams["synthetic_brackets"] = Stream(
            SyntheticBracketDataset(train_c, args.resolution, args.seed, args.bracket_frames), args, accelerator, 5
        )
    if args.upscale_ratio > 0:
        streams["upscale"] = Stream(
            UpscaleDataset(train_c, args.resolution, args.seed, args.upscale_track), args, accelerator, 4
        )
    if args.fusion_dir:
        streams["fusion_dir"] = Stream(
            FusionFolderDataset(args.fusion_dir, args.resolution, args.seed, log=log), args, accelerator, 3
        )
    counts = {
        "content_train": len(train_c),
        "style_train": len(train_s),
        "content_val": len(val_c),
        "style_val": len(val_s),
        "skipped": skipped_c + skipped_s,
    }
    return streams, (val_c, val_s), counts
