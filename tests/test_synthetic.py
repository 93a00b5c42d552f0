"""Synthetic benchmark: determinism, sizes, annotations vs pixels, audio vs class, streaming."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from datasets import render
from datasets import synthetic as syn
from datasets.image import IMAGENET_MEAN, IMAGENET_STD
from datasets.records import read_list, read_music_json, read_pair_list, read_vggss_json
from utils.config import load_config

S, SR = 64, 8000
SIZES = dict(num_train=20, num_val=10, num_test=40, num_duet=12, num_pairs=15, num_trios=8)
CPU_AUDIO = ["data.audio.seconds=1.0", "data.audio.n_fft=256", "data.audio.hop=125",
             "data.audio.frames=64"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic") / "data")
    syn.write_synthetic(out, seed=3, image_size=S, sample_rate=SR, seconds=1.0, **SIZES)
    return out


@pytest.fixture(scope="module")
def auto_root(tmp_path_factory):
    """A data root that build_synthetic generates itself (the config's settings)."""
    return str(tmp_path_factory.mktemp("synthetic") / "auto")


def _cfg(root, *more):
    return load_config(None, [f"data.root={root}", f"data.image_size={S}",
                              f"data.audio.sample_rate={SR}", *CPU_AUDIO, *more])


def _class_pixels(frame, cls):
    """Pixels of `cls`'s hue (saturated, not dark) in an RGB PIL frame: [H, W] bool."""
    hsv = np.asarray(frame.convert("HSV"), np.float32)
    hue = hsv[..., 0] * 360.0 / 256.0
    diff = np.abs((hue - render.CLASS_SPEC[cls]["hue"] + 180.0) % 360.0 - 180.0)
    return (diff < 12.0) & (hsv[..., 1] > 0.45 * 255) & (hsv[..., 2] > 0.3 * 255)


def _box_mask(box, h, w):
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    m[round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)] = True
    return m


def test_render_is_deterministic_and_keyed():
    a = render.render_item("test", 0, 5, S, SR, 1.0)
    b = render.render_item("test", 0, 5, S, SR, 1.0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.audio, b.audio)
    assert a.objects == b.objects
    for other in (render.render_item("test", 1, 5, S, SR, 1.0), render.render_item("val", 0, 5, S, SR, 1.0),
                  render.render_item("test", 0, 6, S, SR, 1.0)):
        assert not np.array_equal(a.image, other.image)
        assert not np.allclose(a.audio, other.audio)
    assert a.image.shape == (S, S, 3) and a.image.dtype == np.uint8
    assert a.audio.shape == (SR,) and a.audio.dtype == np.float32
    assert np.abs(a.audio).max() <= 1.0


def test_objects_sizes_and_distractors():
    areas = {True: [], False: []}
    on_top = 0
    for i in range(300):
        item = render.render_item("train", 0, i, S, SR, 1.0, num_sources=1 + (i % 4 == 0))
        classes = [o.cls for o in item.objects]
        sounding = [o.cls for o in item.sounding]
        assert len(set(classes)) == len(classes), classes  # distractors never share a class
        lo, hi = render.DISTRACTORS
        assert lo <= len(classes) - len(sounding) <= hi
        on_top += item.objects[-1].sounding and len(sounding) == 1
        for o in item.objects:
            x1, y1, x2, y2 = o.box
            assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0, o.box
            area = (x2 - x1) * (y2 - y1)
            # the in-frame box of a shape of area <= AREA_MAX, at least MIN_VISIBLE of it in view
            assert 0.1 * render.AREA_MIN <= area <= render.AREA_MAX + 0.02, area
            areas[o.sounding].append(area)
    # the sounding object is drawn like the distractors: same sizes, not always on top
    mean_s, mean_d = np.mean(areas[True]), np.mean(areas[False])
    assert 0.1 <= mean_s <= 0.2 and abs(mean_s - mean_d) < 0.02, (mean_s, mean_d)
    assert 0.1 < on_top / 225 < 0.45, on_top


def test_audio_blind_maps_do_not_localize():
    """Highlighting every object (+ a center prior) is far from the sounding object's mask."""
    def ap(score, gt):  # average precision over pixels (ties grouped)
        order = np.argsort(-score.ravel(), kind="stable")
        s, g = score.ravel()[order], gt.ravel()[order] > 0
        last = np.r_[s[1:] != s[:-1], True]
        tp, n = np.cumsum(g)[last], np.arange(1, len(g) + 1)[last]
        return float(np.sum(np.diff(np.r_[0.0, tp / g.sum()]) * tp / n))

    aps = {"objects": [], "center": [], "both": [], "oracle": []}
    for i in range(150):
        item = render.render_item("test", 0, i, S, SR, 1.0)
        gt = render.objects_map(item.objects, S, sounding_only=True)
        every, center = render.objects_map(item.objects, S), render.center_map(S)
        for k, m in (("objects", every), ("center", center), ("both", every + 0.5 * center),
                     ("oracle", gt + 0.01 * center)):
            aps[k].append(ap(m, gt))
    mean = {k: np.mean(v) for k, v in aps.items()}
    assert mean["oracle"] == 1.0 and max(mean["objects"], mean["center"], mean["both"]) < 0.45, mean


def test_annotations_match_pixels(root):
    ann = read_vggss_json(os.path.join(root, "annotations.json"))
    test = read_list(os.path.join(root, "test.txt"), 2, 2)
    everything = json.load(open(os.path.join(root, "all_objects.json")))
    assert len(test) == SIZES["num_test"]
    inside = []
    for e in test:
        cls, boxes = ann[e.id]
        assert e.classes == [cls] and len(boxes) == 1
        sounding = [o for o in everything[e.id] if o["sounding"]]
        assert [o["class"] for o in sounding] == [cls]
        assert np.allclose(sounding[0]["bbox"], boxes[0], atol=1e-5)
        assert cls not in [o["class"] for o in everything[e.id] if not o["sounding"]]
        frame = Image.open(os.path.join(root, "frames", f"{e.id}.jpg"))
        assert frame.size == (S, S)
        pix = _class_pixels(frame, cls)
        box = _box_mask(boxes[0], S, S)
        assert (pix & box).sum() >= 0.08 * box.sum(), e.id  # the object is drawn in its box
        others = np.zeros_like(box)  # distractors (their hues may come close to the class's)
        for o in everything[e.id]:
            if not o["sounding"]:
                others |= _box_mask(o["bbox"], S, S)
        inside.append((pix & box).sum() / max((pix & (box | ~others)).sum(), 1))
    # ... and (JPEG color bleeding aside) not in the background
    assert min(inside) > 0.8 and np.mean(inside) > 0.97, inside


def test_audio_pitch_matches_class(root):
    f0s = np.array([render.CLASS_SPEC[c]["f0"] for c in syn.CLASS_NAMES])
    for e in read_list(os.path.join(root, "test.txt"), 2, 2):
        wave, sr = sf.read(os.path.join(root, "audio", f"{e.id}.wav"), dtype="float32")
        assert sr == SR and wave.ndim == 1 and len(wave) == SR
        spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
        freqs = np.fft.rfftfreq(len(wave), 1.0 / sr)
        band = (freqs > 100) & (freqs < 1500)
        peak = freqs[band][np.argmax(spec[band])]
        nearest = syn.CLASS_NAMES[int(np.argmin(np.abs(np.log(f0s / peak))))]
        assert nearest == e.classes[0], (e.id, peak)


def test_multi_source_lists(root):
    ann = read_vggss_json(os.path.join(root, "annotations.json"))
    for name, k in (("test_pairs.csv", 2), ("test_trios.csv", 3)):
        groups = read_pair_list(os.path.join(root, name))
        assert len(groups) == SIZES["num_" + name[5:10]]
        for g in groups:
            assert len(g) == k and len({e.classes[0] for e in g}) == k
            assert all(ann[e.id][0] == e.classes[0] for e in g)
    duet = read_music_json(os.path.join(root, "test_duet.json"))  # xywh -> xyxy
    everything = json.load(open(os.path.join(root, "all_objects.json")))
    ids = [e.id for e in read_list(os.path.join(root, "test_duet.csv"), 1, 1)]
    assert ids == sorted(duet) and len(ids) == SIZES["num_duet"]
    for id_ in ids:
        sounding = [(o["class"], o["bbox"]) for o in everything[id_] if o["sounding"]]
        assert len(duet[id_]) == 2 and {c for c, _ in duet[id_]} == {c for c, _ in sounding}
        for cls, (box,) in duet[id_]:
            assert np.allclose(box, dict(sounding)[cls], atol=2e-6)


def test_ensure_regenerates_only_on_change(tmp_path):
    out = str(tmp_path / "d")
    small = dict(num_train=2, num_val=2, num_test=6, num_duet=2, num_pairs=2, num_trios=2)
    assert syn.ensure_synthetic(out, image_size=32, sample_rate=SR, **small)
    assert not syn.ensure_synthetic(out, image_size=32, sample_rate=SR, **small)
    assert syn.ensure_synthetic(out, image_size=40, sample_rate=SR, **small)
    assert Image.open(os.path.join(out, "frames", "test_000000.jpg")).size == (40, 40)
    assert syn.read_meta(out)["image_size"] == 40
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with pytest.raises(FileExistsError):
        syn.ensure_synthetic(str(foreign), image_size=32, sample_rate=SR, **small)
    # a root the user wrote (tools/make_synthetic.py) is used when it fits, never replaced
    made = str(tmp_path / "made")
    syn.write_synthetic(made, image_size=32, sample_rate=SR, **small)
    assert not syn.ensure_synthetic(made, image_size=32, sample_rate=SR, **small)
    with pytest.raises(FileExistsError, match=r"'image_size': \(32, 40\).*make_synthetic"):
        syn.ensure_synthetic(made, image_size=40, sample_rate=SR, **small)
    assert syn.read_meta(made)["image_size"] == 32


def test_stream_differs_across_epochs_and_mixes(auto_root):
    ds = syn.build_synthetic(_cfg(auto_root, "data.synthetic_train=50"), "train")
    assert len(ds) == 50 and ds.class_names == syn.CLASS_NAMES
    ds.set_epoch(0)
    a, a2 = ds[7], ds[7]
    ds.set_epoch(1)
    b = ds[7]
    assert np.array_equal(a["image"], a2["image"]) and np.array_equal(a["spec"], a2["spec"])
    assert not np.allclose(a["image"], b["image"]) and not np.allclose(a["spec"], b["spec"])
    assert a["classes"].tolist() == b["classes"].tolist()
    assert a["spec"].shape == (1, 129, 64) and a["image"].shape == (3, S, S)
    assert a["gt"].shape == (1, S, S) and 0.05 * S * S < a["gt"].sum() < 0.6 * S * S
    # streamed items are not the on-disk ones
    disk = syn.build_synthetic(_cfg(auto_root), "train_files")
    assert not any(np.allclose(disk[i]["spec"], a["spec"]) for i in range(10))

    mix = syn.build_synthetic(_cfg(auto_root, "data.synthetic_train=50", "data.num_sources=2"), "train")
    x = mix[3]
    assert x["image"].shape == (3, S, 2 * S) and x["classes"].shape == (2,)
    assert x["classes"][0] != x["classes"][1] and x["frame_slot"].tolist() == [0, 1]
    for n in range(2):  # each source's mask lies in its own frame
        own = x["gt"][n, :, n * S:(n + 1) * S].sum()
        assert own > 0 and x["gt"][n].sum() == own


def test_stream_mask_is_the_drawn_object(auto_root):
    """The streamed gt mask covers the pixels of the sounding class (no flip/crop mismatch)."""
    ds = syn.build_synthetic(_cfg(auto_root, "data.synthetic_train=40", "data.resize_scale=1.0"),
                             "train")
    mean = np.array(IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(3, 1, 1)
    fracs = []
    for i in range(40):
        x = ds[i]
        rgb = ((x["image"].numpy() * std + mean).transpose(1, 2, 0) * 255).clip(0, 255)
        pix = _class_pixels(Image.fromarray(rgb.astype(np.uint8)), ds.class_names[int(x["classes"][0])])
        fracs.append((pix & (x["gt"][0].numpy() > 0)).sum() / max(pix.sum(), 1))
    assert np.mean(fracs) > 0.95, fracs


def test_eval_splits_load(auto_root):
    cfg = _cfg(auto_root)
    for split, k, canvas_w in (("test", 1, S), ("val", 1, S), ("test_pairs", 2, 2 * S),
                               ("test_trios", 3, 3 * S), ("test_duet", 2, S)):
        ds = syn.build_synthetic(cfg, split)
        x = ds[0]
        assert x["image"].shape == (3, S, canvas_w) and x["classes"].shape == (k,), split
        assert (x["gt"].flatten(1).sum(1) > 0).all(), split
    with pytest.raises(ValueError, match="test_duet"):
        syn.build_synthetic(cfg, "nope")
    from datasets import build_dataset  # the registry reaches the same builder
    assert build_dataset(cfg, "test", "synthetic")[0]["id"] == syn.build_synthetic(cfg, "test")[0]["id"]


def test_baseline_maps():
    item = render.render_item("test", 0, 0, S, SR, 1.0)
    every = render.objects_map(item.objects, S)
    only = render.objects_map(item.objects, S, sounding_only=True)
    box = _box_mask(item.sounding[0].box, S, S)
    assert np.array_equal(only > 0, box) and (every[box] == 1).all() and every.sum() > only.sum()
    c = render.center_map(S)
    assert c.shape == (S, S) and c[S // 2, S // 2] > c[0, 0]
