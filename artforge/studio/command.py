"""`artforge studio`: the web page over a Triton server (its Gradio app is artforge/studio/app.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.options import Command, option


@dataclass
class StudioOptions:
    url: str = option("127.0.0.1:8001", help="Triton gRPC address(es), a,b for replicas")
    host: str = option("127.0.0.1", help="address the page listens on (0.0.0.0 makes it reachable from other "
                                         "machines: only behind your own access control)")
    port: int = option(7860, help="port of the page")
    bench: str | None = option(None, help="also show the bench reports (bench.md, bench.png) found under this folder")


def run(opts: StudioOptions) -> None:
    try:
        from artforge.studio.app import launch  # gradio: the optional studio extra, and slow to import
    except ImportError as e:
        raise ArtforgeError(f"artforge studio needs gradio: pip install 'artforge[studio]' ({e})") from None
    print(f"artforge studio over Triton at {opts.url}: http://{opts.host}:{opts.port} (Ctrl-C stops it)")
    launch(opts.url, opts.host, opts.port, Path(opts.bench) if opts.bench else None)


COMMAND = Command(
    "studio", help="a web page (Gradio) for every model Triton serves: generate, stylise, write, run",
    description="Start a web page over a Triton server: a tab per served model, made from its contract (a grid and "
                "a latent walk for generators, with diffusion's pictures forming; text as it is written for poems; "
                "a form of inputs and outputs for the others: a brush for a restoration mask, a bar per label for "
                "the critic), or the page a family offers (music: its compose command, with the piano roll, audio "
                "and MIDI), and the bench reports of --bench. It binds 127.0.0.1 unless --host says otherwise, "
                "never opens a public share link, and stops on Ctrl-C or SIGTERM.",
    examples="  artforge serve --repository repo/ &\n"
             "  artforge studio --url 127.0.0.1:8001 --port 7860\n"
             "  artforge studio --url 127.0.0.1:8001 --bench bench/",
    options=StudioOptions, run=run)
