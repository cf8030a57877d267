"""scam_runtime's Python API: geometry, compositing, SubjectReplacer, subjects, backends."""
import math
import threading

import numpy as np
import pytest
from PIL import Image

from models.synthetic import person_labels
from scam_runtime.backend import BackendOptions, ProviderUnavailable, available_providers, resolve_providers
from scam_runtime.colour import SRGB8_TO_LINEAR, ColourOptions, linear_to_srgb8
from scam_runtime.composite import composite, person_matte
from scam_runtime.errors import InputError, LabelError, ProviderFailure, UsageError
from scam_runtime.geometry import Fit
from scam_runtime.replacer import ReplaceOptions, Subject, SubjectReplacer

RNG = np.random.default_rng(0)


def rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def replacer(small_bundle):
    return SubjectReplacer(small_bundle, warn=lambda m: None)


@pytest.fixture(scope="module")
def subject(replacer):
    return replacer.encode_subject(rgb(200, 120), person_labels(200, 120))


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("hw", [(96, 128), (300, 170), (128, 128), (77, 301)])
def test_fit_maps_frames_to_model_and_back(mode, hw):
    fit = Fit.compute(hw, (128, 128), mode)
    frame = rgb(*hw)
    x = fit.image_to_model(frame)
    assert x.shape == (3, 128, 128) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1
    labels = fit.labels_to_model(person_labels(*hw))
    assert labels.shape == (128, 128) and set(np.unique(labels)) <= {0, 1, 2}
    back, (fy, fx) = fit.image_to_frame(x)
    assert back.shape == (fy.stop - fy.start, fx.stop - fx.start, 3)
    if mode == "letterbox":  # the whole frame is covered
        assert (fy.start, fy.stop, fx.start, fx.stop) == (0, hw[0], 0, hw[1])
        assert np.abs(back.astype(int) - frame.astype(int)).mean() < 60  # resampled there and back
    # a window of the covered region (what compositing reads): within one code of the whole resample
    box = (slice(fy.start + 3, fy.start + 40), slice(fx.start + 5, fx.stop - 7))
    window, where = fit.image_to_frame(x, box)
    assert where == box and window.shape == (37, fx.stop - fx.start - 12, 3)
    assert np.abs(window.astype(int) - back[3:40, 5:-7].astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("model_hw", [(128, 85), (256, 170), (128, 128)])
def test_labels_to_model_picks_what_pillows_nearest_resize_picks(mode, model_hw):
    """The index lookup must give training's label maps (a Pillow resize) to the pixel."""
    rng = np.random.default_rng(0)
    for hw in [(576, 576), (1080, 1920), (97, 61), (85, 128), (2160, 3839), (40, 30), (128, 85)]:
        fit = Fit.compute(hw, model_hw, mode)
        for dtype in (np.uint8, np.uint16):
            ids = rng.integers(0, 3 if dtype == np.uint8 else 900, hw).astype(dtype)
            whole = np.asarray(Image.fromarray(ids.astype(np.int32)).resize((fit.scaled_w, fit.scaled_h),
                                                                          Image.NEAREST))
            got = fit.labels_to_model(ids)
            assert got.dtype == np.int32 and got.shape == model_hw
            np.testing.assert_array_equal(got, fit._place(whole, 0), err_msg=f"{hw} -> {model_hw} {mode}")
    with pytest.raises(ValueError, match="label map is 31x40, the frame 30x40"):
        Fit.compute((40, 30), model_hw, mode).labels_to_model(np.zeros((40, 31), np.uint8))


def test_matte_is_exactly_zero_away_from_the_person_and_plate_untouched():
    labels = person_labels(96, 128)
    matte = person_matte(labels, feather=3)
    assert matte[labels != 0].min() > 0.9 and matte.max() == 1
    assert (matte[:, :20] == 0).all()
    plate, generated = rgb(96, 128), rgb(96, 128)
    out = composite(plate, generated, matte, ColourOptions().path(np.dtype(np.uint8)))
    assert np.array_equal(out[matte == 0], plate[matte == 0])
    assert np.array_equal(out[matte == 1], generated[matte == 1])


@pytest.mark.parametrize("feather", [0.5, 2, 3, 7.5, 20])
def test_matte_on_the_person_box_equals_the_whole_frame(feather):
    """The matte is computed around the person only; the result equals the whole-frame one."""
    from PIL import Image, ImageFilter

    from scam_runtime.composite import _box_dilate
    for labels in (person_labels(96, 128), person_labels(96, 128, shift=40), np.pad(person_labels(96, 128), 30)):
        grown = _box_dilate(labels != 0, math.ceil(feather))
        full = Image.fromarray(grown.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(feather / 2))
        assert np.array_equal(person_matte(labels, feather), np.asarray(full).astype(np.float32) / 255.0)


@pytest.mark.parametrize("hw", [(96, 128), (150, 230)])  # at the model's scale, and upscaled
def test_process_replaces_inside_matte_only(replacer, subject, hw):
    frame, labels = rgb(*hw), person_labels(*hw)
    result = replacer.process(frame, labels, subject)
    assert result.composite.shape == frame.shape and result.composite.dtype == np.uint8
    outside, inside = result.matte == 0, result.matte == 1
    assert outside.mean() > 0.4 and np.array_equal(result.composite[outside], frame[outside])
    assert not np.array_equal(result.composite[~outside], frame[~outside])
    # compositing resamples only the matte's box; the full generation (made on demand) agrees there
    assert inside.any() and np.array_equal(result.composite[inside], result.generated[inside])
    if hw == (96, 128):
        # `full` takes the whole generation where it covers the frame: all of it when letterboxed
        full = SubjectReplacer(replacer.bundle, ReplaceOptions(fit="letterbox", composite="full")).process(
            frame, labels, subject)
        assert np.array_equal(full.composite, full.generated) and (full.matte == 1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_float_frames_are_scene_linear(replacer, subject, dtype):
    """Float frames (what Nuke or Houdini hand over) are composited in linear float, bit-exact
    outside the matte; the networks see their sRGB encoding, as an 8-bit frame would give.
    Their colourspace is named (here linear Rec.709), else the OCIO config's scene_linear."""
    linear = (RNG.gamma(0.6, 0.6, (96, 128, 3)) - 0.02).astype(dtype)  # highlights > 1, negative fringes
    labels = person_labels(96, 128)
    r = replacer.process(linear, labels, subject, colour="lin_rec709")
    display = replacer.process(linear_to_srgb8(linear), labels, subject)
    assert r.composite.dtype == dtype and r.composite.shape == linear.shape
    assert np.array_equal(r.generated, display.generated) and np.array_equal(r.matte, display.matte)
    outside, inside = r.matte == 0, r.matte == 1
    assert outside.any() and inside.any()
    assert np.array_equal(r.composite[outside], linear[outside])
    assert np.array_equal(r.composite[inside], SRGB8_TO_LINEAR[r.generated[inside]].astype(dtype))
    acescg = replacer.process(linear, labels, subject)  # the default config's scene_linear: ACEScg
    assert np.array_equal(acescg.composite, replacer.process(linear, labels, subject, colour="ACEScg").composite)
    assert not np.array_equal(acescg.generated, r.generated)
    with pytest.raises(InputError, match=r"image 0: expected uint8/uint16 \(sRGB-encoded\) or float"):
        replacer.process(linear.astype(np.int16), labels, subject)
    with pytest.raises(InputError, match="image 0: expected an H×W×3 RGB array"):
        replacer.process(linear[..., 0], labels, subject)


def test_batch_equals_single_and_sizes_may_differ(replacer, subject):
    frames = [rgb(96, 128), rgb(150, 100)]
    labels = [person_labels(96, 128), person_labels(150, 100, shift=5)]
    batch = replacer.process_batch(frames, labels, subject)
    for f, lab, r in zip(frames, labels, batch):
        single = replacer.process(f, lab, subject)
        assert np.abs(single.composite.astype(int) - r.composite.astype(int)).max() <= 1


def test_threads_share_one_instance(replacer, subject):
    frames = [rgb(96, 128) for _ in range(4)]
    labels = person_labels(96, 128)
    expected = [replacer.process(f, labels, subject).composite for f in frames]
    got = [None] * 4

    def work(i):
        got[i] = replacer.process(frames[i], labels, subject).composite

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))


def test_mixing_sources_keep_and_missing_label_warning(small_bundle, subject):
    messages = []
    keeper = SubjectReplacer(small_bundle, ReplaceOptions(keep=("body",)), warn=messages.append)
    assert keeper.mix_sources() == {"background": "frame", "face": "subject", "body": "frame"}
    no_face = keeper.encode_subject(rgb(120, 80), np.where(person_labels(120, 80) == 1, 2, person_labels(120, 80)))
    assert no_face.present == ("background", "body")
    keeper.process(rgb(96, 128), person_labels(96, 128), no_face)
    keeper.process(rgb(96, 128), person_labels(96, 128), no_face)
    assert len(messages) == 1 and "shows no 'face'" in messages[0]
    with pytest.raises(UsageError, match="unknown label"):
        SubjectReplacer(small_bundle, ReplaceOptions(keep=("hat",)))
    with pytest.raises(UsageError, match="the background always stays the frame's"):
        SubjectReplacer(small_bundle, ReplaceOptions(keep=("background",)))


def test_temporal_modes(small_bundle, subject):
    frames = [rgb(96, 128) for _ in range(3)]
    labels = person_labels(96, 128)
    per_frame = SubjectReplacer(small_bundle)
    first = SubjectReplacer(small_bundle, ReplaceOptions(temporal="first"))
    a = [per_frame.process(f, labels, subject).generated for f in frames]
    b = [first.process(f, labels, subject).generated for f in frames]
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[2], b[2])
    with pytest.raises(UsageError, match="temporal"):
        ReplaceOptions(temporal="ema=2")
    assert ReplaceOptions(temporal="ema=0.25").ema_alpha == 0.25


def test_subject_file_round_trip(replacer, subject, tmp_path):
    subject.save(tmp_path / "s.npz")
    loaded = Subject.load(tmp_path / "s.npz")
    assert np.array_equal(loaded.latents, subject.latents) and loaded.present == subject.present
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.npz: not a scam subject file"):
        Subject.load(tmp_path / "bad.npz")
    other = Subject(subject.latents, subject.present, "0" * 64)
    with pytest.raises(InputError, match="another bundle"):
        replacer.process(rgb(96, 128), person_labels(96, 128), other)


def test_label_validation(replacer, subject):
    with pytest.raises(LabelError, match="label ids must lie in 0..2"):
        replacer.process(rgb(96, 128), person_labels(96, 128) * 2, subject)
    messages = []
    r = SubjectReplacer(replacer.bundle, warn=messages.append)
    r.process(rgb(96, 128), person_labels(48, 64), subject)
    assert "resized by nearest neighbour" in messages[0]


def test_strict_provider(small_bundle):
    if "cuda" in available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(ProviderUnavailable, match="'cuda' is not available"):
        resolve_providers(BackendOptions("cuda"))
    with pytest.raises(ProviderFailure):
        SubjectReplacer(small_bundle, backend=BackendOptions("cuda"))
    assert SubjectReplacer(small_bundle, backend=BackendOptions("cuda", allow_fallback=True)).provider == "cpu"


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_box_dilation_equals_max_filter(radius):
    from PIL import Image, ImageFilter

    from scam_runtime.composite import _box_dilate
    mask = np.random.default_rng(radius).random((60, 50)) > 0.97
    ref = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0
    assert np.array_equal(_box_dilate(mask, radius), ref)
