"""Does a GAN discriminator's class signal reach the generator? (docs/conditioning.md)

    python docs/examples/discriminator_class_probe.py RUN DATA [--count 1000] [--json OUT.json]

For a DCGAN or StyleGAN2 run (its newest checkpoint, or a checkpoint folder) and the folder it trained on:

- D's logit for every label on real pictures: how often the true label scores highest (chance is
  1/classes) and its margin over the other labels' mean, beside the spread of D's logit across real
  pictures and the gap between real and generated ones. The generator follows D's gradient; where the
  class margin is a small part of what moves the logit, the class barely steers it.
- The same on generated pictures (the asked label against the others): what the generator is rewarded for.
- With an auxiliary classifier (--conditioning acgan/both): its accuracy on real and on generated pictures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from artforge.checkpoint import config_from_dict, load_checkpoint
from artforge.errors import ArtforgeError
from artforge.image_folders import load_image_folder
from artforge.imaging import uint8_to_unit


def networks(checkpoint):
    """(config, discriminator, generate(labels) -> images in [-1, 1]) of a DCGAN or StyleGAN2 checkpoint."""
    state = checkpoint.training_state()
    if checkpoint.family == "dcgan":
        from artforge.families.dcgan.network import DCGANConfig, Discriminator, Generator
        config = config_from_dict(DCGANConfig, checkpoint.meta["config"], str(checkpoint.path))
        G = Generator(config).eval()
        G.load_state_dict(state["G_ema"])

        def generate(labels):
            return torch.cat([G(torch.randn(len(part), config.z_dim), part) for part in labels.split(250)])
    elif checkpoint.family == "stylegan":
        from artforge.families.stylegan import generate_images
        from artforge.families.stylegan.network import Discriminator, Generator, StyleGANConfig
        from artforge.families.stylegan.train import compute_style_centres
        config = config_from_dict(StyleGANConfig, checkpoint.meta["config"], str(checkpoint.path))
        G = Generator(config).eval()
        G.load_state_dict(state["G_ema"])
        compute_style_centres(G, config, 0)

        def generate(labels):
            return uint8_to_unit(torch.from_numpy(generate_images(G, config, labels.numpy(), 0)).permute(0, 3, 1, 2))
    else:
        raise SystemExit(f"{checkpoint.path} is a {checkpoint.family} model; the probe reads DCGAN and StyleGAN2 runs")
    D = Discriminator(config)
    D.load_state_dict(state["D"])
    D.train()  # batch statistics (the DCGAN's batch norm), as D sees its batches in training
    return config, D, generate


@torch.no_grad()
def class_signal(D, images, labels, classes: int, name: str) -> dict[str, float]:
    logits, class_logits = [], None
    for label in range(classes):
        logit, class_logits = D(images, torch.full((len(images),), label, dtype=torch.long))
        logits.append(logit.float())
    scores = torch.stack(logits, 1)
    true = scores.gather(1, labels[:, None])[:, 0]
    others = (scores.sum(1) - true) / (classes - 1)
    out = {f"{name}_true_label_scores_highest": (scores.argmax(1) == labels).float().mean().item(),
           f"{name}_class_margin": (true - others).mean().item(),
           f"{name}_logit_mean": true.mean().item(), f"{name}_logit_std": true.std().item()}
    if class_logits is not None:
        out[f"{name}_classifier_accuracy"] = (class_logits.argmax(1) == labels).float().mean().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("data")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    try:  # a missing run or a bad data folder is one line, as in artforge's own commands
        checkpoint = load_checkpoint(args.run)
        config, D, generate = networks(checkpoint)
        folder = load_image_folder(Path(args.data), config.image_size, progress=False)
    except ArtforgeError as error:
        raise SystemExit(f"error: {error}") from None
    torch.manual_seed(0)
    pick = torch.randperm(len(folder))[:args.count]
    asked = torch.arange(args.count) % config.num_classes
    with torch.no_grad():
        generated = generate(asked)
    report = {"run": str(checkpoint.path), "step": checkpoint.step, "conditioning": config.conditioning,
              **class_signal(D, uint8_to_unit(folder.images[pick]), folder.labels[pick], config.num_classes, "real"),
              **class_signal(D, generated, asked, config.num_classes, "generated")}
    report["real_minus_generated_logit"] = report["real_logit_mean"] - report["generated_logit_mean"]
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
