"""Draw the Slicer module icon LiteMedSAM/Resources/Icons/LiteMedSAM.png (128 x 128).

A grey slice of an organ, a segmented structure in colour and the prompt box around it: what
the module does. Run from the repository root: ``python tools/make_module_icon.py``.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
OUTPUT = Path(__file__).resolve().parents[1] / "LiteMedSAM" / "Resources" / "Icons" / "LiteMedSAM.png"


def main() -> None:
    scale = 4  # draw large, then downsample for smooth edges
    big = SIZE * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=22 * scale, fill=(24, 32, 48, 255))
    # a grey "slice": an organ outline with some texture
    yy, xx = np.mgrid[0:big, 0:big] / big
    organ = ((xx - 0.5) / 0.40) ** 2 + ((yy - 0.53) / 0.34) ** 2 < 1
    texture = 150 + 40 * np.sin(9 * xx + 3 * yy) * np.cos(7 * yy)
    grey = np.zeros((big, big, 4), dtype=np.uint8)
    grey[organ, :3] = texture[organ, None].astype(np.uint8)
    grey[organ, 3] = 255
    slice_layer = Image.fromarray(grey).filter(ImageFilter.GaussianBlur(scale))
    image.alpha_composite(slice_layer)
    # the segmented structure (orange) and its prompt box (cyan)
    structure = ((xx - 0.56) / 0.16) ** 2 + ((yy - 0.50) / 0.12) ** 2 + 0.3 * np.sin(20 * xx) * 0.1 < 1
    overlay = np.zeros((big, big, 4), dtype=np.uint8)
    overlay[structure] = (255, 140, 30, 235)
    image.alpha_composite(Image.fromarray(overlay))
    draw = ImageDraw.Draw(image)
    box = (0.36 * big, 0.34 * big, 0.76 * big, 0.66 * big)
    draw.rectangle(box, outline=(40, 220, 255, 255), width=4 * scale)
    for corner in [(box[0], box[1]), (box[2], box[3])]:
        r = 5 * scale
        draw.ellipse((corner[0] - r, corner[1] - r, corner[0] + r, corner[1] + r), fill=(40, 220, 255, 255))
    image.resize((SIZE, SIZE), Image.LANCZOS).save(OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
