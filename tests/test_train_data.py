"""Training data: label schemes and their merges, the folder format, bad data, conversions."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from scam_train.data import Augment, PairDataset, ResumableSampler, _augment, check_pairs, find_pairs
from scam_train.errors import ConfigError, DataError
from scam_train.schemes import load_scheme, parse_scheme, scheme_names


def test_shipped_schemes():
    assert {"bfb3", "ccp59-3", "lip20-3", "celebamask19", "identity"} <= set(scheme_names())
    assert load_scheme("celebamask19").labels[18] == "cloth" and len(load_scheme("celebamask19").labels) == 19


def test_ccp_merge_to_three_labels():
    s = load_scheme("ccp59-3")
    # null, hair, hat, sunglasses, glasses, skin, blouse, shoes
    ids = np.array([[0, 19, 20, 47], [17, 41, 5, 39]])
    assert s.apply(ids, "x.png").tolist() == [[0, 1, 1, 1], [1, 2, 2, 2]]
    with pytest.raises(DataError, match=r"x.png: label id 59 is not in scheme 'ccp59-3'"):
        s.apply(np.array([59]), "x.png")


def test_lip_merge_to_three_labels():
    s = load_scheme("lip20-3")
    # background, hat, hair, glove, sunglasses, upper clothes, face, left arm, right shoe
    assert s.apply(np.array([0, 1, 2, 3, 4, 5, 13, 14, 19]), "y").tolist() == [0, 1, 1, 2, 1, 2, 1, 2, 2]


def test_identity_reads_its_count_off_the_data_and_fixed_schemes_reject_extra_ids():
    assert load_scheme("identity").with_label_count(5).labels == tuple(f"label{i}" for i in range(5))
    with pytest.raises(DataError, match="label id 3 is not in scheme 'bfb3'"):
        load_scheme("bfb3").apply(np.array([0, 3]), "z.png")


def test_scheme_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown label scheme 'nope'"):
        load_scheme("nope")
    with pytest.raises(DataError, match="merge target 'hands' is not one of the labels"):
        parse_scheme({"labels": ["bg", "fg"], "source_labels": ["a", "b"], "merge": {"hands": ["a"]}}, "t")
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="s.json: unreadable label scheme"):
        load_scheme(str(bad))
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"labels": ["bg", "fg"], "source_labels": ["a", "b", "c"],
                                "merge": {"bg": ["a"]}, "default": "fg"}))
    assert load_scheme(str(good)).apply(np.array([0, 1, 2]), "m").tolist() == [0, 1, 1]


def _pair(root, name, image, labels, ext=".png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{name}{ext}")
    if labels is not None:
        labels.save(root / "labels" / f"{name}.png")


def _ids(h=40, w=30, top=2):
    return Image.fromarray((np.arange(h * w).reshape(h, w) % (top + 1)).astype(np.uint8))


def _rgb(h=40, w=30):
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_folder_format_split_by_list_and_by_folder(tmp_path):
    for name in ("a", "b", "c"):
        _pair(tmp_path, name, _rgb(), _ids())
    (tmp_path / "val.txt").write_text("b\nc.jpg\n")
    assert [p.image.stem for p in find_pairs(tmp_path, "val.txt")] == ["b", "c"]
    _pair(tmp_path / "train", "d", _rgb(), _ids())
    assert [p.image.stem for p in find_pairs(tmp_path, "train")] == ["d"]
    with pytest.raises(DataError, match="nosplit: split is neither a folder"):
        find_pairs(tmp_path, "nosplit")


@pytest.mark.parametrize("case, message", [
    ("missing_labels", r"images/a.png: no label map"),
    ("orphan_labels", r"labels/z.png: label map without an image"),
    ("size", r"labels/a.png: label map is 30x40, its image a.png is 31x40"),
    ("unreadable", r"images/a.jpg: unreadable image"),
    ("scheme", r"labels/a.png: label id 3 is not in scheme 'bfb3'"),
    ("rgb_labels", r"labels/a.png: label map must be a single-channel image"),
])
def test_bad_data_names_the_file(tmp_path, case, message):
    if case == "missing_labels":
        _pair(tmp_path, "a", _rgb(), None)
    elif case == "orphan_labels":
        _pair(tmp_path, "a", _rgb(), _ids())
        _ids().save(tmp_path / "labels" / "z.png")
    elif case == "size":
        _pair(tmp_path, "a", _rgb(40, 31), _ids())
    elif case == "unreadable":
        _pair(tmp_path, "a", _rgb(), _ids(), ext=".jpg")
        (tmp_path / "images" / "a.jpg").write_bytes(b"not a jpeg")
    elif case == "scheme":
        _pair(tmp_path, "a", _rgb(), _ids(top=3))
    elif case == "rgb_labels":
        _pair(tmp_path, "a", _rgb(), _rgb())
    with pytest.raises(DataError, match=message):
        check_pairs(find_pairs(tmp_path), load_scheme("bfb3"))


def test_greyscale_rgba_and_16_bit_inputs_are_converted(tmp_path):
    grey16 = Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(40, 30)).astype(np.uint16))
    _pair(tmp_path, "g", Image.fromarray(np.full((40, 30), 128, np.uint8)), _ids())
    _pair(tmp_path, "r", Image.fromarray(np.full((40, 30, 4), 200, np.uint8)), _ids())
    _pair(tmp_path, "w", grey16, Image.fromarray(np.full((40, 30), 300, np.uint16)))
    pairs = find_pairs(tmp_path)
    scheme = check_pairs(pairs, load_scheme("identity"))
    assert len(scheme.labels) == 301  # the 16-bit label id 300 is read as it is
    ds = PairDataset(pairs, scheme, 32, 24)
    images = {p.image.stem: ds.load(i) for i, p in enumerate(pairs)}
    assert all(img.shape == (3, 32, 24) and ids.shape == (32, 24) for img, ids in images.values())
    assert np.allclose(images["g"][0][:, 16, 12], 128 / 127.5 - 1, atol=1e-6)
    w_img, w_ids = images["w"]
    assert w_img[0, 0, 0] < -0.9 and w_img[0, -1, -1] > 0.9  # full 16-bit range, not clipped at 255
    assert w_ids.max() == 300


def test_letterbox_pads_and_augmentation_is_reproducible(tmp_path):
    _pair(tmp_path, "a", _rgb(40, 30), _ids(40, 30))
    pairs = find_pairs(tmp_path)
    ds = PairDataset(pairs, load_scheme("bfb3"), 40, 60, augment=Augment(), seed=3)
    image, ids = ds.load(0)
    assert (image[:, :, :10] == -1).all() and (ids[:, :10] == 0).all()  # letterbox bars: black, background
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    draws = set()
    for epoch in range(8):
        ds.epoch = epoch
        draws.add(round(float(ds[0][0].mean()), 5))
    assert len(draws) > 1  # jitter varies with the epoch


def test_loader_workers_that_outlive_an_epoch_see_the_next_one(tmp_path):
    """The trainer keeps its loader's workers across epochs; the sampler hands them the epoch."""
    for name in "abcd":
        _pair(tmp_path, name, _rgb(40, 30), _ids(40, 30))
    ds = PairDataset(find_pairs(tmp_path), load_scheme("bfb3"), 40, 30, augment=Augment(zoom=0.3), seed=3)
    sampler = ResumableSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=5, drop_last=True)
    loader = DataLoader(ds, 2, sampler=sampler, drop_last=True, num_workers=1, persistent_workers=True)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert {e for e, _ in keys} == {epoch}
        ds.epoch = epoch  # here only: the worker forked in epoch 0 keeps its copy at 0
        expected = [ds[i] for _, i in keys]
        got = [pair for batch in loader for pair in zip(*batch)]
        assert all(torch.equal(e[0], g[0]) and torch.equal(e[1], g[1]) for e, g in zip(expected, got, strict=True))


def test_zoom_crops_image_and_labels_alike():
    """The zoom crops and rescales image and labels together: each pixel's colour still names
    its label (bilinear mixes only along label edges), and at zoom 0 nothing moves."""
    ids = torch.from_numpy(np.indices((48, 32)).sum(0) // 9 % 3)
    image = (ids.float() - 1).expand(3, -1, -1).clone()  # colour -1, 0, 1 for labels 0, 1, 2
    gen = torch.Generator().manual_seed(0)
    plain = _augment(image, ids, Augment(flip=False, jitter=0), gen)
    assert torch.equal(plain[0], image) and torch.equal(plain[1], ids)
    moved = 0
    for seed in range(20):
        z_image, z_ids = _augment(image, ids, Augment(flip=False, jitter=0, zoom=0.5),
                                  torch.Generator().manual_seed(seed))
        assert z_image.shape == image.shape and z_ids.shape == ids.shape and z_ids.dtype == ids.dtype
        agree = (z_image[0] - (z_ids.float() - 1)).abs() < 0.5
        assert agree.float().mean() > 0.9
        moved += not torch.equal(z_ids, ids)
    assert moved >= 15  # a zoom in [1, 1.5]: almost every draw crops


def test_training_photos_count_upright_and_a_stored_only_label_map_is_named(tmp_path):
    """A phone photo (EXIF orientation 6) pairs with a label map of its displayed size; a map
    of its stored size is used with the stored pixels, with a warning naming it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = np.zeros((40, 24, 3), np.uint8)
    upright[:10] = 255
    for name in ("shown", "stored"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "labels").mkdir()
        Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(
            tmp_path / name / "images" / "a.jpg", quality=100, exif=exif)
    ids = np.zeros((40, 24), np.uint8)
    ids[:10] = 1
    Image.fromarray(ids).save(tmp_path / "shown" / "labels" / "a.png")
    Image.fromarray(ids).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "stored" / "labels" / "a.png")
    for name, warned, shape in (("shown", False, (40, 24)), ("stored", True, (24, 40))):
        warnings = []
        pairs = find_pairs(tmp_path / name)
        scheme = check_pairs(pairs, load_scheme("bfb3"), warnings.append)
        assert bool(warnings) == warned and all("EXIF orientation 6" in w for w in warnings)
        image, labels = PairDataset(pairs, scheme, *shape).load(0)  # the model's size = the photo's
        assert np.array_equal(labels, np.asarray(Image.open(pairs[0].labels)))
        assert np.abs((image[0] + 1) * 127.5 - 255 * labels).mean() < 4  # white where label 1: aligned
