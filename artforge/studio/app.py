"""The studio's Gradio app: one tab per served model (artforge/studio/pages.py says what each does), and the
bench reports of a folder. Imported only by `artforge studio` (gradio is the optional studio extra)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

import gradio as gr  # noqa: E402

from artforge.errors import ArtforgeError  # noqa: E402
from artforge.serving.client import Client  # noqa: E402
from artforge.studio import pages  # noqa: E402


def with_message(function: Callable, outputs: int) -> Callable:
    """The handler's outputs and a message line: artforge's one-line errors (a refused request, a limit, an
    unavailable server) become the page's message, the outputs stay as they were; never a traceback."""
    def call(*args: Any) -> list[Any]:
        try:
            result = function(*args)
        except ArtforgeError as e:
            return [gr.update()] * outputs + [refusal(e)]
        return [*(result if outputs > 1 else [result]), ""]
    return call


def streamed_with_message(function: Callable[..., Iterator], outputs: int = 1) -> Callable[..., Iterator]:
    """with_message for a handler that yields its outputs as they grow (a list when more than one)."""
    def call(*args: Any) -> Iterator:
        try:
            for value in function(*args):
                yield *(value if outputs > 1 else [value]), ""
        except ArtforgeError as e:
            yield *[gr.update()] * outputs, refusal(e)
    return call


def refusal(error: Exception) -> str:
    return f"**Not done:** {error}"


def message_line(name: str):
    return gr.Markdown("", elem_id=element(name, "message"))


def api_name(model: str, action: str) -> str:
    return f"{''.join(c if c.isalnum() else '_' for c in model)}_{action}"


def element(model: str, part: str) -> str:
    """The page element id of a model's widget (what browser tests and custom CSS find it by)."""
    return f"{''.join(c if c.isalnum() else '-' for c in model)}-{part}"


def generator_tab(client: Client, name: str, folder: pages.RequestFolders) -> None:
    info = client.model(name)
    controls = pages.generator_controls(info)
    with gr.Row():
        with gr.Column(scale=1):
            choices = pages.class_choices(info)
            label = gr.Dropdown(choices, value=choices[0] if choices else None, label="class", visible=bool(choices),
                                elem_id=element(name, "class"))
            count = gr.Slider(1, 64, value=8, step=1, label="pictures", elem_id=element(name, "count"))
            seed = gr.Number(0, precision=0, label="seed", elem_id=element(name, "seed"))
            widgets = [gr.Dropdown(c.choices, value=c.choices[int(c.default)], label=c.name,
                                   elem_id=element(name, c.name)) if c.choices
                       else gr.Slider(c.minimum, c.maximum, value=c.default, step=1 if c.integer else 0.05,
                                      label=c.name, elem_id=element(name, c.name)) for c in controls]
            button = gr.Button("Generate", variant="primary", elem_id=element(name, "run"))
        with gr.Column(scale=2):
            grid = gr.Image(label="grid", format="png", type="numpy", interactive=False,
                            elem_id=element(name, "output"))
            # a sampling loop's previews stay in view, one grid per preview step, as --previews-gif's frames
            forming = [gr.Gallery(label="pictures forming (one grid per preview step)", format="png", columns=4,
                                  interactive=False, elem_id=element(name, "forming"))] if info.sampler else []
            message = message_line(name)

    def run(label_value, count_value, seed_value, *control_values) -> Iterator:
        given = pages.control_values(info, {c.name: v for c, v in zip(controls, control_values)})
        for grids in pages.generator_grids(client, name, label_value, int(count_value), int(seed_value or 0), given):
            yield [grids.grid, grids.forming] if forming else grids.grid
    button.click(streamed_with_message(run, len(forming) + 1), [label, count, seed, *widgets],
                 [grid, *forming, message], api_name=api_name(name, "generate"))
    if pages.can_walk(info):
        walk_panel(client, name, controls, [label, seed, *widgets], folder)
    if pages.can_mix(info):
        mixing_panel(client, name, controls, [label, seed, *widgets])


def mixing_panel(client: Client, name: str, controls: list, shared: list) -> None:
    """Style mixing as the StyleGAN papers draw it, as `generate --mixing-grid`: row sources keep the layers
    before the chosen one, column sources bring their styles from it on."""
    info = client.model(name)
    with gr.Accordion("style mixing", open=False):
        with gr.Row():
            rows = gr.Slider(1, 8, value=3, step=1, label="rows", elem_id=element(name, "mix-rows"))
            columns = gr.Slider(1, 8, value=4, step=1, label="columns", elem_id=element(name, "mix-columns"))
            layers = pages.mixing_layers(info)
            layer = gr.Dropdown(layers, value=layers[len(layers) // 2], elem_id=element(name, "mix-layer"),
                                label="columns' styles from layer (low: layout and colour, high: colour only)")
            button = gr.Button("Mix", elem_id=element(name, "mix"))
        grid = gr.Image(label="style mixing: column sources on top, row sources on the left", format="png",
                        type="numpy", interactive=False, elem_id=element(name, "mix-output"))
        message = message_line(f"{name}-mix")

    def run(rows_value, columns_value, layer_value, label_value, seed_value, *control_values):
        given = pages.control_values(info, {c.name: v for c, v in zip(controls, control_values)})
        return pages.mixing_picture(client, name, rows_value, columns_value, layer_value, label_value,
                                    int(seed_value or 0), given)
    button.click(with_message(run, 1), [rows, columns, layer, *shared], [grid, message],
                 api_name=api_name(name, "mix"))


def walk_panel(client: Client, name: str, controls: list, shared: list, folder: pages.RequestFolders) -> None:
    """A looping latent walk through seeded way points of the chosen class, as `generate --interpolate`."""
    info = client.model(name)
    with gr.Accordion("latent walk", open=False):
        with gr.Row():
            frames = gr.Slider(2, 64, value=24, step=1, label="frames", elem_id=element(name, "walk-frames"))
            points = gr.Slider(2, 16, value=4, step=1, label="way points", elem_id=element(name, "walk-points"))
            button = gr.Button("Walk", elem_id=element(name, "walk"))
        animation = gr.Image(label="walk", type="filepath", format="gif", interactive=False,
                             elem_id=element(name, "walk-output"))
        message = message_line(f"{name}-walk")

    def run(frames_value, points_value, label_value, seed_value, *control_values) -> str:
        given = pages.control_values(info, {c.name: v for c, v in zip(controls, control_values)})
        out = folder.new("walk-") / "walk.gif"
        return str(pages.walk_gif(client, name, label_value, frames_value, points_value, int(seed_value or 0),
                                  given, out))
    button.click(with_message(run, 1), [frames, points, *shared], [animation, message],
                 api_name=api_name(name, "walk"))


def stream_tab(client: Client, name: str, folder: pages.RequestFolders) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            info = client.model(name)
            start = pages.stream_defaults(info)
            prompt = gr.Textbox("", label="prompt", elem_id=element(name, "prompt"))
            max_tokens = gr.Slider(1, info.stream.max_new_tokens, value=min(start["max_tokens"],
                                                                            info.stream.max_new_tokens),
                                   step=1, label="tokens", elem_id=element(name, "tokens"))
            temperature = gr.Slider(0, 2, value=start["temperature"], step=0.05, label="temperature",
                                    elem_id=element(name, "temperature"))
            top_k = gr.Slider(0, 100, value=start["top_k"], step=1, label="top k (0: all)",
                              elem_id=element(name, "top_k"))
            top_p = gr.Slider(0, 1, value=start["top_p"], step=0.05, label="top p", elem_id=element(name, "top_p"))
            seed = gr.Number(0, precision=0, label="seed", elem_id=element(name, "seed"))
            button = gr.Button("Write", variant="primary", elem_id=element(name, "run"))
        with gr.Column(scale=2):
            text = gr.Textbox(label="text", lines=12, interactive=False, elem_id=element(name, "output"))
            message = message_line(name)
    button.click(streamed_with_message(lambda *values: pages.streamed_text(client, name, *values)),
                 [prompt, max_tokens, temperature, top_k, top_p, seed], [text, message],
                 api_name=api_name(name, "write"))


def form_widget(name: str, field: pages.FormField, fields: list[pages.FormField]) -> list:
    """The input widgets of one field (none for a mask: it is drawn on its picture's editor)."""
    t = field.tensor
    at = element(name, t.name)
    if field.kind == "picture" and pages.has_mask(fields, t.name):
        masks = ", ".join(f.tensor.name for f in fields if f.over == t.name)
        return [gr.ImageEditor(type="numpy", image_mode="RGBA", label=f"{t.name}: brush strokes are the {masks}",
                               brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"), layers=False,
                               transforms=(), format="png", elem_id=at)]
    if field.kind == "picture":
        return [gr.Image(type="numpy", image_mode="RGB", label=t.name, format="png", elem_id=at)]
    if field.kind == "mask":
        return []
    if field.kind == "labels":
        return [gr.Dropdown(field.labels, value=field.labels[0], label=t.name, elem_id=at)]
    if field.kind == "mix":
        return [gr.Slider(0, 1, value=1.0 if i == 0 else 0.0, step=0.05, label=f"{t.name}: {label}",
                          elem_id=f"{at}-{i}") for i, label in enumerate(field.labels)]
    if field.kind == "number" and field.minimum is not None and field.maximum is not None:
        return [gr.Slider(field.minimum, field.maximum, value=field.minimum, label=t.name, elem_id=at,
                          step=1 if t.dtype.startswith(("int", "uint")) else 0.01)]
    if field.kind == "number":
        return [gr.Number(0, label=t.name, elem_id=at)]
    gr.Markdown(f"`{t.name}` ({t.dtype} {t.shape}): not settable here; use `artforge infer`")
    return []


def form_values(fields: list[pages.FormField], sizes: list[int], values: tuple) -> list[Any]:
    """The widgets' values grouped per field: a mix's sliders as one list, a mask as its picture's editor."""
    grouped, start, by_name = [], 0, {}
    for field, size in zip(fields, sizes):
        value = list(values[start:start + size]) if field.kind == "mix" else values[start] if size else None
        by_name[field.tensor.name] = value
        grouped.append(value)
        start += size
    return [by_name[field.over] if field.kind == "mask" else value for field, value in zip(fields, grouped)]


def form_tab(client: Client, name: str, folder: pages.RequestFolders) -> None:
    info = client.model(name)
    fields = pages.form_fields(info)
    masks = [field for field in fields if field.kind == "mask"]
    with gr.Row():
        with gr.Column(scale=1):
            widgets = [form_widget(name, field, fields) for field in fields]
            button = gr.Button("Run", variant="primary", elem_id=element(name, "run"))
        with gr.Column(scale=1):
            shown = [output_widget(name, t, pages.per_label(info, t)) for t in info.outputs]
            shown += [gr.Image(label=f"{m.tensor.name} sent (white: 1)", format="png", interactive=False,
                               elem_id=element(name, f"sent-{m.tensor.name}")) for m in masks]
            message = message_line(name)
    sizes = [len(w) for w in widgets]

    def run(*values: Any) -> list[Any]:
        request = pages.form_request(fields, form_values(fields, sizes, values))
        served = pages.form_answer(client, name, request)
        answer = [bars(served[t.name], t.name) if pages.per_label(info, t) else served[t.name] for t in info.outputs]
        answer += [request[m.tensor.name][0, ..., 0] * 255 for m in masks]
        return answer[0] if len(answer) == 1 else answer  # Gradio takes one output's value alone
    inputs = [w for group in widgets for w in group]
    button.click(with_message(run, len(shown)), inputs, [*shown, message], api_name=api_name(name, "run"))


def command_tab(client: Client, name: str, folder: pages.RequestFolders) -> None:
    """The family's own client command (`Command.page`): its options as widgets, the files it writes shown."""
    command = pages.family_command(client.model(name))
    fields = pages.command_fields(command)
    with gr.Row():
        with gr.Column(scale=1):
            widgets = [command_widget(name, field) for field in fields]
            button = gr.Button(command.page.button, variant="primary", elem_id=element(name, "run"))
        with gr.Column(scale=2):
            picture = gr.Image(label="picture", format="png", interactive=False, elem_id=element(name, "picture"))
            audio = gr.Audio(label="audio", type="filepath", interactive=False, elem_id=element(name, "audio"))
            files = gr.File(label="files", file_count="multiple", interactive=False, elem_id=element(name, "files"))
            message = message_line(name)

    def run(*values: Any) -> list[Any]:
        written, error = pages.run_command(command, client.url, name, list(values),
                                           folder.new(f"{command.name}-"))
        pictures = [str(p) for p in written if p.suffix == ".png"]
        sounds = [str(p) for p in written if p.suffix in (".wav", ".ogg", ".mp3")]
        return [pictures[0] if pictures else None, sounds[0] if sounds else None,
                [str(p) for p in written] or None, refusal(error) if error else ""]
    button.click(run, widgets, [picture, audio, files, message], api_name=api_name(name, command.name))


def command_widget(name: str, field: pages.CommandField):
    info = field.help + (f" (default {field.default})" if field.default not in (None, "") else "")
    at = element(name, field.name)
    if field.kind in (int, float):
        return gr.Number(field.default, precision=0 if field.kind is int else None, label=field.name, info=info,
                         elem_id=at)
    return gr.Textbox(field.default or "", label=field.name, info=info, elem_id=at)


def output_widget(name: str, t, per_label: bool):
    """A picture as a picture, one value per label as a bar chart (the critic's probabilities), the rest as JSON."""
    at = element(name, f"out-{t.name}")
    if t.dtype == "uint8" and len(t.shape) == 3:
        return gr.Image(label=t.name, format="png", interactive=False, elem_id=at)
    if per_label:
        return gr.BarPlot(x="label", y=t.name, label=t.name, sort=None, elem_id=at)
    return gr.JSON(label=t.name, elem_id=at)


def bars(values: dict[str, float], name: str):
    import pandas as pd  # a dependency of gradio's plots; only bar charts need it

    return pd.DataFrame({"label": list(values), name: list(values.values())})


def bench_tab(report: Path) -> None:
    gr.Markdown((report / "bench.md").read_text())
    for picture in sorted(report.glob("*.png")):
        gr.Image(str(picture), label=picture.name, interactive=False)


# each gets (client, model name, the folders for files it writes: a command's, a walk's GIF)
TABS = {"generator": generator_tab, "stream": stream_tab, "form": form_tab, "command": command_tab}


def build_studio(client: Client, bench: Path | None = None, files: Path | None = None) -> gr.Blocks:
    """The page: a tab per ready model on the server (and per bench report under `bench`); what the family
    commands and walks write goes under `files` (a temporary folder by default), the latest 32 requests' kept."""
    folders = pages.RequestFolders(files)
    # Gradio's own copies of what requests returned: removed after an hour, checked every 10 minutes
    with gr.Blocks(title="artforge studio", delete_cache=(600, 3600)) as app:
        gr.Markdown(f"# artforge studio\nModels served by Triton at `{client.url}`.")
        for name in client.models():
            with gr.Tab(name):
                info = client.model(name)
                gr.Markdown(f"**{name}**: {info.family or 'a model artforge did not export'}")
                TABS[pages.page_kind(info)](client, name, folders)
        for report in bench_reports(bench):
            with gr.Tab(f"bench: {report.relative_to(bench) if report != bench else bench.name}"):
                bench_tab(report)
    app.request_folders = folders
    return app


def bench_reports(bench: Path | None) -> list[Path]:
    """Folders under `bench` holding a bench.json and bench.md."""
    if bench is None:
        return []
    if not bench.is_dir():
        raise ArtforgeError(f"--bench {bench} is not a folder")
    found = sorted(p.parent for p in bench.rglob("bench.json") if (p.parent / "bench.md").is_file()
                   and json.loads(p.read_text()))
    return found


def launch(url: str, host: str, port: int, bench: Path | None = None, block: bool = True):
    """Serve the studio; returns (app, its address) when block is False. Blocking, it runs until Ctrl-C or
    SIGTERM and then closes the page and its Triton client (which frees the client's shared memory)."""
    client = Client(url)
    app = build_studio(client, bench)
    app.queue(default_concurrency_limit=4)
    if block:
        signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        _, address, _ = app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                                   quiet=not block, footer_links=["api"], show_error=True)
    finally:
        if block:
            client.close()
            app.request_folders.close()
    return app, address


def stop_like_ctrl_c(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's blocking launch closes its server on Ctrl-C
