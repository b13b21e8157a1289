"""The embedded demo data set: needs no download.

Real images from declared dependencies: scikit-learn's bundled UCI handwritten digits (1,797 8×8
grey images, 10 classes) are upscaled (bilinear) to a random size, rotated a little and pasted at
a random place onto a 64×64 RGB canvas whose background is a random crop of one of scikit-image's
bundled photos (astronaut, coffee, chelsea, rocket, …), with random colours for the digit and the
background, pixel noise and one distractor: a fragment of another digit. Linear raw-pixel
baselines score 13–17 % on it (chance: 10 %); a plain 8-layer CNN with 75 K weights reaches
~80 % and one with 0.66 M ~90 % (8 epochs, no augmentation), so larger subnets measurably beat
small ones. 6,000 training images are rendered from 1,497 source digits and 1,500 validation
images from the other 300 (30 a class): no validation digit image is ever seen in training.
Generation is deterministic (fixed seed), numpy only, ~6 s on 2 cores, cached in memory per process.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ofa_tf.data.arrays import ArraySource


DEMO_SIZE = 64
DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
               "immunohistochemistry", "retina", "brick", "grass", "gravel", "camera", "moon",
               "coins")
_PHOTO_SIZE = 256
_VAL_PER_CLASS = 30
_CHUNK = 32  # images rendered at once: keeps the temporaries in cache, ~3x faster than 500


class DemoArrays(NamedTuple):
    """The rendered demo set. `source_*` / `fragment_*`: index into `load_digits()` of each
    image's digit / of the digit its distractor fragment comes from."""

    x_train: np.ndarray
    y_train: np.ndarray
    source_train: np.ndarray
    fragment_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source_val: np.ndarray
    fragment_val: np.ndarray


def _area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Box-filter a [H, W, C] float image (H, W >= size) down to [size, size, C]."""
    for axis in (0, 1):
        bins = (np.arange(image.shape[axis]) * size) // image.shape[axis]
        starts = np.flatnonzero(np.diff(bins, prepend=-1))
        counts = np.diff(np.append(starts, image.shape[axis]))
        shape = [1, 1, 1]
        shape[axis] = size
        image = np.add.reduceat(image, starts, axis=axis) / counts.reshape(shape)
    return image


@functools.lru_cache(maxsize=1)
def _demo_photos() -> np.ndarray:
    """scikit-image's bundled photos as float32 [P, 256, 256, 3] in [0, 1] (centre squares)."""
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError("the demo data set needs scikit-image (pip install scikit-image)") from e
    photos = []
    for name in DEMO_PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        h, w = img.shape[:2]
        s = min(h, w)
        square = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
        photos.append(_area_resize(square.astype(np.float32) / 255.0, _PHOTO_SIZE))
    return np.stack(photos).astype(np.float32)


def _bilinear(src: np.ndarray, index: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample images src[index] ([N, H, W, C]) at float pixel coordinates y, x (broadcastable
    to [m, h, w]; clamped to the image) → [m, h, w, C] float32."""
    _, h, w, c = src.shape
    flat = src.reshape(-1, c)
    y = np.clip(y, 0, h - 1).astype(np.float32)
    x = np.clip(x, 0, w - 1).astype(np.float32)
    y0 = np.minimum(y.astype(np.int32), h - 2)
    x0 = np.minimum(x.astype(np.int32), w - 2)
    fy = (y - y0.astype(np.float32))[..., None]  # float32 - int32 would promote to float64
    fx = (x - x0.astype(np.float32))[..., None]
    i00 = (index.astype(np.int32)[:, None, None] * h + y0) * w + x0
    p00, p01 = np.take(flat, i00, axis=0), np.take(flat, i00 + 1, axis=0)
    p10, p11 = np.take(flat, i00 + w, axis=0), np.take(flat, i00 + w + 1, axis=0)
    top = p00 + (p01 - p00) * fx
    return top + (p10 + (p11 - p10) * fx - top) * fy


def _glyph_alpha(glyphs, index, size, angle, cy, cx, window=None):
    """Coverage [m, S, S] of digits glyphs[index] (8×8 cells, zero-padded to 10×10) drawn
    `size` pixels wide, rotated by `angle`, centred at (cy, cx); `window` = (r0, c0, h, w) in
    cells keeps only that part of the glyph (a fragment)."""
    g = np.arange(DEMO_SIZE, dtype=np.float32) + 0.5
    per_px = (8.0 / size).astype(np.float32)[:, None, None]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    dy = g[None, :, None] - cy.astype(np.float32)[:, None, None]
    dx = g[None, None, :] - cx.astype(np.float32)[:, None, None]
    row = (cos * dy + sin * dx) * per_px + 4.0  # glyph coordinates in cells, centre (4, 4)
    col = (cos * dx - sin * dy) * per_px + 4.0
    alpha = _bilinear(glyphs, index, row + 0.5, col + 0.5)[..., 0]  # +1 pad, -0.5 centre
    if window is not None:
        r0, c0, wh, ww = (v[:, None, None] for v in window)
        alpha = alpha * ((row >= r0) & (row < r0 + wh) & (col >= c0) & (col < c0 + ww))
    return alpha


def _ink(base: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Colours that contrast with the background: dark ink on bright ones, bright on dark."""
    return np.where(dark[:, None], 0.35 * base, 0.65 + 0.35 * base).astype(np.float32)


def _render_digits(glyphs: np.ndarray, digit: np.ndarray, fragment: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, 64, 64, 3]: glyphs[digit] over a photo crop, glyphs[fragment] as distractor."""
    photos = _demo_photos()
    n, s = len(digit), DEMO_SIZE
    # Every random parameter is drawn up front, so chunking never changes the result.
    photo = rng.integers(0, len(photos), n)
    crop = rng.uniform(48, 224, n)
    y0 = rng.uniform(0, 1, n) * (_PHOTO_SIZE - 1 - crop)
    x0 = rng.uniform(0, 1, n) * (_PHOTO_SIZE - 1 - crop)
    mirror = rng.random(n) < 0.5
    contrast = rng.uniform(0.3, 1.0, n)
    tint = rng.uniform(0.4, 1.2, (n, 3))
    size = rng.uniform(26, 44, n)
    angle = np.deg2rad(rng.uniform(-15, 15, n))
    margin = 0.42 * size + 4  # the glyph stays inside the eval centre crop
    cy = margin + rng.uniform(0, 1, n) * (s - 2 * margin)
    cx = margin + rng.uniform(0, 1, n) * (s - 2 * margin)
    ink = rng.random((n, 3))
    f_size = size * rng.uniform(0.6, 1.0, n)
    f_angle = np.deg2rad(rng.uniform(-30, 30, n))
    f_cy, f_cx = rng.uniform(0, s, n), rng.uniform(0, s, n)
    f_window = (rng.integers(0, 4, n), rng.integers(0, 4, n),
                rng.integers(3, 6, n), rng.integers(3, 6, n))
    f_ink = np.where((rng.random(n) < 0.5)[:, None], ink, rng.random((n, 3)))
    noise_sd = rng.uniform(0, 0.04, n).astype(np.float32)
    noise_rng = np.random.default_rng(rng.integers(2**63))

    g = np.arange(s, dtype=np.float32) + 0.5
    out = np.empty((n, s, s, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        i = slice(start, min(n, start + _CHUNK))
        step = (crop[i] / s)[:, None]
        ys = y0[i, None] + g * step - 0.5
        xs = x0[i, None] + g * step - 0.5
        xs = np.where(mirror[i, None], xs[:, ::-1], xs)
        bg = _bilinear(photos, photo[i], ys[:, :, None], xs[:, None, :])
        mean = bg.mean(axis=(1, 2), keepdims=True)
        bg = np.clip((mean + (bg - mean) * contrast[i, None, None, None])
                     * tint[i, None, None, :], 0, 1)
        dark = bg.mean(axis=(1, 2, 3)) > 0.5
        a = _glyph_alpha(glyphs, fragment[i], f_size[i], f_angle[i], f_cy[i], f_cx[i],
                         tuple(v[i] for v in f_window))[..., None]
        img = bg * (1 - a) + _ink(f_ink[i], dark)[:, None, None, :] * a
        a = np.clip(1.3 * _glyph_alpha(glyphs, digit[i], size[i], angle[i], cy[i], cx[i]),
                    0, 1)[..., None]
        img = img * (1 - a) + _ink(ink[i], dark)[:, None, None, :] * a
        img += noise_rng.standard_normal(img.shape, dtype=np.float32) * noise_sd[i, None, None,
                                                                                 None]
        out[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def demo_arrays(n_train: int = 6000, n_val: int = 1500, seed: int = 0) -> DemoArrays:
    """Render the demo set (deterministic in its arguments; cached per process, read-only).

    The source digits are split by index, 30 a class for validation, before any rendering, so
    a validation image never shows a digit image that training saw (distractors included)."""
    return _render_demo(int(n_train), int(n_val), int(seed))  # one cache key per value


@functools.lru_cache(maxsize=2)
def _render_demo(n_train: int, n_val: int, seed: int) -> DemoArrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int32)
    glyphs = np.pad(digits.images / 16.0, ((0, 0), (1, 1), (1, 1)))[..., None].astype(np.float32)
    rng = np.random.default_rng([seed, 0])
    val_src = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels == k))[:_VAL_PER_CLASS] for k in range(10)]))
    train_src = np.setdiff1d(np.arange(len(labels)), val_src)
    out = []
    for split_id, (pool, count) in enumerate(((train_src, n_train), (val_src, n_val)), 1):
        split_rng = np.random.default_rng([seed, split_id])
        # Every source digit is rendered equally often (±1), in shuffled order.
        digit = split_rng.permutation(np.resize(split_rng.permutation(pool), count))
        fragment = split_rng.choice(pool, count)
        images = _render_digits(glyphs, digit, fragment, split_rng)
        for array in (images, labels[digit], digit, fragment):
            array.setflags(write=False)
            out.append(array)
    return DemoArrays(*out)


class DemoSource(ArraySource):
    """The embedded demo set (see the module docstring), served from memory."""

    default_flip = False  # a mirrored digit is not the same digit
    default_scale = (0.5, 1.0)  # keep most of the digit in the crop

    def __init__(self, n_train: int = 6000, n_val: int = 1500, seed: int = 0):
        self.arrays = demo_arrays(n_train, n_val, seed)
        a = self.arrays
        super().__init__(a.x_train, a.y_train, a.x_val, a.y_val, [str(k) for k in range(10)], name="demo")
