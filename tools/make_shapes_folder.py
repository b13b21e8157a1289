"""Write an image-folder data set of six shapes drawn as the demo draws its digits: a second data
set with other classes, for transferring a supernet trained on the demo digits.

    python tools/make_shapes_folder.py --out=data/shapes     # then --dataset=folder --data_dir=data/shapes

Each class (disc, ring, square, frame, triangle, plus) has 120 glyph variants (size, offset, aspect
and stroke width drawn at random on an 8×8 grid, like the demo's digit glyphs): 100 are rendered
into training images, 20 into validation images, with the demo's renderer (random size, rotation,
colours, a photo background and a distractor fragment of another shape). Deterministic.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import tensorflow as tf

from ofa_tf.data.demo import _render_digits

CLASSES = ("disc", "ring", "square", "frame", "triangle", "plus")
_SUPER = 8          # supersampling of the 8x8 glyph grid


def _glyph(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One 8x8 coverage glyph in [0, 1] of ``kind``, with random proportions."""
    n = 8 * _SUPER
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / _SUPER          # cell coordinates, 0..8
    cy, cx = 4 + rng.uniform(-0.5, 0.5, 2)
    r = rng.uniform(2.6, 3.6)
    aspect = rng.uniform(0.85, 1.15)
    stroke = rng.uniform(0.8, 1.4)
    dy, dx = (y - cy) * aspect, (x - cx) / aspect
    if kind in ("disc", "ring"):
        d = np.hypot(dy, dx)
        mask = d < r if kind == "disc" else (d < r) & (d > r - stroke)
    elif kind in ("square", "frame"):
        d = np.maximum(abs(dy), abs(dx))
        mask = d < r * 0.9 if kind == "square" else (d < r * 0.9) & (d > r * 0.9 - stroke)
    elif kind == "triangle":
        top = -r
        mask = (dy < r * 0.8) & (dy > top) & (abs(dx) < (dy - top) * 0.6)
    else:   # plus
        mask = ((abs(dy) < stroke / 2 + 0.2) | (abs(dx) < stroke / 2 + 0.2)) & (np.maximum(abs(dy), abs(dx)) < r)
    return mask.reshape(8, _SUPER, 8, _SUPER).mean(axis=(1, 3))


def shape_glyphs(per_class: int, seed: int):
    """Glyphs [C * per_class, 10, 10, 1] (8x8 zero-padded, as the renderer takes) and labels."""
    rng = np.random.default_rng(seed)
    glyphs = [_glyph(kind, rng) for kind in CLASSES for _ in range(per_class)]
    labels = np.repeat(np.arange(len(CLASSES)), per_class).astype(np.int32)
    padded = np.pad(np.stack(glyphs), ((0, 0), (1, 1), (1, 1)))[..., None].astype(np.float32)
    return padded, labels


def write_folder(out: str, n_train: int, n_val: int, seed: int = 0) -> None:
    glyphs, labels = shape_glyphs(120, seed)
    per_class = 120
    is_val = (np.arange(len(labels)) % per_class) >= 100
    for split_id, (split, count, pool) in enumerate((("train", n_train, np.flatnonzero(~is_val)),
                                                       ("val", n_val, np.flatnonzero(is_val))), 1):
        rng = np.random.default_rng([seed, split_id])
        index = rng.permutation(np.resize(rng.permutation(pool), count))
        fragment = rng.choice(pool, count)
        images = _render_digits(glyphs, index, fragment, rng)
        for k, (image, label) in enumerate(zip(images, labels[index])):
            directory = os.path.join(out, split, CLASSES[label])
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, f"{k:05d}.png"), "wb") as f:
                f.write(tf.io.encode_png(image).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Directory to write train/<class>/ and val/<class>/ into.")
    parser.add_argument("--n_train", type=int, default=3000)
    parser.add_argument("--n_val", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if os.path.exists(args.out):
        parser.error(f"--out={args.out} exists; pass a new directory")
    write_folder(args.out, args.n_train, args.n_val, args.seed)
    print(f"wrote {args.n_train} training and {args.n_val} validation images of {len(CLASSES)} classes to {args.out}")


if __name__ == "__main__":
    main()
