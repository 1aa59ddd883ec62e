import numpy as np
import pytest
from PIL import Image

from pipeline.config import DataConfig, PreprocessConfig
from pipeline.data import load_dataset, preprocess, scale_pixels, synthetic
from pipeline.errors import DataError


def test_synthetic_is_deterministic_and_balanced():
    x1, y1 = synthetic(5, 20, 40, 36, 3, seed=3)
    x2, y2 = synthetic(5, 20, 40, 36, 3, seed=3)
    x3, _ = synthetic(5, 20, 40, 36, 3, seed=4)
    assert x1.shape == (100, 40, 36, 3) and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert np.bincount(y1).tolist() == [20] * 5
    g, _ = synthetic(3, 4, 32, 32, 1)
    assert g.shape == (12, 32, 32, 1)


def test_split_is_stratified_and_disjoint():
    d = DataConfig(synthetic={"classes": 4, "samples_per_class": 50, "seed": 0})
    from pipeline.config import SyntheticConfig
    d.synthetic = SyntheticConfig(4, 50, 0)
    ds = load_dataset(d, PreprocessConfig())
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 200
    for y in (ds.y_val, ds.y_test):
        assert np.bincount(y, minlength=4).min() == np.bincount(y, minlength=4).max()
    assert len(ds.digest) == 64


def test_preprocess_resize_crop_gray():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the centre square is white, the sides black
    crop = preprocess(img, PreprocessConfig(height=32, width=32, channels=1, resize="crop"))
    assert crop.shape == (32, 32, 1) and crop.min() == 255
    stretch = preprocess(img, PreprocessConfig(height=32, width=32, channels=3))
    assert stretch.shape == (32, 32, 3) and stretch.min() == 0
    p = PreprocessConfig(pixel_scale=2 / 255, pixel_offset=-1.0)
    np.testing.assert_allclose(scale_pixels(np.array([0, 255], np.uint8), p), [-1.0, 1.0],
                               atol=1e-6)


def _folder(root, classes, n=3, size=(20, 30)):
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full(size + (3,), (25 * i) % 256, np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _folder(tmp_path, ["cat", "dog"], n=10)
    ds = load_dataset(DataConfig(source="folder", path=str(tmp_path), val_split=0.2,
                                 test_split=0.2), PreprocessConfig(height=32, width=48))
    assert ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape[1:] == (32, 48, 3)
    assert len(ds.x_train) == 12 and len(ds.x_val) == 4 and len(ds.x_test) == 4


def test_image_folder_with_splits(tmp_path):
    _folder(tmp_path / "train", ["a", "b"], n=6)
    _folder(tmp_path / "test", ["a", "b"], n=2)
    ds = load_dataset(DataConfig(source="folder", path=str(tmp_path), val_split=0.34),
                      PreprocessConfig())
    assert len(ds.x_test) == 4 and len(ds.x_val) == 4 and len(ds.x_train) == 8


def test_corrupt_image_names_the_file(tmp_path):
    _folder(tmp_path, ["a", "b"])
    bad = tmp_path / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_dataset(DataConfig(source="folder", path=str(tmp_path)), PreprocessConfig())


def test_empty_and_single_class(tmp_path):
    _folder(tmp_path, ["a", "b"])
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_dataset(DataConfig(source="folder", path=str(tmp_path)), PreprocessConfig())
    single = tmp_path / "single"
    _folder(single, ["only"])
    with pytest.raises(DataError, match="at least 2 class"):
        load_dataset(DataConfig(source="folder", path=str(single)), PreprocessConfig())


def test_npz_source_and_errors(tmp_path):
    x, y = synthetic(3, 10, 36, 36, 3)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y, class_names=np.array(["a", "b", "c"]))
    ds = load_dataset(DataConfig(source="npz", path=str(p)), PreprocessConfig())
    assert ds.class_names == ["a", "b", "c"] and ds.x_train.shape[1:] == (32, 32, 3)
    np.savez(p, x=x, y=y[:-1])
    with pytest.raises(DataError, match="30 images but y has 29"):
        load_dataset(DataConfig(source="npz", path=str(p)), PreprocessConfig())
    np.savez(p, x=x.astype(np.float32), y=y)
    with pytest.raises(DataError, match="must be uint8"):
        load_dataset(DataConfig(source="npz", path=str(p)), PreprocessConfig())
    p.write_bytes(b"garbage")
    with pytest.raises(DataError, match="d.npz"):
        load_dataset(DataConfig(source="npz", path=str(p)), PreprocessConfig())
