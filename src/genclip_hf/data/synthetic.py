"""Procedural textures and objects with defects and exact masks, written in the MVTec-AD layout.

Everything is drawn with numpy from a seeded generator, so the same arguments give byte-identical
files. A defect changes the pixels of a region of the clean render; the mask is exactly the set of
pixels it changed. Categories differ in kind (periodic textures, noise textures, objects on a
background), so "train on some categories, test on the others" is a meaningful zero-shot split.

Regenerate the committed sample images from the repository root with:

    >>> from genclip_hf.data.synthetic import write_sample_images
    >>> write_sample_images("examples/sample_images")
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("stripes", "checker", "noise", "weave")
OBJECTS = ("disc", "ring", "square", "cross")
CATEGORIES = TEXTURES + OBJECTS
TEXTURE_DEFECTS = ("scratch", "spot", "hole")
OBJECT_DEFECTS = ("scratch", "spot", "hole", "cut", "missing")
_SPLIT_CODES = {"train": 0, "test": 1}
_MIN_DEFECT_PIXELS = 6
_MAX_TRIES = 50

# (file name, category, defect or None, (height, width), seed) of the committed sample set.
SAMPLE_IMAGES = (
    ("disc_good.png", "disc", None, (224, 224), 1),
    ("disc_hole.png", "disc", "hole", (224, 224), 2),
    ("ring_missing.png", "ring", "missing", (224, 224), 3),
    ("stripes_good.png", "stripes", None, (224, 224), 4),
    ("stripes_scratch.png", "stripes", "scratch", (224, 224), 5),
    ("checker_spot_wide.png", "checker", "spot", (160, 256), 6),
)


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered sample.

    Attributes:
        image: `(H, W, 3)` uint8, the image as written.
        clean: `(H, W, 3)` uint8, the same render without the defect (equal to `image` when normal).
        mask: `(H, W)` bool, True exactly where `image` differs from `clean`.
    """

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class _Scene:
    image: np.ndarray  # (H, W, 3) uint8
    support: np.ndarray  # (H, W) bool, where a defect may sit
    background: np.ndarray | None  # (H, W, 3) uint8 behind an object, None for textures
    scale: float  # defect size unit in pixels: the object radius, or 0.3 x the texture's shorter side


def defect_types(category: str) -> tuple[str, ...]:
    """The defect types drawn for `category`."""
    _check_category(category)
    return TEXTURE_DEFECTS if category in TEXTURES else OBJECT_DEFECTS


def render_sample(
    category: str, image_size: tuple[int, int], seed: int | Sequence[int], defect: str | None = None
) -> SyntheticSample:
    """Render one image of `category` at `image_size = (height, width)`; with `defect`, add that defect.

    The same arguments give the same pixels on every platform (numpy `default_rng(seed)`).
    """
    _check_category(category)
    height, width = image_size
    if min(height, width) < 16:
        raise ValueError(f"image_size must be at least 16x16 pixels, got {image_size}.")
    if defect is not None and defect not in defect_types(category):
        raise ValueError(f"Defect {defect!r} is not drawn for {category!r}; expected one of {defect_types(category)}.")
    rng = np.random.default_rng(seed)
    scene = _RENDERERS[category](rng, height, width)
    if defect is None:
        return SyntheticSample(scene.image, scene.image, np.zeros((height, width), dtype=bool))
    for _ in range(_MAX_TRIES):
        image = _DEFECTS[defect](rng, scene)
        mask = (image != scene.image).any(axis=-1)
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            return SyntheticSample(image, scene.image, mask)
    raise RuntimeError(f"Could not place a visible {defect!r} on {category!r} at {image_size}; use a larger image.")


def write_synthetic_benchmark(
    root: str | Path,
    classes: Sequence[str] | None = None,
    n_train_good: int = 4,
    n_test_good: int = 4,
    n_test_bad: int = 4,
    image_size: tuple[int, int] = (64, 64),
    seed: int = 0,
) -> Path:
    """Write a benchmark in the MVTec-AD layout, loadable with `load_benchmark("mvtec", root)`.

    Per class: `train/good/NNN.png`, `test/good/NNN.png`, `test/<defect>/NNN.png` and
    `ground_truth/<defect>/NNN_mask.png` ("L", 0 or 255). The i-th defective image of a class gets
    defect type `defect_types(class)[i % k]`, so every type appears once `n_test_bad >= k`.

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        classes: categories to write, default all of `CATEGORIES`.
        n_train_good, n_test_good, n_test_bad: images per class in each folder group.
        image_size: `(height, width)` of every image.
        seed: base seed; each image's generator is seeded from (seed, class, split, index).

    Returns:
        `root` as a `Path`.
    """
    root = Path(root)
    for category in classes or CATEGORIES:
        _check_category(category)
        class_seed = zlib.crc32(category.encode())
        class_dir = root / category
        for split, n_good in (("train", n_train_good), ("test", n_test_good)):
            for index in range(n_good):
                sample = render_sample(category, image_size, (seed, class_seed, _SPLIT_CODES[split], index))
                _save(sample.image, class_dir / split / "good" / f"{index:03d}.png")
        kinds = defect_types(category)
        for index in range(n_test_bad):
            defect = kinds[index % len(kinds)]
            sample = render_sample(category, image_size, (seed, class_seed, 2, index), defect)
            name = f"{index // len(kinds):03d}"
            _save(sample.image, class_dir / "test" / defect / f"{name}.png")
            _save(sample.mask.astype(np.uint8) * 255, class_dir / "ground_truth" / defect / f"{name}_mask.png")
    return root


def write_sample_images(out_dir: str | Path) -> list[Path]:
    """Write the small licence-free sample set (`SAMPLE_IMAGES`) to `out_dir`; returns the file paths."""
    paths = []
    for file_name, category, defect, size, seed in SAMPLE_IMAGES:
        path = Path(out_dir) / file_name
        _save(render_sample(category, size, seed, defect).image, path)
        paths.append(path)
    return paths


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"Unknown synthetic category {category!r}; expected one of {CATEGORIES}.")


def _save(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:height, 0:width]
    return rows.astype(np.float32), cols.astype(np.float32)


def _rotated(rows: np.ndarray, cols: np.ndarray, angle: float, center: tuple[float, float]):
    dy, dx = rows - center[0], cols - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _palette(rng: np.random.Generator, spread: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours at least `spread` apart in mean brightness."""
    dark = rng.uniform(30, 110, 3)
    return dark, np.clip(dark + spread + rng.uniform(0, 60, 3), 0, 255)


def _blend(low: np.ndarray, high: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return low * (1 - weight[..., None]) + high * weight[..., None]


def _grain(rng: np.random.Generator, height: int, width: int, sigma: float = 3.0) -> np.ndarray:
    return rng.normal(0, sigma, (height, width, 1)).astype(np.float32)


def _texture_scene(pixels: np.ndarray) -> _Scene:
    height, width = pixels.shape[:2]
    margin = max(2, min(height, width) // 10)
    support = np.zeros((height, width), dtype=bool)
    support[margin:-margin, margin:-margin] = True
    return _Scene(_to_uint8(pixels), support, None, 0.3 * min(height, width))


def _stripes(rng: np.random.Generator, height: int, width: int) -> _Scene:
    rows, cols = _grid(height, width)
    period = rng.uniform(0.12, 0.22) * min(height, width)
    u, _ = _rotated(rows, cols, rng.uniform(0, np.pi), (0.0, 0.0))
    weight = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    low, high = _palette(rng)
    return _texture_scene(_blend(low, high, weight) + _grain(rng, height, width))


def _checker(rng: np.random.Generator, height: int, width: int) -> _Scene:
    rows, cols = _grid(height, width)
    cell = rng.uniform(0.1, 0.2) * min(height, width)
    u, v = _rotated(rows, cols, rng.uniform(-0.3, 0.3), (rng.uniform(0, cell), rng.uniform(0, cell)))
    parity = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    low, high = _palette(rng)
    return _texture_scene(_blend(low, high, parity) + _grain(rng, height, width))


def _noise(rng: np.random.Generator, height: int, width: int) -> _Scene:
    field = np.zeros((height, width), dtype=np.float32)
    for cells, amplitude in ((4, 1.0), (9, 0.5), (19, 0.25)):
        coarse = Image.fromarray(rng.uniform(0, 1, (cells, cells)).astype(np.float32))
        field += amplitude * np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    low, high = _palette(rng, spread=120.0)
    return _texture_scene(_blend(low, high, field) + _grain(rng, height, width))


def _weave(rng: np.random.Generator, height: int, width: int) -> _Scene:
    rows, cols = _grid(height, width)
    period = rng.uniform(0.1, 0.18) * min(height, width)
    u, v = _rotated(rows, cols, rng.uniform(0, np.pi / 2), (0.0, 0.0))
    over = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    thread = np.where(over, np.abs(np.sin(np.pi * v / period)), np.abs(np.sin(np.pi * u / period)))
    low, high = _palette(rng)
    return _texture_scene(_blend(low, high, thread) + _grain(rng, height, width))


def _object_scene(rng: np.random.Generator, height: int, width: int, shape: Callable[..., np.ndarray]) -> _Scene:
    rows, cols = _grid(height, width)
    size = min(height, width)
    center = (height / 2 + rng.uniform(-0.06, 0.06) * size, width / 2 + rng.uniform(-0.06, 0.06) * size)
    radius = rng.uniform(0.26, 0.34) * size
    inside = shape(rng, rows, cols, center, radius)
    background = rng.uniform(20, 70, 3) + _grain(rng, height, width, sigma=2.0)
    distance = np.hypot(rows - center[0], cols - center[1]) / radius
    colour = rng.uniform(150, 230, 3) * (1 - 0.2 * np.clip(distance, 0, 1.5) ** 2)[..., None]
    pixels = np.where(inside[..., None], colour + _grain(rng, height, width), background)
    return _Scene(_to_uint8(pixels), inside, _to_uint8(background), radius)


def _disc_shape(rng, rows, cols, center, radius) -> np.ndarray:
    return np.hypot(rows - center[0], cols - center[1]) <= radius


def _ring_shape(rng, rows, cols, center, radius) -> np.ndarray:
    distance = np.hypot(rows - center[0], cols - center[1])
    return (distance <= radius) & (distance >= rng.uniform(0.45, 0.6) * radius)


def _square_shape(rng, rows, cols, center, radius) -> np.ndarray:
    u, v = _rotated(rows, cols, rng.uniform(0, np.pi / 2), center)
    half = 0.85 * radius
    return (np.abs(u) <= half) & (np.abs(v) <= half)


def _cross_shape(rng, rows, cols, center, radius) -> np.ndarray:
    u, v = _rotated(rows, cols, rng.uniform(0, np.pi / 2), center)
    arm = rng.uniform(0.25, 0.35) * radius
    return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | ((np.abs(v) <= radius) & (np.abs(u) <= arm))


def _object_renderer(shape: Callable[..., np.ndarray]) -> Callable[[np.random.Generator, int, int], _Scene]:
    return lambda rng, height, width: _object_scene(rng, height, width, shape)


_RENDERERS: dict[str, Callable[[np.random.Generator, int, int], _Scene]] = {
    "stripes": _stripes,
    "checker": _checker,
    "noise": _noise,
    "weave": _weave,
    "disc": _object_renderer(_disc_shape),
    "ring": _object_renderer(_ring_shape),
    "square": _object_renderer(_square_shape),
    "cross": _object_renderer(_cross_shape),
}


def _anchor(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    """A random pixel of `region` as (row, col)."""
    flat = np.flatnonzero(region)
    row, col = divmod(int(flat[rng.integers(len(flat))]), region.shape[1])
    return float(row), float(col)


def _segment(shape: tuple[int, int], start: tuple[float, float], angle: float, length: float, width: float):
    """Pixels within `width / 2` of the segment from `start` along `angle` of `length`."""
    rows, cols = _grid(*shape)
    u, v = _rotated(rows, cols, angle, start)
    return (u >= 0) & (u <= length) & (np.abs(v) <= width / 2)


def _shade(image: np.ndarray, region: np.ndarray, amount: float) -> np.ndarray:
    """Shift the region's pixels by `amount`: dark pixels get brighter, light ones darker (so all change)."""
    pixels = image.astype(np.float32)
    direction = np.where(pixels.mean(axis=-1, keepdims=True) < 128, 1.0, -1.0)
    return np.where(region[..., None], _to_uint8(pixels + direction * amount), image)


def _scratch(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    start = _anchor(rng, scene.support)
    length = rng.uniform(0.6, 1.2) * scene.scale
    region = _segment(scene.support.shape, start, rng.uniform(0, 2 * np.pi), length, rng.uniform(1.0, 2.5))
    return _shade(scene.image, region & scene.support, rng.uniform(70, 110))


def _spot(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    rows, cols = _grid(*scene.support.shape)
    u, v = _rotated(rows, cols, rng.uniform(0, np.pi), _anchor(rng, scene.support))
    radii = rng.uniform(0.12, 0.3, 2) * scene.scale
    region = ((u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1) & scene.support
    tint = rng.uniform(0, 255, 3)
    stained = _to_uint8(0.35 * scene.image.astype(np.float32) + 0.65 * tint)
    return np.where(region[..., None], stained, scene.image)


def _hole(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    rows, cols = _grid(*scene.support.shape)
    row, col = _anchor(rng, scene.support)
    region = (np.hypot(rows - row, cols - col) <= rng.uniform(0.1, 0.2) * scene.scale) & scene.support
    return np.where(region[..., None], np.uint8(8), scene.image)


def _cut(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    length = rng.uniform(0.5, 1.0) * scene.scale
    start = _anchor(rng, scene.support)
    region = _segment(scene.support.shape, start, rng.uniform(0, 2 * np.pi), length, rng.uniform(2.0, 4.0))
    return np.where((region & scene.support)[..., None], scene.background, scene.image)


def _missing(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    edge = scene.support & ~_eroded(scene.support)
    rows, cols = _grid(*scene.support.shape)
    row, col = _anchor(rng, edge)
    region = (np.hypot(rows - row, cols - col) <= rng.uniform(0.3, 0.5) * scene.scale) & scene.support
    return np.where(region[..., None], scene.background, scene.image)


def _eroded(region: np.ndarray) -> np.ndarray:
    """`region` minus its 4-connected boundary pixels."""
    inner = region.copy()
    inner[1:] &= region[:-1]
    inner[:-1] &= region[1:]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    return inner


_DEFECTS: dict[str, Callable[[np.random.Generator, _Scene], np.ndarray]] = {
    "scratch": _scratch,
    "spot": _spot,
    "hole": _hole,
    "cut": _cut,
    "missing": _missing,
}
