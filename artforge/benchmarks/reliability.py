"""`artforge reliability`: faults, bad input and load, measured on real processes and files.

    run_reliability(out="runs/reliability", kills=30, fuzz_rounds=20, soak_seconds=0)

- kills: real `artforge train dcgan` processes SIGKILLed at random moments, 0-4 s after their first
  logged step (a checkpoint is written every step, so many kills land mid-write; waiting for the
  first step keeps a slow or busy machine from killing a process that never started training);
  after each, the newest checkpoint must load in full;
  at the end the run resumes and must equal an uninterrupted run bit for bit.
- fuzz: every malformed request of artforge/serving/fuzz.py against a live Triton server, `rounds` times.
- images: a folder of messy files (alpha, palettes, 16-bit, CMYK, EXIF, bombs, truncated) loaded the
  way training loads data; each file must be read or skipped as expected.
- soak: steady load for `soak_seconds`; latency and server memory at the start and at the end.
Writes reliability.json and reliability.md (one table of figures).
"""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from artforge.checkpoint import list_checkpoints, load_checkpoint
from artforge.errors import ArtforgeError
from artforge.options import Command, Progress, option
from artforge.files import atomic_write_text
from artforge.benchmarks.load import measure_point
from artforge.benchmarks.measure import machine_facts
from artforge.checkpoint import save_checkpoint
from artforge.export.pipeline import export_checkpoint
from artforge.families.dcgan.train import train_dcgan
from artforge.families.style.network import StyleNetConfig, StyleTransferNet
from artforge.image_folders import load_image_folder
from artforge.imaging import MAX_PIXELS
from artforge.registry import load_network
from artforge.serving.client import Client
from artforge.serving.fuzz import fuzz_server, process_group_rss_mb
from artforge.serving.server import Server
from artforge.training.synth import synthesize_dataset

log = logging.getLogger(__name__)
NEVER_ENDS = 10**7  # steps the killed runs aim for: they are always killed first


def run_reliability(out: str, kills: int = 30, fuzz_rounds: int = 20, image_copies: int = 5,
                    soak_seconds: float = 0.0, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run the chosen suites (a count of 0 skips one) and write reliability.json and .md."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="artforge-reliability-") as work:
        work = Path(work)
        if kills:
            results["kills"] = kill_suite(work / "kills", kills, seed, progress)
        if image_copies:
            results["images"] = image_suite(work / "images", image_copies)
        if fuzz_rounds or soak_seconds:
            repo = tiny_repository(work / "serve")
            if fuzz_rounds:
                results["fuzz"] = fuzz_suite(repo, fuzz_rounds, progress)
            if soak_seconds:
                results["soak"] = soak_suite(repo, soak_seconds, progress=progress)
    document = {"machine": machine_name(), "results": results}
    atomic_write_text(out_dir / "reliability.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out_dir / "reliability.md", figures_table(document))
    return document


def machine_name() -> str:

    facts = machine_facts()
    return f"{facts['cpu']}, {facts['cores']} cores"


# ---- kills ---------------------------------------------------------------------------------------

def kill_suite(work: Path, kills: int, seed: int, progress: bool) -> dict[str, Any]:
    """SIGKILL real training `kills` times; check the checkpoints after each; resume; compare."""

    data, run = work / "data", work / "run"
    synthesize_dataset(data, size=32, per_style=4, seed=1, progress=False)
    train_dcgan(**tiny_options(data, run, steps=1))  # a run to resume: every kill hits a resumed run
    rng = random.Random(seed)
    figures = {"kills": 0, "killed_mid_write": 0, "newest_checkpoint_loaded": 0, "steps_reached": 1}
    command = [sys.executable, "-m", "artforge", "train", "dcgan", "--out", str(run), "--resume",
               "--steps", str(NEVER_ENDS), "--checkpoint-every", "1", "--keep", "2", "--quiet"]
    for _ in tqdm(range(kills), desc="kills", unit="kill", disable=not progress):
        kill_after(command, run / "log.jsonl", rng.uniform(0.0, 4.0))
        figures["kills"] += 1
        figures["killed_mid_write"] += any(".tmp-" in p.name for p in (run / "checkpoints").iterdir())
        figures["newest_checkpoint_loaded"] += newest_checkpoint_loads(run)
    final = load_checkpoint(run).step + 2
    figures["steps_reached"] = final
    train_dcgan(out=str(run), steps=final, resume=True, progress=False)
    straight = work / "straight"
    train_dcgan(**tiny_options(data, straight, steps=final, checkpoint_every=final))
    figures["leftover_folders"] = sum(1 for p in (run / "checkpoints").iterdir() if p.name.startswith("."))
    figures["identical_to_uninterrupted_run"] = same_weights(run, straight)
    return figures


def tiny_options(data: Path, run: Path, steps: int, checkpoint_every: int = 1) -> dict[str, Any]:
    return dict(data=str(data), out=str(run), steps=steps, size=32, batch_size=8, g_width=8, d_width=8, z_dim=16,
                sample_every=100000, checkpoint_every=checkpoint_every, keep=2, seed=0, progress=False)


def kill_after(command: list[str], log: Path, seconds: float, start_timeout_s: float = 300.0) -> None:
    """Start training, wait until it has logged a new step (however slow the machine is: starting
    Python and torch can take longer than the whole kill window), then SIGKILL it `seconds` later."""
    # same thread count as the uninterrupted run in this process: float sums must add up in the same order
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    logged = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + start_timeout_s
    while (not log.exists() or log.stat().st_size == logged) and process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise ArtforgeError(f"training logged no step within {start_timeout_s:g} s of starting")
        time.sleep(0.02)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return
    raise ArtforgeError(f"training exited with {process.returncode} before it was killed: "
                        f"{process.stderr.read().decode(errors='replace')[-500:]}")


def newest_checkpoint_loads(run: Path) -> bool:

    try:
        _network, checkpoint = load_network(run)
        checkpoint.training_state()
        return list_checkpoints(run)[-1] == checkpoint.path
    except Exception as e:  # any failure to load is what this suite counts
        log.error("after a kill the newest checkpoint of %s does not load: %s", run, e)
        return False


def same_weights(run_a: Path, run_b: Path) -> bool:
    a, b = load_checkpoint(run_a), load_checkpoint(run_b)
    return a.step == b.step and a.weights.keys() == b.weights.keys() and all(
        torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


# ---- images --------------------------------------------------------------------------------------

def image_suite(work: Path, copies: int) -> dict[str, Any]:
    """Load `copies` sets of messy files as training data; count what was read and skipped."""

    folder = work / "messy" / "all"
    folder.mkdir(parents=True)
    expected = {}
    for copy in range(copies):
        expected.update(write_messy_images(folder, copy))
    data = load_image_folder(work / "messy", 32, progress=False)
    outcomes = {p.name: "too_large" for p in data.skipped.too_large}
    outcomes.update({p.name: "unreadable" for p in data.skipped.unreadable})
    wrong = [name for name, want in expected.items() if outcomes.get(name, "read") != want]
    read_names = [name for name in sorted(expected) if name not in outcomes]  # the loader's order
    transparent = [data.images[i] for i, name in enumerate(read_names) if name.startswith("transparent")]
    return {"files": len(expected), "read": len(data), "skipped_too_large": len(data.skipped.too_large),
            "skipped_unreadable": len(data.skipped.unreadable), "library_warnings": data.skipped.library_warnings,
            "transparent_files_on_background": all(int(image.min()) == 255 for image in transparent),
            "wrong_outcomes": wrong}


def write_messy_images(folder: Path, copy: int) -> dict[str, str]:
    """One file of each kind a real art folder holds; {file name: expected outcome}."""

    rng = np.random.default_rng(copy)
    picture = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    files = {}
    rgba = np.zeros((40, 40, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / f"transparent-rgba-{copy}.png")
    Image.fromarray(np.zeros((40, 40, 2), np.uint8), "LA").save(folder / f"transparent-la-{copy}.png")
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.save(folder / f"transparent-palette-{copy}.png", transparency=0)
    Image.fromarray((picture[..., 0].astype(np.uint16) * 257)).save(folder / f"grey16-{copy}.png")
    Image.fromarray(picture).convert("CMYK").save(folder / f"cmyk-{copy}.jpg")
    exif_image = Image.fromarray(picture)
    exif = exif_image.getexif()
    exif[0x0112] = 6
    exif_image.save(folder / f"exif-rotated-{copy}.jpg", exif=exif)
    Image.fromarray(picture).save(folder / f"plain-{copy}.webp")
    files.update({p.name: "read" for p in folder.glob(f"*-{copy}.*")})
    side = int(MAX_PIXELS**0.5) + 1000
    write_png_header(folder / f"bomb-{copy}.png", side, side)
    files[f"bomb-{copy}.png"] = "too_large"
    good = (folder / f"grey16-{copy}.png").read_bytes()
    (folder / f"truncated-{copy}.png").write_bytes(good[: len(good) // 3])
    (folder / f"not-an-image-{copy}.jpg").write_bytes(b"<html>404</html>")
    files.update({f"truncated-{copy}.png": "unreadable", f"not-an-image-{copy}.jpg": "unreadable"})
    return files


def write_png_header(path: Path, width: int, height: int) -> None:
    """A tiny PNG that declares a huge size: a decompression bomb's header, without its bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


# ---- serving: fuzz and soak ----------------------------------------------------------------------

def tiny_repository(work: Path) -> Path:
    """A Triton repository with a tiny DCGAN ('dcgan') and a 2-style lite network ('stylize')."""

    synthesize_dataset(work / "data", size=32, per_style=4, seed=1, progress=False)
    train_dcgan(**tiny_options(work / "data", work / "dcgan", steps=2, checkpoint_every=2))
    torch.manual_seed(0)
    net = StyleTransferNet(StyleNetConfig.preset("lite", 2))
    save_checkpoint(work / "style", family="style", config=net.config, step=1, weights=net.state_dict(),
                    extra={"styles": ["a", "b"]})
    repo = work / "repo"
    export_checkpoint(work / "dcgan", repo, max_batch=8)
    export_checkpoint(work / "style", repo, name="stylize", max_batch=2, max_dim=256)
    return repo


def fuzz_suite(repo: Path, rounds: int, progress: bool) -> dict[str, Any]:
    from dataclasses import asdict

    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        report = fuzz_server(server, rounds, progress)
        alive = server.alive() and not server.check_health()
    return {**asdict(report), "server_up_and_healthy_after": alive}


def soak_suite(repo: Path, seconds: float, chunk_requests: int = 500, progress: bool = False) -> dict[str, Any]:
    """Steady load on the DCGAN for `seconds`: errors, latency and server memory, start vs end."""

    inputs = {"z": np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32),
              "style": np.zeros((1, 1), np.int64)}
    chunks = []
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        rss_start, counted_before = process_group_rss_mb(server.process.pid), server_successes(server.grpc_url)
        started = time.monotonic()
        deadline = started + seconds
        bar = tqdm(desc="soak", unit="request", disable=not progress)
        while time.monotonic() < deadline or len(chunks) < 2:
            point = measure_point(server.grpc_url, "dcgan", lambda b, i: inputs, concurrency=4, batch=1,
                                  requests=chunk_requests, warmup=0)
            chunks.append(point)
            bar.update(point.requests)
            if point.stopped:
                break
        bar.close()
        ran_s = time.monotonic() - started
        rss_end = process_group_rss_mb(server.process.pid)
        counted = counted_by_server(server.grpc_url, counted_before, sum(c.requests for c in chunks))
    # the server's own count: every request the client timed as answered, plus each chunk's warm-up (none)
    return {"seconds": seconds, "ran_s": ran_s, "requests": sum(c.requests for c in chunks),
            "answered_by_server": counted, "errors": sum(c.errors for c in chunks),
            "p50_ms_start": chunks[0].latency_ms.get("p50"), "p99_ms_start": chunks[0].latency_ms.get("p99"),
            "p50_ms_end": chunks[-1].latency_ms.get("p50"), "p99_ms_end": chunks[-1].latency_ms.get("p99"),
            "server_rss_mb_start": rss_start, "server_rss_mb_end": rss_end}


def counted_by_server(url: str, before: int, expected: int, wait_s: float = 10.0) -> int:
    """Successes the server counted since `before`, given `wait_s` to reach `expected`: Triton may count
    a request a moment after its answer left."""
    deadline = time.monotonic() + wait_s
    while (counted := server_successes(url) - before) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return counted


def server_successes(url: str) -> int:
    """Requests the DCGAN answered so far, by Triton's own statistics."""

    with Client(url, timeout_s=10) as client:
        return int(client.statistics("dcgan").get("inference_stats", {}).get("success", {}).get("count", 0))


# ---- report --------------------------------------------------------------------------------------

def figures_table(document: dict[str, Any]) -> str:
    """One Markdown table: suite, figure, value."""
    lines = [f"Reliability figures ({document['machine']})", "", "| suite | figure | value |", "|---|---|---|"]
    for suite, figures in document["results"].items():
        for name, value in figures.items():
            lines.append(f"| {suite} | {name.replace('_', ' ')} | {format_value(value)} |")
    return "\n".join(lines) + "\n"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return f"{len(value)}" + (f": {'; '.join(map(str, value[:3]))}" if value else "")
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


# ---- `artforge reliability` ----
@dataclass(kw_only=True)
class ReliabilityOptions(Progress):
    out: str = option(help="folder for reliability.json and reliability.md", required=True)
    kills: int = option(30, help="training processes to SIGKILL")
    fuzz_rounds: int = option(20, help="times every malformed request is sent")
    image_copies: int = option(5, help="sets of messy image files to load")
    soak_seconds: float = option(0.0, help="seconds of steady load (0: no soak)")
    seed: int = option(0, help="seeds the kill moments")


def reliability_command(opts: ReliabilityOptions) -> None:
    document = run_reliability(opts.out, kills=opts.kills, fuzz_rounds=opts.fuzz_rounds,
                               image_copies=opts.image_copies, soak_seconds=opts.soak_seconds, seed=opts.seed,
                               progress=opts.progress)
    print((Path(opts.out) / "reliability.md").read_text())
    print(f"reports: {opts.out}/reliability.json, reliability.md")
    problems = reliability_problems(document["results"])
    if problems:
        raise ArtforgeError("reliability check failed: " + "; ".join(problems))


def reliability_problems(results: dict) -> list[str]:
    """What in a reliability run broke a promise (docs/operations.md, Reliability)."""
    kills, fuzz, images, soak = (results.get(k, {}) for k in ("kills", "fuzz", "images", "soak"))
    problems = []
    if kills and (kills["newest_checkpoint_loaded"] < kills["kills"] or not kills["identical_to_uninterrupted_run"]
                  or kills["leftover_folders"]):
        problems.append(f"kills: {kills}")
    if fuzz and (fuzz["answered_ok"] or not fuzz["server_up_and_healthy_after"]):
        problems.append(f"fuzz: answered as valid {fuzz['answered_ok'][:3]}, healthy after "
                        f"{fuzz['server_up_and_healthy_after']}")
    if images and (images["wrong_outcomes"] or not images["transparent_files_on_background"]):
        problems.append(f"images: {images['wrong_outcomes'][:3]}")
    if soak and soak["errors"]:
        problems.append(f"soak: {soak['errors']} errors")
    return problems


COMMAND = Command(
    "reliability", help="measure reliability: training killed at random, malformed requests, messy images, a soak",
    description="Kill real training processes at random moments and check every checkpoint, send every "
                "kind of malformed request to a live Triton server, load a folder of messy image files, "
                "and optionally hold a steady load (soak). Writes reliability.json and reliability.md and "
                "exits non-zero when a promise broke (a checkpoint lost, a malformed request answered as "
                "valid, a server left unhealthy, an image mis-read, a soak error). A count of 0 skips a suite.",
    examples="  artforge reliability --out runs/reliability                      # make reliability\n"
             "  artforge reliability --out runs/soak --kills 0 --fuzz-rounds 0 --image-copies 0 \\\n"
             "      --soak-seconds 300                                          # make soak",
    options=ReliabilityOptions, run=reliability_command)
