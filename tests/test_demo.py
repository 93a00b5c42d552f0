"""demo.py end to end on generated clips, with a checkpoint whose answer is known by hand.

The checkpoint (tests.fixtures.color_checkpoint) is the quick-start AVGN with AVCT off and
weights set so that the map of a class peaks on that class's color; it loads through the normal
checkpoint path. The clip: a 'disc' moves left to right while its sound plays, a silent 'star'
stays still in the lower half.
"""
import json
import os
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

import demo
from demo import DemoError, select_classes
from tests.fixtures import color_checkpoint, write_clip
from utils.checkpoint import save_checkpoint

W, H, FPS, SECONDS = 128, 96, 15, 3.0


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    clip = str(d / "clip.mp4")
    truth = write_clip(clip, SECONDS, FPS, W, H, sample_rate=44100, sounding="disc",
                       distractor="star")
    ckpt = color_checkpoint(str(d / "color.pth"))
    return {"dir": d, "clip": clip, "truth": truth, "ckpt": ckpt}


def run_demo(assets, out, *extra):
    return demo.main(["--ckpt", assets["ckpt"], "--video", assets["clip"], "--out", str(out)]
                     + list(extra))


def streams(path):
    """(duration s, video frames, video size, rate, audio codec or None) of a media file."""
    with av.open(path) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        a = c.streams.audio[0].codec_context.name if c.streams.audio else None
        return c.duration / 1e6, n, (v.width, v.height), v.average_rate, a


def inside(x, y, box, margin):
    x0, y0, x1, y1 = box
    return x0 - margin <= x < x1 + margin and y0 - margin <= y < y1 + margin


def test_select_classes():
    s = [0.1, 0.9, 0.5, 0.7]
    assert select_classes(s) == [1]
    assert select_classes(s, topk=3) == [1, 3, 2]
    assert select_classes(s, threshold=0.5) == [1, 3, 2]
    assert select_classes(s, topk=2, threshold=0.5) == [1, 3]
    assert select_classes(s, threshold=0.95) == []
    assert select_classes([0.5, 0.5]) == [0]  # ties: lower index first


def test_maps_follow_the_sounding_object(assets, tmp_path):
    out = tmp_path / "out.mp4"
    still = tmp_path / "still.png"
    res = run_demo(assets, out, "--classes", "disc,star", "--every", "0.5", "--still", str(still))
    report = json.loads((tmp_path / "out.json").read_text())
    times = report["times"]
    assert [t["t"] for t in times] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    xs = []
    for t in times:
        disc, star = t["sources"]
        assert (disc["class"], star["class"]) == ("disc", "star")
        assert disc["score"] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=1e-4)
        box = assets["truth"]["box"](t["frame"] / FPS)  # the disc in the frame that was analyzed
        assert inside(*disc["peak"], box, 8), (t, box)
        assert inside(*star["peak"], assets["truth"]["distractor"], 8), t
        xs.append(disc["peak"][0])
    assert all(b >= a for a, b in zip(xs, xs[1:])) and xs[-1] - xs[0] > W / 2, xs
    # the video: every frame, same size and rate, the audio track, the input's duration
    d_in, n_in, size_in, rate_in, _ = streams(assets["clip"])
    d_out, n_out, size_out, rate_out, audio = streams(str(out))
    assert (n_out, size_out, rate_out) == (n_in, size_in, rate_in) == (45, (W, H), FPS)
    assert audio == "aac" and abs(d_out - d_in) < 0.1, (d_in, d_out)
    assert res["frames"] == res["written"] == 45
    # frames are blended: the legend darkens the top-left corner, the background elsewhere stays
    with av.open(assets["clip"]) as a, av.open(str(out)) as b:
        fa = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(float)
        fb = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert fb[2:12, 2:30].mean() < fa[2:12, 2:30].mean() - 30
    assert np.abs(fb[H // 2 - 4:H // 2 + 4, -10:] - fa[H // 2 - 4:H // 2 + 4, -10:]).mean() < 8
    img = Image.open(still)
    assert img.size == (W, H)


def test_auto_classes_batched_equals_one_by_one(assets, tmp_path):
    run_demo(assets, tmp_path / "a.mp4", "--batch-size", "16")
    run_demo(assets, tmp_path / "b.mp4", "--batch-size", "1")
    a = json.loads((tmp_path / "a.json").read_text())["times"]
    b = json.loads((tmp_path / "b.json").read_text())["times"]
    assert [[s["class"] for s in t["sources"]] for t in a] == [["disc"]] * 6
    for ta, tb in zip(a, b):
        assert ta["sources"][0]["peak"] == tb["sources"][0]["peak"]
        assert ta["presence"] == pytest.approx(tb["presence"], abs=1e-4)
    run_demo(assets, tmp_path / "c.mp4", "--threshold", "0.5")
    c = json.loads((tmp_path / "c.json").read_text())["times"]
    assert all([s["class"] for s in t["sources"]] == ["disc"] for t in c)
    run_demo(assets, tmp_path / "d.mp4", "--threshold", "0.2", "--topk", "3")
    d = json.loads((tmp_path / "d.json").read_text())["times"]
    assert all(len(t["sources"]) == 3 and t["sources"][0]["class"] == "disc" for t in d)


def test_other_container_codec_rates(assets, tmp_path):
    """mkv, mpeg4 video at 25 fps, 16-bit PCM audio at 48 kHz (the model reads 11025 Hz)."""
    clip = str(tmp_path / "clip.mkv")
    truth = write_clip(clip, 2.0, 25, 160, 120, sample_rate=48000, codec="mpeg4",
                       audio_codec="pcm_s16le")
    out = tmp_path / "out.mp4"
    demo.main(["--ckpt", assets["ckpt"], "--video", clip, "--out", str(out), "--classes", "disc",
               "--every", "0.4"])
    times = json.loads((tmp_path / "out.json").read_text())["times"]
    assert [t["frame"] for t in times] == [0, 10, 20, 30, 40]
    for t in times:
        assert inside(*t["sources"][0]["peak"], truth["box"](t["frame"] / 25), 10)
    d_in, n_in, _, _, _ = streams(clip)
    d_out, n_out, size, rate, audio = streams(str(out))
    assert (n_out, size, rate, audio) == (n_in, (160, 120), 25, "aac")
    assert abs(d_out - d_in) < 0.1


def test_bad_inputs_are_clear_errors(assets, tmp_path):
    ckpt, clip = assets["ckpt"], assets["clip"]

    def err(ckpt=ckpt, video=clip, *extra):
        with pytest.raises(DemoError) as e:
            demo.main(["--ckpt", ckpt, "--video", video, "--out", str(tmp_path / "o.mp4")]
                      + list(extra))
        return str(e.value)

    silent = str(tmp_path / "silent.mp4")
    write_clip(silent, 1.0, 10, 64, 48, audio=False)
    assert "no audio track" in err(video=silent)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video file\n" * 200)  # fixed bytes: random ones may parse
    assert "cannot read" in err(video=str(junk))
    assert "video not found" in err(video=str(tmp_path / "nope.mp4"))
    msg = err(ckpt, clip, "--classes", "disc,violin")
    assert "unknown class 'violin'" in msg and "cross, diamond, disc" in msg
    # checkpoints of another kind
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    assert "not an AVGN checkpoint" in err(ckpt=str(other))
    blob = open(ckpt, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(blob[:len(blob) // 2])
    assert "truncated" in err(ckpt=str(cut))
    alien = tmp_path / "alien.pth"
    save_checkpoint({"model": {}, "config": {"backbone": "vit"}, "class_names": []}, str(alien))
    assert "config does not fit" in err(ckpt=str(alien))
    good = torch.load(ckpt, weights_only=True)
    good["config"]["model"]["width"] = 8
    wrong = tmp_path / "wrong.pth"
    save_checkpoint(good, str(wrong))
    assert "weights do not fit" in err(ckpt=str(wrong))
    assert not os.path.exists(tmp_path / "o.mp4")


@pytest.mark.parametrize("case", ["class", "audio"])
def test_command_line_error_has_no_traceback(assets, tmp_path, case):
    video = assets["clip"]
    extra = ["--classes", "violin"] if case == "class" else []
    if case == "audio":
        video = str(tmp_path / "silent.mp4")
        write_clip(video, 1.0, 10, 64, 48, audio=False)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, os.path.join(root, "demo.py"), "--ckpt", assets["ckpt"],
                        "--video", video, "--out", str(tmp_path / "o.mp4")] + extra,
                       capture_output=True, text=True, timeout=120, cwd=root)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr + p.stdout
    assert ("unknown class 'violin'" if case == "class" else "no audio track") in p.stderr


def test_class_agnostic_model_gives_one_sound_map(assets, tmp_path):
    from datasets.synthetic import CLASS_NAMES
    from models import build_model
    from utils.config import load_config, to_dict
    cfg = load_config("configs/synthetic.yaml", ["model.name=ezvsl", "model.num_classes=10"])
    torch.manual_seed(0)
    ckpt = str(tmp_path / "ezvsl.pth")
    save_checkpoint({"model": build_model(cfg).state_dict(), "config": to_dict(cfg),
                     "class_names": CLASS_NAMES}, ckpt)
    demo.main(["--ckpt", ckpt, "--video", assets["clip"], "--out", str(tmp_path / "o.mp4")])
    times = json.loads((tmp_path / "o.json").read_text())["times"]
    assert all([(s["class"], s["score"]) for s in t["sources"]] == [("sound", None)]
               for t in times)
    assert all(t["presence"] is None for t in times)


def test_outputs_go_to_the_run_folder_and_replace_nothing(assets, tmp_path):
    """Without --out the demo writes under the checkpoint's folder (demo/<video>.mp4, then -1,
    ...), never beside the input; an existing --out needs --overwrite; a class keeps its color
    (its index's) from video to video."""
    from utils.visualize import PALETTE, assign_colors
    ckpt = shutil.copy(assets["ckpt"], tmp_path / "best.pth")
    args = ["--ckpt", str(ckpt), "--video", assets["clip"], "--every", "1.0"]
    beside = sorted(os.listdir(os.path.dirname(assets["clip"])))
    assert demo.main(args)["out"] == str(tmp_path / "demo" / "clip.mp4")
    assert demo.main(args)["out"] == str(tmp_path / "demo" / "clip-1.mp4")
    assert sorted(os.listdir(os.path.dirname(assets["clip"]))) == beside  # nothing beside the input
    with pytest.raises(DemoError, match=r"clip.mp4 and .*clip.json exist; pass --overwrite"):
        demo.main(args + ["--out", str(tmp_path / "demo" / "clip.mp4")])
    demo.main(args + ["--out", str(tmp_path / "demo" / "clip.mp4"), "--overwrite"])
    assert assign_colors([7, 2]) == {7: PALETTE[7], 2: PALETTE[2]}
    assert assign_colors([2, 7]) == {2: PALETTE[2], 7: PALETTE[7]}  # order does not matter
    n = len(PALETTE)
    assert assign_colors([1, 1 + n]) == {1: PALETTE[1], 1 + n: PALETTE[2]}  # never shared
