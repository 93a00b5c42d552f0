import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from datasets import (AudioVisualDataset, ClassBalancedBatchSampler, DataError, MixtureSampler,
                      build_dataset, canonical_class, collate, read_list, read_music_json,
                      read_pair_list, read_vggss_json, read_vggsound_csv, write_list)
from datasets.benchmarks import media_record
from datasets.audio import load_window, log_spectrogram
from datasets.image import Geometry, boxes_to_mask, render_array_mask, render_boxes
from datasets.records import Record, load_mask_pkl
from utils.config import Config, DataConfig


# ----------------------------------------------------------------------------- helpers
def make_item(root, id_, color=(0, 0, 0), box=None, size=(80, 60), seconds=1.0, sr=8000,
              freq=440.0):
    """frames/<id>.jpg (a flat color, a white box at normalized xyxy `box`) + audio/<id>.wav."""
    os.makedirs(os.path.join(root, "frames"), exist_ok=True)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8) + np.asarray(color, dtype=np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        img[round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)] = 255
    Image.fromarray(img).save(os.path.join(root, "frames", id_ + ".jpg"), quality=98)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(os.path.join(root, "audio", id_ + ".wav"),
             (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def small_cfg(root, **data):
    cfg = Config()
    cfg.data.root = str(root)
    cfg.data.image_size = 32
    cfg.data.val_fraction = 0.0
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def vggss_root(tmp_path, n=6):
    """A tiny VGG-SS-layout root: n items of 3 classes, a vggss.json, lists."""
    classes = ["dog barking", "Playing cello", "car, engine"]
    entries, ann = [], []
    for i in range(n):
        id_ = f"v{i}"
        box = (0.25, 0.25, 0.75, 0.75) if i % 2 == 0 else (0.0, 0.5, 0.5, 1.0)
        make_item(tmp_path, id_, color=(25 * i, 0, 0), box=box)
        entries.append((id_, [canonical_class(classes[i % 3])]))
        ann.append({"file": id_, "class": classes[i % 3], "bbox": [list(box)]})
    write_list(entries, tmp_path / "vggsound_single_train.txt")
    write_list(entries, tmp_path / "vggsound_single_test.csv")
    with open(tmp_path / "vggss.json", "w") as f:
        json.dump(ann, f)
    (tmp_path / "vggss_test.csv").write_text("".join(e[0] + "\n" for e in entries))
    with open(tmp_path / "vggsound_duet_test.csv", "w") as f:
        f.write("v0,dog_barking,v1,playing_cello\nv2,car_engine,v3,dog_barking\n")
    return entries


# ----------------------------------------------------------------------------- real metadata
def test_music_solo_boxes_are_xywh(metadata_dir):
    ann = read_music_json(os.path.join(metadata_dir, "music_solo.json"))
    assert len(ann) == 2124
    boxes = [b for sources in ann.values() for _, bs in sources for b in bs]
    assert len(boxes) == 2124
    assert all(x2 > x1 and y2 > y1 for x1, y1, x2, y2 in boxes)  # all non-empty as xywh
    assert all(0.0 <= v <= 1.0 for b in boxes for v in b)
    with open(os.path.join(metadata_dir, "music_solo.json")) as f:
        raw = json.load(f)
    as_xyxy_empty = sum(1 for e in raw if e["bbox"][2] <= e["bbox"][0] or e["bbox"][3] <= e["bbox"][1])
    assert as_xyxy_empty > 1000  # the official code's reading empties most boxes
    test = read_list(os.path.join(metadata_dir, "music_solo_test.csv"), 1, 3)
    assert len(test) == 2124 and all(ann[e.id][0][0] == e.classes[0] for e in test)


def test_music_duet_two_sources(metadata_dir):
    ann = read_music_json(os.path.join(metadata_dir, "music_duet.json"))
    test = read_list(os.path.join(metadata_dir, "music_duet_test.csv"), 1, 1)
    train = read_list(os.path.join(metadata_dir, "music_duet_train.txt"), 3, 3)
    train_classes = {c for e in train for c in e.classes}
    assert len(test) == 1020 and all(len(ann[e.id]) == 2 for e in test)
    assert {c for e in test for c, _ in ann[e.id]} <= train_classes
    x, y, w, h = 0.14967105263157895, 0.30833333333333335, 0.20559210526315788, 0.5833333333333334
    assert ann["HnUOaSfTA6c_000_00000"][0] == ("cello", [(x, y, x + w, y + h)])


def test_vggss_json_counts_clipping_and_area(metadata_dir):
    ann = read_vggss_json(os.path.join(metadata_dir, "vggss.json"))
    assert len(ann) == 5158
    assert sum(len(b) for _, b in ann.values()) == 5941
    assert all(0.0 <= v <= 1.0 for _, bs in ann.values() for b in bs for v in b)
    assert ann["Db6Hjt0x28k_000056"][1][0] == (0.0, 0.0, 0.0, 0.0)  # y2 -2.9e16: empty box
    assert boxes_to_mask(ann["Db6Hjt0x28k_000056"][1][:1], 224, 224).sum() == 0
    assert ann["zpWuikVorYg_000032"][0] == "elk_bugling"
    # by hand at 224: x 0.403125*224 = 90.3 -> 90, 0.6*224 = 134.4 -> 134; y 56.7 -> 57, 168
    mask = boxes_to_mask(ann["zpWuikVorYg_000032"][1], 224, 224)
    assert mask.sum() == (134 - 90) * (168 - 57) == 4884
    # class names of the json and of the lists agree once canonical
    single = read_list(os.path.join(metadata_dir, "vggsound_single_test.csv"), 2, 2)
    assert all(ann[e.id][0] == e.classes[0] for e in single)
    pairs = read_pair_list(os.path.join(metadata_dir, "vggsound_duet_test.csv"))
    assert len(pairs) == 5158 and all(ann[a.id][0] == a.classes[0] and ann[b.id][0] == b.classes[0]
                                      for a, b in pairs)


def test_vgginstruments_lists(metadata_dir):
    train = read_list(os.path.join(metadata_dir, "vgginstruments_train.txt"), 2, 2)
    assert len({e.classes[0] for e in train}) == 37
    multi = read_pair_list(os.path.join(metadata_dir, "vgginstruments_multi_test.csv"))
    assert len(multi) == 446 and multi[0][1].id == "sample0190" and multi[0][1].classes == ["steel_guitar"]


def test_real_test_list_missing_media_names_file_and_line(tmp_path, metadata_dir):
    make_item(tmp_path, "-_-TDDxoaAc_000_00000")
    cfg = small_cfg(tmp_path, metadata=metadata_dir)
    with pytest.raises(DataError, match=r"1Ju4S0qeDqw_000_00000\.jpg.*music_solo_test\.csv:2"):
        build_dataset(cfg, "test", "music_solo")
    cfg.data.on_error = "skip"  # for training lists only: a test list is used whole
    with pytest.raises(DataError, match="test lists are used whole"):
        build_dataset(cfg, "test", "music_solo")
    # a subset is evaluated through a list of its own
    os.makedirs(tmp_path / "meta")
    for name in ("music_solo_train.txt", "music_solo.json"):
        os.symlink(os.path.join(metadata_dir, name), tmp_path / "meta" / name)
    with open(os.path.join(metadata_dir, "music_solo_test.csv")) as f:
        (tmp_path / "meta" / "music_solo_test.csv").write_text(f.readline())
    cfg.data.metadata = str(tmp_path / "meta")
    ds = build_dataset(cfg, "test", "music_solo")
    assert len(ds) == 1 and ds.num_dropped == 0 and len(ds.class_names) == 11
    s = ds[0]
    assert s["gt"].shape == (1, 32, 32) and s["gt"].sum() > 0 and s["labels"].sum() == 1


# ----------------------------------------------------------------------------- parsers (hand-made)
def test_list_errors_and_vggsound_csv(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a,cello\nb\n")
    with pytest.raises(DataError, match=r"bad\.txt:2"):
        read_list(str(p), 2, 3)
    with pytest.raises(DataError, match=r"pairs\.csv:1"):
        (tmp_path / "pairs.csv").write_text("a,cello,b\n")
        read_pair_list(str(tmp_path / "pairs.csv"))
    (tmp_path / "vggsound.csv").write_text(
        "---g-f_I2yQ,1,people marching,test\n--0PQM4-hqg,30,\"waterfall burbling\",train\n"
        "--56QUhyDQM,185,\"police car (siren)\",train\n")
    e = read_vggsound_csv(str(tmp_path / "vggsound.csv"), classes=["police car (siren)",
                                                                  "people marching"], split="train")
    assert [(x.id, x.classes) for x in e] == [("--56QUhyDQM_000185", ["police_car_siren"])]
    with pytest.raises(DataError, match="unknown classes"):
        read_vggsound_csv(str(tmp_path / "vggsound.csv"), classes=["no such class"])
    (tmp_path / "b.json").write_text(json.dumps([{"file": "x", "class": "a", "bbox": [[0, 0, 1]]}]))
    with pytest.raises(DataError, match=r"b\.json\[0\] \(x\): malformed box"):
        read_vggss_json(str(tmp_path / "b.json"))


def test_pkl_mask_resized_nearest_and_binarized(tmp_path):
    m = np.zeros((4, 8))
    m[:2, :4] = 3.0  # top-left quarter, non-binary values
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(m, f)
    out = render_array_mask(load_mask_pkl(str(tmp_path / "m.pkl")), Geometry(16, 16, 0, 0, 16, 16, False))
    assert set(np.unique(out)) == {0.0, 1.0} and out[:8, :8].all() and out.sum() == 64


# ----------------------------------------------------------------------------- images and canvases
def test_flip_moves_box_mask():
    g = Geometry(40, 40, 4, 4, 32, 32, False)
    a = render_boxes([(0.1, 0.2, 0.4, 0.6)], g)
    b = render_boxes([(0.1, 0.2, 0.4, 0.6)], Geometry(40, 40, 4, 4, 32, 32, True))
    assert a.sum() == b.sum() > 0 and np.array_equal(b, a[:, ::-1])
    assert a[:, :16].sum() == a.sum()  # left box stays left unflipped, moves right flipped
    assert b[:, 16:].sum() == b.sum()


def test_train_masks_follow_the_image(tmp_path):
    """Random crop + flip: the white box in the image is exactly where the gt mask is."""
    box = (0.0, 0.1, 0.4, 0.9)
    make_item(tmp_path, "a", box=box, size=(100, 60))
    rec = media_record(str(tmp_path), "a", ["x"], boxes=[[box]])
    ds = AudioVisualDataset([(rec,)], ["x"], DataConfig(image_size=40), train=True)
    flips = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[0]
        white = s["image"].mean(0) > 1.0  # normalized white ~ 2.2, black ~ -1.8
        gt = s["gt"][0] > 0
        assert (white == gt).float().mean() > 0.97  # all but the resampled edge pixels
        flips.add(bool(gt[:, -1].any()))
    assert flips == {True, False}  # both flipped and unflipped crops were seen


def test_concat_canvas_masks_in_own_frame(tmp_path):
    vggss_root(tmp_path)
    cfg = small_cfg(tmp_path)
    ds = build_dataset(cfg, "test", "vggsound_duet")
    s = ds[0]
    assert s["image"].shape == (3, 32, 64) and s["gt"].shape == (2, 32, 64)
    assert s["frame_slot"].tolist() == [0, 1] and s["id"] == "v0+v1"
    assert s["gt"][0, :, :32].sum() > 0 and s["gt"][0, :, 32:].sum() == 0
    assert s["gt"][1, :, 32:].sum() > 0 and s["gt"][1, :, :32].sum() == 0
    # v0 box (0.25..0.75)^2 -> 16 x 16 pixels in the left frame; v1 (0..0.5, 0.5..1) in the right
    assert s["gt"][0].sum() == 256 and s["gt"][1, 16:, 32:48].all()
    assert s["classes"].tolist() == [ds.class_names.index("dog_barking"),
                                     ds.class_names.index("playing_cello")]
    assert s["labels"].sum() == 2 and s["spec"].shape == (1, 257, 300)
    v = build_dataset(cfg, "test", "vggss")[1]  # bare ids: the class comes from vggss.json
    assert v["classes"].tolist() == [ds.class_names.index("playing_cello")]


def test_single_canvas_two_sources(tmp_path):
    make_item(tmp_path, "vid_000_00007")
    with open(tmp_path / "music_duet.json", "w") as f:
        json.dump([{"file": "vid_000_00007", "class_src1": "cello", "bbox_src1": [0, 0, 0.5, 1],
                    "class_src2": "violin", "bbox_src2": [0.5, 0, 0.5, 1]}], f)
    (tmp_path / "music_duet_test.csv").write_text("vid_000_00007\n")
    write_list([("vid_000_00007", ["cello", "violin"])], tmp_path / "music_duet_train.txt")
    ds = build_dataset(small_cfg(tmp_path), "test", "music_duet")
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and s["frame_slot"].tolist() == [0, 0]
    assert s["gt"][0, :, :16].all() and s["gt"][0, :, 16:].sum() == 0 and s["gt"][1, :, 16:].all()
    with pytest.raises(ValueError, match="cannot mix"):
        build_dataset(small_cfg(tmp_path, num_sources=2), "train", "music_duet")


def test_collate_pads():
    def sample(n, index):
        return {"image": torch.zeros(3, 8, 16), "spec": torch.zeros(1, 4, 5), "labels": torch.ones(3),
                "classes": torch.arange(n), "gt": torch.ones(n, 8, 16),
                "frame_slot": torch.arange(n), "id": str(index), "index": index}
    b = collate([sample(1, 7), sample(2, 3)])
    assert b["classes"].tolist() == [[0, -1], [0, 1]] and b["frame_slot"].tolist() == [[0, -1], [0, 1]]
    assert b["gt"].shape == (2, 2, 8, 16) and b["gt"][0, 1].sum() == 0 and b["gt"][0, 0].all()
    assert b["index"].tolist() == [7, 3] and b["id"] == ["7", "3"] and b["image"].shape == (2, 3, 8, 16)


# ----------------------------------------------------------------------------- audio
def test_spectrogram_shape_and_finite():
    sr, n = 22050, 66150
    for wave in (np.zeros(n), np.sign(np.sin(np.arange(n) * 0.3)) * 1.0,
                 np.clip(5 * np.random.default_rng(0).standard_normal(n), -1, 1), np.zeros(100)):
        s = log_spectrogram(wave.astype(np.float32))
        assert s.shape == (1, 257, 300) and torch.isfinite(s).all()
    assert log_spectrogram(np.zeros(n, np.float32), freq_bins=128, frames=100).shape == (1, 128, 100)


def test_released_frontend_is_the_released_spectrogram():
    """data.audio.frontend=released: the released datasets.py's log spectrogram, written out as
    it is there (scipy.signal.spectrogram, nperseg 512, noverlap 274, log(+1e-7), then its
    audio transform's Normalize(0, 12)): 257 x 276 for 3 s at 22.05 kHz."""
    from scipy import signal
    wave = np.clip(0.3 * np.random.default_rng(1).standard_normal(66150), -1, 1).astype(np.float32)
    released = np.log(signal.spectrogram(wave, 22050, nperseg=512, noverlap=274)[2] + 1e-7) / 12.0
    s = log_spectrogram(wave, n_fft=512, hop=238, frames=276, log_mean=0.0, log_std=12.0,
                        frontend="released", sample_rate=22050)
    assert released.shape == (257, 276) and s.shape == (1, 257, 276)
    torch.testing.assert_close(s[0], torch.from_numpy(released.astype(np.float32)))
    stft = log_spectrogram(wave, n_fft=512, hop=238, frames=276, log_mean=0.0, log_std=12.0)
    assert (stft - s).abs().max() > 0.1  # another window, centering and scaling
    with pytest.raises(ValueError, match="frontend must be one of"):
        log_spectrogram(wave, frontend="scipy")


def test_audio_window_center_tile_resample(tmp_path):
    sr = 8000
    ramp = (np.arange(10 * sr) / (10 * sr)).astype(np.float32)  # value = time / 10 s
    sf.write(tmp_path / "r.wav", ramp, sr, subtype="FLOAT")
    w = load_window(str(tmp_path / "r.wav"), sr, 2.0, center=3.0)
    assert len(w) == 2 * sr and abs(w[0] - 0.2) < 1e-3 and abs(w[-1] - 0.4) < 1e-3
    w = load_window(str(tmp_path / "r.wav"), sr, 2.0, center=9.9)  # shifted to stay inside
    assert abs(w[-1] - 1.0) < 1e-3
    w = load_window(str(tmp_path / "r.wav"), 4000, 2.0)  # clip center, resampled
    assert len(w) == 8000 and abs(w[4000] - 0.5) < 5e-3
    sf.write(tmp_path / "s.wav", ramp[:sr // 2], sr)
    w = load_window(str(tmp_path / "s.wav"), sr, 2.0)  # 0.5 s tiled to 2 s
    assert len(w) == 2 * sr and np.allclose(w[: sr // 2], w[sr // 2: sr])
    with pytest.raises(DataError, match="nope.wav"):
        load_window(str(tmp_path / "nope.wav"), sr, 2.0)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000garbage")
    with pytest.raises(DataError, match="cannot decode audio .*bad.wav"):
        load_window(str(tmp_path / "bad.wav"), sr, 2.0)


def test_audio_window_from_video_container(tmp_path):
    from datasets.audio import cut_window, decode_av
    from tests.fixtures import write_test_video
    path, sr = str(tmp_path / "v.mp4"), 16000
    hz = [300, 600, 900, 1200, 1500, 1800]  # one tone per second
    write_test_video(path, seconds=6.0, fps=5, sample_rate=sr, freq=hz)

    def dominant(w, rate):
        return np.argmax(np.abs(np.fft.rfft(w))) * rate / len(w)

    whole, start = decode_av(path, sr, with_start=True)
    for center in (-5.0, -1.0, 0.2, 2.5, 4.5, 5.9, 7.0):  # outside, near the ends, inside (seek)
        w = load_window(path, sr, 1.0, center)
        ref = cut_window(whole, sr, 1.0, center - start)  # the whole stream decoded, same timeline
        assert len(w) == sr and np.abs(w - ref).max() < 1e-3, center
    assert abs(dominant(load_window(path, sr, 1.0, 3.5), sr) - 1200) < 10
    assert abs(dominant(load_window(path, 8000, 1.0, 1.5), 8000) - 600) < 10  # resampled
    write_test_video(str(tmp_path / "w.mp4"), seconds=5.0, fps=5, sample_rate=sr, freq=hz)
    assert abs(dominant(load_window(str(tmp_path / "w.mp4"), sr, 0.5), sr) - 900) < 10  # 2.25-2.75 s


def test_music_id_falls_back_to_video_wav(tmp_path):
    sr = 8000
    os.makedirs(tmp_path / "audio")
    sf.write(tmp_path / "audio" / "vid.wav", (np.arange(20 * sr) / (20 * sr)).astype(np.float32),
             sr, subtype="FLOAT")
    rec = media_record(str(tmp_path), "vid_003_00095", ["x"], music_ids=True, frame_rate=10.0)
    assert rec.audio.endswith("vid.wav") and rec.audio_offset == 9.5
    w = load_window(rec.audio, sr, 1.0, rec.audio_offset)
    assert abs(w[sr // 2] - 9.5 / 20) < 1e-3


def test_missing_wav_raises_with_name_and_line(tmp_path):
    vggss_root(tmp_path)
    os.remove(tmp_path / "audio" / "v3.wav")
    cfg = small_cfg(tmp_path)
    with pytest.raises(DataError, match=r"audio/v3\.wav.*vggsound_single_test\.csv:4"):
        build_dataset(cfg, "test", "vggsound_single")
    with pytest.raises(DataError, match=r"audio/v3\.wav.*vggsound_single_train\.txt:4"):
        build_dataset(cfg, "train", "vggsound_single")
    cfg.data.on_error = "skip"  # drops the item from the training list, not from a test list
    train = build_dataset(cfg, "train", "vggsound_single")
    assert len(train) == 5 and train.num_dropped == 1 and "v3" not in [it[0].id for it in train.items]
    with pytest.raises(DataError, match=r"audio/v3\.wav.*vggsound_single_test\.csv:4"):
        build_dataset(cfg, "test", "vggsound_single")
    (tmp_path / "audio" / "v3.wav").write_bytes(b"corrupt")  # exists but undecodable: raises
    ds = build_dataset(cfg, "test", "vggsound_single")
    with pytest.raises(DataError, match=r"v3\.wav.*vggsound_single_test\.csv:4"):
        ds[3]


def test_unknown_class_and_name(tmp_path):
    vggss_root(tmp_path)
    cfg = small_cfg(tmp_path)
    with pytest.raises(DataError, match="unknown class 'car_engine'.*csv:3"):
        build_dataset(cfg, "test", "vggsound_single", class_names=["dog_barking", "playing_cello"])
    with pytest.raises(ValueError, match="known: .*music_duet"):
        build_dataset(cfg, "train", "nope")
    os.remove(tmp_path / "vggsound_single_train.txt")
    with pytest.raises(DataError, match="vggsound_single_train.txt.*vggsound.csv"):
        build_dataset(cfg, "train", "vggss")


# ----------------------------------------------------------------------------- training mixtures
def test_mixture_sampler_distinct_classes_and_seeded():
    rng = np.random.default_rng(0)
    classes = [[c] for c in rng.integers(0, 5, 400)] + [[1, 2]] * 20
    m = MixtureSampler(classes, k=3, seed=1)
    p0 = m.pairs(0)
    assert p0.shape == (420, 2)
    for i, (a, b) in enumerate(p0):
        assert len({*classes[i], *classes[a], *classes[b]}) == len(classes[i]) + len(classes[a]) + len(classes[b])
    assert np.array_equal(p0, MixtureSampler(classes, k=3, seed=1).pairs(0))
    assert not np.array_equal(p0, m.pairs(1))
    assert not np.array_equal(p0, MixtureSampler(classes, k=3, seed=2).pairs(0))
    with pytest.raises(ValueError):
        MixtureSampler([[0], [0]], k=2)


def test_training_mixture_and_val_split(tmp_path):
    entries = vggss_root(tmp_path, n=9)
    cfg = small_cfg(tmp_path, num_sources=2, val_fraction=0.34)
    train, val = build_dataset(cfg, "train", "vggsound_duet"), build_dataset(cfg, "val", "vggsound_duet")
    assert len(train) == 6 and len(val) == 3
    assert not {it[0].id for it in train.items} & {it[0].id for it in val.items}
    s = train[0]
    assert s["image"].shape == (3, 32, 64) and len(set(s["classes"].tolist())) == 2
    assert s["gt"].sum() == 0  # training lists carry no boxes
    assert val[0]["image"].shape == (3, 32, 64)  # val mirrors the pair test
    a = [train[i]["id"] for i in range(6)]
    train.set_epoch(0)
    assert a == [train[i]["id"] for i in range(6)]
    assert torch.equal(train[1]["image"], train[1]["image"])  # same seed and epoch: same sample
    assert {e[0] for e in entries} == {it[0].id for it in train.items} | {it[0].id for it in val.items}


def test_mixture_peak_limited(tmp_path, monkeypatch):
    import datasets.dataset as D
    for i in range(2):
        make_item(tmp_path, f"m{i}", freq=300 + 200 * i)
    recs = [media_record(str(tmp_path), f"m{i}", [f"c{i}"]) for i in range(2)]
    ds = AudioVisualDataset([(r,) for r in recs], ["c0", "c1"], DataConfig(image_size=32),
                            train=True, num_sources=2)
    loud = [ds.load_audio(r) * 3 for r in recs]
    monkeypatch.setattr(ds, "load_audio", lambda r: loud[int(r.id[1])])  # audio made in memory
    waves = []
    spec = D.spectrogram_from_config
    monkeypatch.setattr(D, "spectrogram_from_config", lambda w, c: waves.append(w) or spec(w, c))
    ds[0]
    assert np.abs(waves[0]).max() == pytest.approx(1.0)
    assert np.allclose(waves[0], (loud[0] + loud[1]) / np.abs(loud[0] + loud[1]).max())


def test_class_balanced_batches():
    classes = [i % 8 for i in range(64)] + [0] * 16
    s = ClassBalancedBatchSampler(classes, batch_size=8, seed=0)
    batches = list(s)
    assert len(batches) == 10 and len({i for b in batches for i in b}) == 80
    assert all(len({classes[i] for i in b}) == 8 for b in batches[:8])
    s.set_epoch(1)
    assert list(s) != batches
    r0 = list(ClassBalancedBatchSampler(classes, 4, 0, num_replicas=2, rank=0))
    r1 = list(ClassBalancedBatchSampler(classes, 4, 0, num_replicas=2, rank=1))
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}


def test_epoch_reaches_persistent_workers(tmp_path):
    vggss_root(tmp_path)
    cfg = small_cfg(tmp_path, num_sources=2)
    ds = build_dataset(cfg, "train", "vggsound_duet")
    loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=1, persistent_workers=True,
                                         collate_fn=collate)
    seen = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader))["id"])
        assert seen[-1] == [ds[i]["id"] for i in range(6)]
    assert len({tuple(x) for x in seen}) > 1


def test_record_hooks_allow_in_memory_items():
    class Rendered(AudioVisualDataset):
        def load_frame(self, record):
            return Image.new("RGB", (50, 40), (255, 0, 0))

        def load_audio(self, record):
            return np.zeros(int(self.audio_cfg.seconds * self.audio_cfg.sample_rate), np.float32)

        def check_record(self, record):
            return None

    rec = Record(id="r", frame="", audio="", classes=["a"], boxes=[[(0.0, 0.0, 0.5, 0.5)]])
    s = Rendered([(rec,)], ["a", "b"], DataConfig(image_size=16), train=False)[0]
    assert s["gt"][0].sum() == 64 and s["labels"].tolist() == [1.0, 0.0] and s["index"] == 0


@pytest.mark.parametrize("entry, message", [
    ({"file": "a", "class": 3, "bbox": [[0, 0, 1, 1]]}, "class must be a non-empty string"),
    ({"file": "a", "class": "cat", "bbox": [[0, 0, 1]]}, "malformed box"),
    ({"file": "a", "class": "cat", "bbox": {"x": 1}}, "bbox must be a list"),
])
def test_malformed_vggss_entries_name_file_and_entry(tmp_path, entry, message):
    path = tmp_path / "vggss.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match=rf"vggss\.json\[0\] \(a\): {message}"):
        read_vggss_json(str(path))
    path.write_text(json.dumps([{"file": "a", "class": "cat", "bbox": [[0, 0, 1, 1]]}] * 2))
    with pytest.raises(DataError, match=r"vggss\.json\[1\] \(a\): 'a' is annotated twice"):
        read_vggss_json(str(path))


def test_skip_drops_malformed_training_lines(tmp_path):
    vggss_root(tmp_path)
    cfg = small_cfg(tmp_path)
    path = tmp_path / "vggsound_single_train.txt"
    good = path.read_text()
    path.write_text(good + "only_an_id\nx,y,z,w\n")
    with pytest.raises(DataError, match=r"vggsound_single_train\.txt:\d+: expected 2\.\.3"):
        build_dataset(cfg, "train", "vggsound_single")
    cfg.data.on_error, cfg.data.val_fraction = "skip", 0.0
    path.write_text(good)
    n = len(build_dataset(cfg, "train", "vggsound_single"))
    path.write_text(good + "only_an_id\nx,y,z,w\n")
    assert len(build_dataset(cfg, "train", "vggsound_single")) == n


def test_val_carve_out_takes_whole_clips():
    """Frames of one clip (<stem>_0003, MUSIC's <video>_<seg>_<frame>) never land in both train
    and val; about data.val_fraction of the entries are val."""
    from datasets.benchmarks import _split_val, clip_of
    from datasets.records import ListEntry
    assert clip_of("violin_07_0003") == "violin_07" and clip_of("violin_07") == "violin_07"
    assert clip_of("abc_12_340", music_ids=True) == "abc" and clip_of("abc_12_340") == "abc_12_340"
    assert clip_of("0042") == "0042" and clip_of("x-Y_z_000030") == "x-Y_z_000030"
    assert clip_of("train_000012") == "train_000012"  # the synthetic ids: one item, one clip
    entries = [ListEntry(f"clip{c}_{k:04d}", ["a"], "") for c in range(40) for k in range(5)]
    train, val = _split_val(entries, 0.1)
    assert not {clip_of(e.id) for e in train} & {clip_of(e.id) for e in val}
    assert len(val) == 20 and len(train) + len(val) == len(entries)
