"""What a CUDA machine can check of artforge without TensorRT: training, resume and export of GPU-trained
checkpoints, and in-process PyTorch inference on the GPU next to the same machine's CPU.

    python -m artforge.benchmarks.gpu_check --out runs/gpu-check [--device cuda]

Writes gpu_check.json and prints one line per check. `--device cpu` runs the same steps on the CPU
(for trying the script itself on a machine without a GPU). TensorRT engines are checked by the
engine tests in tests/export/test_tensorrt.py where TensorRT is installed (docs/gpu.md).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from artforge.export.pipeline import export_checkpoint
from artforge.registry import load_network, spec_for
from artforge.families.dcgan.train import train_dcgan
from artforge.families.style.train import train_style
from artforge.training.synth import synthesize_dataset


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of fn() after two warm-up calls, synchronising the GPU around each."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def train_checks(out: Path, device: str, results: dict) -> tuple[Path, Path]:
    data = out / "art32"
    synthesize_dataset(data, size=32, per_style=40, seed=1, progress=False)
    dcgan = out / "dcgan"
    start = time.perf_counter()
    train_dcgan(data=str(data), out=str(dcgan), steps=200, batch_size=64, device=device, bf16=True,
                sample_every=100, checkpoint_every=100, progress=False)
    results["dcgan_train_200_steps_bf16_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()  # the price of deterministic kernels (exact resume)
    train_dcgan(data=str(data), out=str(out / "dcgan-fast"), steps=200, batch_size=64, device=device, bf16=True,
                deterministic=False, sample_every=200, checkpoint_every=200, progress=False)
    results["dcgan_train_200_steps_bf16_fast_kernels_s"] = round(time.perf_counter() - start, 2)
    train_dcgan(out=str(dcgan), resume=True, steps=250, progress=False)
    log = [json.loads(line) for line in (dcgan / "log.jsonl").read_text().splitlines()]
    results["dcgan_resumed_to_step"] = max(r.get("step", 0) for r in log)
    style_image = out / "style.png"
    synthesize_dataset(out / "art256", size=256, per_style=1, seed=2, progress=False, styles=["waves"])
    (out / "art256" / "waves" / "00000.png").replace(style_image)
    style = out / "style"
    start = time.perf_counter()
    train_style(out=str(style), styles=[str(style_image)], size=256, batch_size=8, steps=60, device=device,
                bf16=True, sample_every=60, checkpoint_every=60, progress=False)
    results["style_train_60_steps_256px_bf16_s"] = round(time.perf_counter() - start, 2)
    return dcgan, style


def export_checks(out: Path, runs: tuple[Path, Path], results: dict) -> None:
    """Checkpoints written from GPU tensors export and pass the ONNX parity gate."""
    for run in runs:
        result = export_checkpoint(run, out / "repo", max_batch=8, float_output=True)
        results[f"export_{run.name}_float_parity_max_abs"] = max(r.max_abs for r in result.parity
                                                                 if r.output.endswith("_float"))


def inference_checks(runs: tuple[Path, Path], device: str, precisions: tuple[str, ...], results: dict) -> None:
    """In-process PyTorch: DCGAN images/s at batch 1 and 64; style frames/s at batch 1 by size."""
    dcgan, style = (load_network(run) for run in runs)
    for (network, ckpt), cases in ((dcgan, [(1, None), (64, None)]),
                                   (style, [(1, s) for s in (256, 512, 1024, 2048)])):
        spec = spec_for(ckpt)
        serving = spec.serving_network(network).to(device).eval()
        for batch, side in cases:
            sizes = {n: side for n in spec.dynamic_dims} if side else None
            inputs = [torch.from_numpy(v).to(device) for v in spec.sample_inputs(batch, 0, sizes).values()]
            for precision in precisions:
                def run():
                    with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
                        serving(*inputs)
                seconds = timed(run, device, repeats=10 if device == "cuda" else 2)
                key = f"{device}_{ckpt.family}_b{batch}{f'_{side}px' if side else ''}_{precision}_per_s"
                results[key] = round(batch / seconds, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU here (PyTorch {torch.__version__} sees none); run it on a GPU machine "
              "(docs/gpu.md), or with --device cpu to try the script itself", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor(),
               "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    runs = train_checks(out, args.device, results)
    export_checks(out, runs, results)
    inference_checks(runs, args.device, ("fp32", "bf16"), results)
    if args.device == "cuda":  # the same machine's CPU, for the ratio (bf16 on a CPU depends on AMX: left out)
        inference_checks(runs, "cpu", ("fp32",), results)
    if args.device == "cuda":
        results["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
