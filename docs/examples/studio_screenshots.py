"""Screenshots of every tab of a running artforge studio, each after one run with the page's defaults.

    artforge studio --url 127.0.0.1:8001 --port 7860 &
    python docs/examples/studio_screenshots.py http://127.0.0.1:7860 --out shots/ [--photo PHOTO.png]

For each model's tab: click it, give every picture upload --photo (default: a scikit-image photo), press
the tab's run button, wait until the page has answered (a picture, text or a message appears; a
style-mixing panel is opened and run too), and save `studio-NAME.png`. Bench tabs are saved as they open.
Debian's chromium is driven by Playwright by its path, headless, as the studio's browser tests do.
docs/studio.md shows the pictures this wrote.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ANSWER_S = 120  # the longest a tab's answer may take (a diffusion grid on a laptop CPU): only to catch a hang


def default_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "photo.png"
    Image.fromarray(data.astronaut()).resize((256, 256)).save(path)
    return path


def answered(page, name: str) -> None:
    """Wait until the tab shows an answer (an output picture, numbers, streamed text or its message line) and
    nothing of it is still working."""
    page.wait_for_function(
        """name => {
            const shown = [...document.querySelectorAll(`[id^="${name}-"] img`)].some(img => {
                const box = img.closest('[id]');
                return box && !box.querySelector('input[type=file]') && img.naturalWidth > 0;
            });
            const data = document.querySelector(`[id^="${name}-out-"] .json-holder`);  // numbers, not pictures
            const text = document.querySelector(`#${name}-output textarea`);
            const message = document.querySelector(`#${name}-message`);
            const busy = document.querySelector(`[id^="${name}-"] [data-testid=status-tracker]:not(.hide)`);
            const outputs = [...document.querySelectorAll(`[id^="${name}-out-"]`)];
            const drawn = outputs.every(o => o.querySelector('img, .json-holder, svg.marks'));  // plots draw late
            const answer = shown || data || (text && text.value.length > 0);
            return !busy && ((answer && drawn) || (message && message.innerText.trim()));
        }""", arg=name, timeout=ANSWER_S * 1000)


def give_pictures(page, name: str, photo: Path) -> None:
    """The photo into every upload of the tab; on an editor (a mask drawn on the picture) also one stroke."""
    for upload in page.locator(f'[id^="{name}-"]:has(input[type=file])').all():
        editor = "draw tool" in upload.inner_text()  # an editor's placeholder: "... or select the draw tool"
        if editor:
            upload.locator("button[aria-label=Brush]").wait_for()  # an upload before the editor is up is lost
        upload.locator("input[type=file]").set_input_files(str(photo))
        if editor:
            page.wait_for_function("el => !el.innerText.includes('Upload an image')", arg=upload.element_handle())
            box = upload.locator("canvas").first.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 40, y - 10)
            page.mouse.down()
            page.mouse.move(x + 40, y + 10, steps=10)
            page.mouse.up()


def open_style_mixing(page, name: str) -> None:
    """A generator with a style-mixing panel (StyleGAN2): open it and mix with its defaults, so the picture
    shows the mixing grid too."""
    panel = page.get_by_text("style mixing", exact=True).filter(visible=True)
    if not panel.count():  # (a closed panel's widgets are not on the page yet: look for its title)
        return
    panel.click()
    page.locator(f"#{name}-mix").click()
    page.locator(f"#{name}-mix-output img").wait_for(timeout=ANSWER_S * 1000)


def shoot(address: str, out: Path, photo: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(address)
        page.get_by_role("tab").first.wait_for()  # the page is built in the browser after it loads
        for tab in [t.inner_text() for t in page.get_by_role("tab").all()]:
            page.get_by_role("tab", name=tab, exact=True).click()
            name = "".join(c if c.isalnum() else "-" for c in tab)
            if not tab.startswith("bench:"):
                page.locator(f"#{name}-run").wait_for()  # the tab is laid out: what is sent sooner is lost
                give_pictures(page, name, photo)
                page.locator(f"#{name}-run").click()
                answered(page, name)
                open_style_mixing(page, name)
            path = out / f"studio-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
        browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the studio's address, e.g. http://127.0.0.1:7860")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for studio-NAME.png")
    parser.add_argument("--photo", type=Path, help="the picture every upload gets (default: a scikit-image photo)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("studio_screenshots: needs Debian's chromium (sudo apt-get install chromium)", file=sys.stderr)
        return 1
    if args.photo is not None and not args.photo.is_file():
        print(f"studio_screenshots: --photo {args.photo} does not exist", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for path in shoot(args.address, args.out, args.photo or default_photo(Path(folder)), chromium):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
