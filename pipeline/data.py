"""Datasets: image folders, .npz files and a built-in synthetic set; one preprocessing function.

Every source ends as uint8 images already resized to the model's H x W x C (`Dataset`), so the
only float step left is `scale_pixels`, the exact affine map the firmware repeats on device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.config import DataConfig, PreprocessConfig
from pipeline.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
# What each split is for. The test split is carved first, from each class's seeded order, so it
# stays the same whatever val_split is; training, checkpoint selection, early stopping and the
# search never read it.
SPLIT_USES = {
    "train": "training",
    "val": "checkpoint selection and early stopping (training), ranking (search), PTQ vs QAT",
    "test": "final accuracy only",
}
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross", "hstripes", "vstripes", "ring",
                     "diamond")


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str = ""
    digest: str = ""  # sha256 of the images and labels, so runs can be tied to their data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLIT_USES:
            raise DataError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def splits(self) -> dict[str, dict]:
        """Each split's size, sha256 (images and labels) and what tinypipe uses it for."""
        out = {}
        for name, use in SPLIT_USES.items():
            x, y = self.split(name)
            out[name] = {"samples": int(len(x)), "sha256": _digest(x, y), "use": use}
        return out


# ---------------------------------------------------------------- preprocessing


def preprocess(images: np.ndarray | Image.Image, p: PreprocessConfig) -> np.ndarray:
    """Resize/crop and convert colour: one image (H,W[,C]) or a batch (N,H,W,C) -> uint8."""
    if isinstance(images, Image.Image):
        return _one(images, p)
    arr = np.asarray(images)
    if arr.ndim in (2, 3):  # a single image, gray (H,W) or (H,W,C)
        return _one(Image.fromarray(_squeeze(arr)), p)
    if arr.ndim != 4:
        raise DataError(f"images must be (N,H,W,C); got shape {arr.shape}")
    if arr.shape[1:] == (p.height, p.width, p.channels) and arr.dtype == np.uint8:
        return arr
    return np.stack([_one(Image.fromarray(_squeeze(a)), p) for a in arr]) if len(arr) else \
        np.zeros((0, p.height, p.width, p.channels), np.uint8)


def _squeeze(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise DataError(f"images must be uint8; got {a.dtype}")
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a


def _one(img: Image.Image, p: PreprocessConfig) -> np.ndarray:
    img = img.convert("L" if p.channels == 1 else "RGB")
    if p.resize == "crop":
        w, h = img.size
        target = p.width / p.height
        if w / h > target:
            nw = round(h * target)
            img = img.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
        else:
            nh = round(w / target)
            img = img.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))
    if img.size != (p.width, p.height):
        img = img.resize((p.width, p.height), Image.BILINEAR)
    out = np.asarray(img, dtype=np.uint8)
    return out[..., None] if p.channels == 1 else out


def scale_pixels(x: np.ndarray, p: PreprocessConfig) -> np.ndarray:
    """uint8 pixels -> float model input: pixel * pixel_scale + pixel_offset."""
    return x.astype(np.float32) * np.float32(p.pixel_scale) + np.float32(p.pixel_offset)


# ---------------------------------------------------------------- sources


def load_dataset(d: DataConfig, p: PreprocessConfig) -> Dataset:
    """Load the configured source, preprocess to the model's input size, and split it."""
    if d.source == "synthetic":
        x, y = synthetic(d.synthetic.classes, d.synthetic.samples_per_class, p.height, p.width,
                         p.channels, seed=d.synthetic.seed)
        names = list(SYNTHETIC_CLASSES[: d.synthetic.classes])
        ds = _split(x, y, names, d, source=f"synthetic(seed={d.synthetic.seed})")
    elif d.source == "npz":
        ds = _from_npz(Path(d.path), p, d)
    else:
        ds = _from_folder(Path(d.path), p, d)
    return ds


def _limit(x: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    if n is None or n >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[idx], y[idx]


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _check_classes(y: np.ndarray, names: list[str], where: str) -> None:
    if len(names) < 2:
        raise DataError(f"{where}: need at least 2 classes, found {len(names)}")
    counts = np.bincount(y, minlength=len(names))
    empty = [names[i] for i in range(len(names)) if counts[i] == 0]
    if empty:
        raise DataError(f"{where}: class {empty[0]!r} has no images")


def _split(x, y, names, d: DataConfig, source: str) -> Dataset:
    """Seeded, stratified train/val/test split."""
    x, y = _limit(x, y, d.limit, d.seed)
    _check_classes(y, names, source)
    rng = np.random.default_rng(d.seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(len(names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * d.test_split))
        n_val = int(round(len(idx) * d.val_split))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    sel = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return Dataset(x[sel["train"]], y[sel["train"]], x[sel["val"]], y[sel["val"]],
                   x[sel["test"]], y[sel["test"]], names, source, _digest(x, y))


def _from_npz(path: Path, p: PreprocessConfig, d: DataConfig) -> Dataset:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read npz ({e})") from None
    with z:
        for key in ("x", "y"):
            if key not in z.files:
                raise DataError(f"{path}: missing array {key!r} (has {', '.join(z.files)})")
        x, y = z["x"], z["y"]
        names = [str(n) for n in z["class_names"]] if "class_names" in z.files else None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"{path}: x must be uint8 (N,H,W,C); got {x.dtype} {x.shape}")
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{path}: y must hold non-negative integer labels")
    y = y.astype(np.int64)
    if names is None:
        names = [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    if len(y) and y.max() >= len(names):
        raise DataError(f"{path}: label {int(y.max())} but only {len(names)} class_names")
    x, y = _limit(x, y, d.limit, d.seed)
    x = preprocess(x, p)
    d2 = DataConfig(**{**d.__dict__, "limit": None})
    ds = _split(x, y, names, d2, source=str(path))
    return ds


def _list_classes(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(q for q in root.iterdir() if q.is_dir()):
        classes[sub.name] = sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
    return classes


def _read_images(files: list[Path], p: PreprocessConfig) -> np.ndarray:
    out = []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                out.append(_one(img, p))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            reason = "not an image" if isinstance(e, UnidentifiedImageError) else "corrupt image"
            raise DataError(f"{f}: cannot read image ({reason})") from None
    return np.stack(out) if out else np.zeros((0, p.height, p.width, p.channels), np.uint8)


def _from_folder(root: Path, p: PreprocessConfig, d: DataConfig) -> Dataset:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    split_dirs = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    if split_dirs:
        if "train" not in split_dirs:
            raise DataError(f"{root}: has {', '.join(split_dirs)}/ but no train/")
        per_split = {s: _list_classes(root / s) for s in split_dirs}
        names = sorted(per_split["train"])
        arrays = {}
        for s, classes in per_split.items():
            extra = sorted(set(classes) - set(names))
            if extra:
                raise DataError(f"{root / s / extra[0]}: class not present in train/")
            files = [(f, i) for i, n in enumerate(names) for f in classes.get(n, [])]
            if s == "train":
                for n in names:
                    if not classes[n]:
                        raise DataError(f"{root / s / n}: class folder has no images")
            x = _read_images([f for f, _ in files], p)
            arrays[s] = (x, np.array([i for _, i in files], np.int64))
        x_tr, y_tr = arrays["train"]
        x_tr, y_tr = _limit(x_tr, y_tr, d.limit, d.seed)
        _check_classes(y_tr, names, str(root / "train"))
        if "val" not in arrays or "test" not in arrays:
            # carve the missing split(s) out of train, stratified
            missing_val, missing_test = "val" not in arrays, "test" not in arrays
            d2 = DataConfig(**{**d.__dict__, "limit": None,
                               "val_split": d.val_split if missing_val else 0.0,
                               "test_split": d.test_split if missing_test else 0.0})
            carved = _split(x_tr, y_tr, names, d2, str(root))
            x_tr, y_tr = carved.x_train, carved.y_train
            if missing_val:
                arrays["val"] = (carved.x_val, carved.y_val)
            if missing_test:
                arrays["test"] = (carved.x_test, carved.y_test)
        (x_va, y_va), (x_te, y_te) = arrays["val"], arrays["test"]
        return Dataset(x_tr, y_tr, x_va, y_va, x_te, y_te, names, str(root),
                       _digest(x_tr, y_tr, x_va, y_va, x_te, y_te))
    classes = _list_classes(root)
    names = sorted(classes)
    if len(names) < 2:
        raise DataError(f"{root}: need at least 2 class folders, found {len(names)}")
    for n in names:
        if not classes[n]:
            raise DataError(f"{root / n}: class folder has no images")
    files = [(f, i) for i, n in enumerate(names) for f in classes[n]]
    if d.limit is not None and d.limit < len(files):
        keep = np.sort(np.random.default_rng(d.seed).permutation(len(files))[: d.limit])
        files = [files[k] for k in keep]
    x = _read_images([f for f, _ in files], p)
    y = np.array([i for _, i in files], np.int64)
    return _split(x, y, names, DataConfig(**{**d.__dict__, "limit": None}), str(root))


# ---------------------------------------------------------------- synthetic


def synthetic(classes: int, per_class: int, height: int, width: int, channels: int,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic shapes on noisy, varied backgrounds: (N,H,W,C) uint8 and int64 labels."""
    if not 2 <= classes <= len(SYNTHETIC_CLASSES):
        raise DataError(f"synthetic dataset supports 2..{len(SYNTHETIC_CLASSES)} classes, "
                        f"got {classes}")
    rng = np.random.default_rng(seed)
    n = classes * per_class
    y = np.repeat(np.arange(classes), per_class)
    y = y[rng.permutation(n)]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    x = np.empty((n, height, width, 3), np.uint8)
    s = float(min(height, width))
    for i in range(n):
        # background: a random linear gradient between two colours, plus noise
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        ang = rng.uniform(0, 2 * np.pi)
        t = ((xx / width - 0.5) * np.cos(ang) + (yy / height - 0.5) * np.sin(ang)) + 0.5
        bg = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
        # shape colour far from the local background mean, so gray images stay separable
        fg = np.where(bg.mean() > 127, rng.uniform(0, 70, 3), rng.uniform(185, 255, 3))
        r = rng.uniform(0.22, 0.38) * s
        cy = rng.uniform(r, height - r)
        cx = rng.uniform(r, width - r)
        mask = _shape_mask(SYNTHETIC_CLASSES[y[i]], yy - cy, xx - cx, r, rng)
        img = np.where(mask[..., None], fg, bg)
        img += rng.normal(0, rng.uniform(4, 20), img.shape)
        x[i] = np.clip(img, 0, 255).astype(np.uint8)
    if channels == 1:
        x = (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)[..., None]
    return x, y.astype(np.int64)


def _shape_mask(kind: str, dy: np.ndarray, dx: np.ndarray, r: float, rng) -> np.ndarray:
    th = rng.uniform(-0.3, 0.3)  # a small rotation keeps shapes from being pixel-identical
    ry = dy * np.cos(th) - dx * np.sin(th)
    rx = dy * np.sin(th) + dx * np.cos(th)
    w = max(1.5, r * 0.3)
    if kind == "circle":
        return dy**2 + dx**2 <= r**2
    if kind == "square":
        return (np.abs(ry) <= r * 0.8) & (np.abs(rx) <= r * 0.8)
    if kind == "triangle":
        return (ry <= r * 0.7) & (ry >= -r * 0.9 + 1.8 * np.abs(rx))
    if kind == "cross":
        return ((np.abs(ry) <= w) & (np.abs(rx) <= r)) | ((np.abs(rx) <= w) & (np.abs(ry) <= r))
    if kind == "hstripes":
        return (np.abs(ry) <= r) & (np.abs(rx) <= r) & ((np.floor(ry / w) % 2) == 0)
    if kind == "vstripes":
        return (np.abs(ry) <= r) & (np.abs(rx) <= r) & ((np.floor(rx / w) % 2) == 0)
    if kind == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (r * 0.6) ** 2)
    if kind == "diamond":
        return np.abs(ry) + np.abs(rx) <= r
    raise DataError(f"unknown synthetic class {kind!r}")
