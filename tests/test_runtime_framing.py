"""Subject-centred framing: the canvas on the person as the training photos frame people,
padding where it leaves the frame, plate pixels outside untouched, a steady box on video."""
import numpy as np
import pytest
from conftest import make_plate
from PIL import Image

from scam_runtime.errors import UsageError
from scam_runtime.framing import MIN_ZOOM, SUBJECT_FILL, BoxSmoother, person_box, separate_people, subject_fit
from scam_runtime.geometry import Fit
from scam_runtime.replacer import ReplaceOptions, SubjectReplacer

MODEL = (128, 85)


def standing(frame_hw, top, height, centre_x, width=None):
    """A label map with one person box (body, a face on top)."""
    labels = np.zeros(frame_hw, np.uint8)
    width = width or height // 3
    labels[top:top + height, centre_x - width // 2:centre_x + width // 2] = 2
    labels[top:top + height // 8, centre_x - width // 4:centre_x + width // 4] = 1
    return labels


def test_person_box():
    labels = standing((100, 80), 10, 60, 40, 20)
    assert person_box(labels) == (10.0, 30.0, 70.0, 50.0)
    assert person_box(np.zeros((5, 5), np.uint8)) is None


def test_a_person_at_half_a_1080p_plate_fills_the_canvas_like_a_training_photo():
    labels = standing((1080, 1920), 270, 540, 700)
    framed = subject_fit(labels.shape, MODEL, person_box(labels))
    rows = np.flatnonzero(framed.labels_to_model(labels).any(axis=1))
    assert abs(len(rows) - SUBJECT_FILL * MODEL[0]) <= 2            # 118 rows of 128
    assert abs((rows[0] + rows[-1]) / 2 - MODEL[0] / 2) <= 1.5         # centred
    cols = np.flatnonzero(framed.labels_to_model(labels).any(axis=0))
    assert abs((cols[0] + cols[-1]) / 2 - MODEL[1] / 2) <= 1.5
    letterboxed = Fit.compute(labels.shape, MODEL, "letterbox").labels_to_model(labels)
    assert np.flatnonzero(letterboxed.any(axis=1)).size <= 25          # what the whole plate gave it


def test_a_frame_framed_like_a_training_photo_is_letterboxed():
    labels = standing((827, 550), 40, 760, 270)                         # CCP's framing: 0.92 of the height
    assert subject_fit(labels.shape, MODEL, person_box(labels)) == Fit.compute(labels.shape, MODEL, "letterbox")
    small = standing((827, 550), 100, round(760 / (MIN_ZOOM + 0.05)), 270)
    assert subject_fit(small.shape, MODEL, person_box(small)) != Fit.compute(small.shape, MODEL, "letterbox")


def test_the_canvas_is_padded_where_the_box_leaves_the_frame():
    labels = standing((720, 1280), 0, 400, 60, 120)                    # at the top left corner
    frame = np.full((720, 1280, 3), 200, np.uint8)
    fit = subject_fit(labels.shape, MODEL, person_box(labels))
    assert fit.top > 0 and fit.left > 0                                  # the frame starts inside the canvas
    image, model_labels = fit.image_to_model(frame), fit.labels_to_model(labels)
    assert (image[:, :fit.top] == -1).all() and (image[:, :, :fit.left] == -1).all()   # black padding
    assert (model_labels[:fit.top] == 0).all()                          # background padding
    assert np.abs(image[:, fit.top + 2:, fit.left + 2:] - (200 / 127.5 - 1)).max() < 1e-6


@pytest.mark.parametrize("hw, box", [((1080, 1920), (500, 900, 600, 940)), ((2160, 3840), (100, 3700, 400, 3800)),
                                     ((480, 640), (0, 0, 480, 640))])
def test_the_windowed_resample_equals_the_whole_frames(hw, box):
    """Only the canvas's window is resampled: within one code of resampling the whole frame."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    fit = subject_fit(hw, MODEL, box)
    whole = np.asarray(Image.fromarray(frame).resize((fit.scaled_w, fit.scaled_h), Image.BILINEAR))
    expected = fit._place(whole, 0).astype(np.float32) / 127.5 - 1
    got = fit.image_to_model(frame).transpose(1, 2, 0)
    assert np.abs(got - expected).max() * 127.5 <= 1.0 + 1e-4


def test_plate_pixels_outside_the_person_stay_and_the_person_is_framed(small_bundle, tmp_path):
    make_plate(tmp_path, 1, seed=3, audio=False)
    actor = np.asarray(Image.open(tmp_path / "actor.png"))
    actor_labels = np.asarray(Image.open(tmp_path / "actor_mask.png"))
    replacer = SubjectReplacer(small_bundle, ReplaceOptions(fit="subject"), warn=lambda m: None)
    subject = replacer.encode_subject(actor, actor_labels)
    plate = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    labels = standing(plate.shape[:2], 400, 300, 1500)
    result = replacer.process(plate, labels, subject)
    assert np.array_equal(result.composite[result.matte == 0], plate[result.matte == 0])
    assert (result.matte[labels > 0] > 0.9).all()                     # the whole person is generated
    prepared = replacer.prepare_frame(plate, labels)
    model_hw = (replacer.bundle.height, replacer.bundle.width)
    assert [c.fit for c in prepared.crops] == [subject_fit(plate.shape[:2], model_hw, person_box(labels))]
    with pytest.raises(UsageError, match="fit must be one of subject, letterbox, crop"):
        ReplaceOptions(fit="zoom")


def test_people_apart_are_separate_and_a_cut_head_or_a_speck_is_not():
    two = np.maximum(standing((200, 300), 20, 160, 60), standing((200, 300), 30, 150, 220))
    people = separate_people(two)
    assert len(people) == 2 and people[0][:, :150].any() and not people[0][:, 150:].any()
    assert np.array_equal(people[0] | people[1], two > 0)
    cut = standing((200, 300), 20, 160, 60)
    cut[38:41] = 0                                                       # the head a few rows off its body
    assert len(separate_people(cut)) == 1
    speck = two.copy()
    speck[100:102, 100:102] = 2                                          # nearer the left person
    people = separate_people(speck)
    assert len(people) == 2 and people[0][100, 100] and not people[1][100, 100]
    assert separate_people(np.zeros((10, 10), np.uint8)) == []


def test_several_people_get_a_canvas_each_in_one_batch(small_bundle, tmp_path):
    make_plate(tmp_path, 1, seed=3, audio=False)
    actor = np.asarray(Image.open(tmp_path / "actor.png"))
    actor_labels = np.asarray(Image.open(tmp_path / "actor_mask.png"))
    plate = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    labels = np.maximum(standing(plate.shape[:2], 300, 540, 500), standing(plate.shape[:2], 320, 520, 1400))
    model_hw = None
    for people, canvases in (("each", 2), ("together", 1)):
        replacer = SubjectReplacer(small_bundle, ReplaceOptions(people=people), warn=lambda m: None)
        model_hw = (replacer.bundle.height, replacer.bundle.width)
        prepared = replacer.prepare_frame(plate, labels)
        assert len(prepared.crops) == canvases
        result = replacer.process(plate, labels, replacer.encode_subject(actor, actor_labels))
        assert np.array_equal(result.composite[result.matte == 0], plate[result.matte == 0])
        assert (result.matte[labels > 0] > 0.9).all()                 # both people generated
        assert np.array_equal(result.composite[result.matte == 1], result.generated[result.matte == 1])
    each = SubjectReplacer(small_bundle, ReplaceOptions(people="each")).prepare_frame(plate, labels).crops
    for crop, centre in zip(each, (500, 1400)):                           # each canvas framed on its person
        box = person_box(np.where(crop.people, labels, 0))
        assert crop.fit == subject_fit(plate.shape[:2], model_hw, box)
        assert abs((box[1] + box[3]) / 2 - centre) < 2
    with pytest.raises(UsageError, match="people must be one of each, together"):
        ReplaceOptions(people="some")


def test_the_box_is_steady_follows_cuts_and_always_holds_the_person():
    rng = np.random.default_rng(0)
    smoother = BoxSmoother()
    raw, framed = [], []
    for _ in range(60):                                                  # a person standing, box noise ±4 px
        y0, x0 = 200 + rng.normal(0, 4), 600 + rng.normal(0, 4)
        box = (y0, x0, y0 + 500, x0 + 180)
        raw.append(box)
        framed.append(smoother(box))
    centre = lambda b: np.array([((y0 + y1) / 2, (x0 + x1) / 2) for y0, x0, y1, x1 in b])  # noqa: E731
    assert np.abs(np.diff(centre(framed[10:]), 2, axis=0)).mean() < 0.6 * np.abs(np.diff(centre(raw[10:]), 2,
                                                                                           axis=0)).mean()
    for r, f in zip(raw, framed):                                         # never smaller than the person
        assert f[0] <= r[0] and f[1] <= r[1] and f[2] >= r[2] and f[3] >= r[3]
    cut = (100.0, 1500.0, 400.0, 1600.0)                                  # another shot: starts afresh
    assert smoother(cut) == cut
    assert smoother(None) is not None                                     # a frame without a person keeps the box


def test_video_box_smoothing_is_opt_in_and_runs(small_bundle, tmp_path):
    from scam_runtime import VideoOptions, replace_video
    make_plate(tmp_path, 4, seed=2, audio=False)
    replacer = SubjectReplacer(small_bundle, warn=lambda m: None)
    assert VideoOptions().box_smoothing is False          # chunks and resumed runs equal one whole run
    report = replace_video(tmp_path / "in.mkv", tmp_path / "actor.png", tmp_path / "out.mkv", replacer=replacer,
                           progress="none", options=VideoOptions(subject_mask=tmp_path / "actor_mask.png",
                                                                 masks=str(tmp_path / "masks"), codec="ffv1",
                                                                 box_smoothing=True))
    assert report.frames == 4
