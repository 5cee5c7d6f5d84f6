import numpy as np
import pytest

from p2e_cli import photos
from p2e_cli.errors import P2EError


def test_split_is_disjoint_and_covers_all():
    train, heldout = photos.photo_names("train"), photos.photo_names("heldout")
    assert len(train) >= 14 and len(heldout) >= 4
    assert not set(train) & set(heldout)
    assert sorted(train + heldout) == sorted(photos.photo_names("all"))
    with pytest.raises(P2EError):
        photos.photo_names("test")


@pytest.mark.parametrize("name", photos.photo_names("all"))
def test_every_photo_loads_offline_as_rgb_uint8(name):
    image = photos.load_photo(name, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image.std() > 8, "a photo should not be flat"


def test_load_photo_respects_aspect_and_caches():
    wide = photos.load_photo("astronaut", (24, 40))
    assert wide.shape == (24, 40, 3)
    assert photos.load_photo("astronaut", (24, 40)) is wide
    assert not wide.flags.writeable
    with pytest.raises(P2EError, match="unknown photo"):
        photos.load_photo("nosuch")
    with pytest.raises(P2EError):
        photos.load_photo("astronaut", 2)


def test_photos_are_distinct():
    images = np.stack([photos.load_photo(n, 32).astype(np.float32) for n in photos.photo_names()])
    diffs = np.abs(images[:, None] - images[None]).mean(axis=(2, 3, 4))
    np.fill_diagonal(diffs, np.inf)
    assert diffs.min() > 10


def test_random_view_is_deterministic_and_varies():
    a = photos.random_view("chelsea", 32, 7)
    b = photos.random_view("chelsea", 32, np.random.default_rng(7))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    views = [photos.random_view("chelsea", 32, rng) for _ in range(4)]
    assert all(np.abs(v.astype(int) - views[0]).mean() > 1 for v in views[1:])
    plain = photos.random_view("chelsea", (16, 24), 1, min_scale=1.0, flip=False, jitter=0.0)
    assert np.abs(plain.astype(int) - photos.load_photo("chelsea", (16, 24))).mean() < 6
