"""Draw the studio's icons (static/icons/*.png) with Pillow: `python static/make_icons.py`.

A teal tile with a white waveform. The "any" icons are rounded tiles on transparency;
the maskable icon fills the whole square and keeps the waveform inside the central
80 % safe zone that launchers never crop.
"""
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent / "icons"
TEAL = (15, 118, 110, 255)
LIGHT = (204, 251, 241, 255)
WHITE = (255, 255, 255, 255)
BARS = (0.30, 0.55, 0.85, 1.00, 0.70, 0.45, 0.75, 0.40, 0.22)  # heights relative to the tallest
SUPERSAMPLE = 4


def draw(size: int, maskable: bool) -> Image.Image:
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if maskable:
        pen.rectangle((0, 0, big, big), fill=TEAL)
        span = 0.52 * big  # well inside the 80 % safe circle
    else:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=int(0.22 * big), fill=TEAL)
        span = 0.66 * big
    centre = big / 2
    pitch = span / len(BARS)
    width = pitch * 0.58
    for k, height in enumerate(BARS):
        x = centre - span / 2 + k * pitch + (pitch - width) / 2
        half = height * span / 2
        colour = WHITE if k % 2 == 0 else LIGHT
        pen.rounded_rectangle((x, centre - half, x + width, centre + half), radius=int(width / 2), fill=colour)
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    draw(192, False).save(HERE / "icon-192.png", optimize=True)
    draw(512, False).save(HERE / "icon-512.png", optimize=True)
    draw(512, True).save(HERE / "icon-maskable-512.png", optimize=True)
    draw(180, True).convert("RGB").save(HERE / "apple-touch-icon.png", optimize=True)
    draw(64, False).save(HERE / "favicon.png", optimize=True)


if __name__ == "__main__":
    main()
