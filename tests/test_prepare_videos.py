import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from datasets import DataError, build_dataset, read_list
from tests.fixtures import write_test_video
from tools.prepare_videos import main, merge_marker
from utils.config import Config


def test_prepare_videos_every_resume_and_report(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "root"
    os.makedirs(videos / "cello")
    write_test_video(str(videos / "cello" / "clip.mp4"), seconds=2.0, fps=10, sample_rate=16000)
    (videos / "cello" / "broken.mp4").write_bytes(b"not a video")

    r = main(["--videos", str(videos), "--out", str(out), "--every", "0.5", "--rate", "8000",
              "--seconds", "1.0"])
    assert r["prepared"] == 1 and len(r["failed"]) == 1 and "broken.mp4" in r["failed"][0]
    assert "broken.mp4" in (out / "undecodable.txt").read_text()
    entries = read_list(str(out / "videos.txt"), 2, 2)
    assert [e.id for e in entries] == [f"clip_{k:04d}" for k in range(4)]
    assert all(e.classes == ["cello"] for e in entries)
    # frames at 0.25, 0.75, 1.25, 1.75 s: the white bar grows with time
    widths = [(np.asarray(Image.open(out / "frames" / f"{e.id}.jpg").convert("L"))[32] > 100).sum()
              for e in entries]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    wave, sr = sf.read(out / "audio" / "clip_0001.wav")
    assert sr == 8000 and wave.ndim == 1 and len(wave) == 8000 and np.abs(wave).max() > 0.3
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * sr / len(wave) - 440) < 5  # the tone, resampled correctly

    # resumable: a second run skips the finished video and keeps its list lines
    r = main(["--videos", str(videos), "--out", str(out), "--every", "0.5", "--rate", "8000",
              "--seconds", "1.0"])
    assert r["prepared"] == 0 and r["skipped"] == 1 and r["frames"] == 4

    # the prepared root loads through the common pipeline
    (out / "music_solo_train.txt").write_text((out / "videos.txt").read_text())
    cfg = Config()
    cfg.data.root, cfg.data.image_size, cfg.data.val_fraction = str(out), 32, 0.0
    cfg.data.audio.sample_rate, cfg.data.audio.seconds = 8000, 1.0
    s = build_dataset(cfg, "train", "music_solo")[0]
    assert s["image"].shape == (3, 32, 32) and s["spec"].shape == (1, 257, 300)


def test_prepare_videos_center(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "root"
    os.makedirs(videos)
    write_test_video(str(videos / "a.mp4"), seconds=1.0, fps=10)
    r = main(["--videos", str(videos), "--out", str(out), "--center", "--seconds", "3"])
    assert r["frames"] == 1 and (out / "videos.txt").read_text() == "a\n"
    wave, sr = sf.read(out / "audio" / "a.wav")
    assert sr == 22050 and len(wave) == 3 * 22050  # 1-s clip tiled to 3 s


def test_prepare_videos_refuses_two_videos_with_one_id(tmp_path):
    videos = tmp_path / "videos"
    for cls in ("cello", "guitar"):
        os.makedirs(videos / cls)
        write_test_video(str(videos / cls / "a.mp4"), seconds=1.0, fps=10)
    with pytest.raises(DataError, match=r"two videos would get the id 'a'"):
        main(["--videos", str(videos), "--out", str(tmp_path / "root")])


def test_prepare_videos_music_lists(tmp_path):
    from datasets.benchmarks import media_record
    from datasets.audio import load_window
    videos, out = tmp_path / "videos", tmp_path / "root"
    os.makedirs(videos)
    # 25 fps video; MUSIC frame numbers count at 10 fps: frame f is video frame 2.5 f
    write_test_video(str(videos / "vidA.mp4"), seconds=4.0, fps=25, sample_rate=16000,
                     freq=[300, 600, 900, 1200])
    write_test_video(str(videos / "unlisted.mp4"), seconds=1.0, fps=10)
    (tmp_path / "train.txt").write_text("vidA_000_00004,cello\nvidA_001_00031,cello\n"
                                        "gone_000_00001,cello\nvidA_004_00120,cello\n")
    (tmp_path / "test.csv").write_text("vidA_000_00014\n")
    r = main(["--videos", str(videos), "--out", str(out), "--rate", "8000", "--music-lists",
              str(tmp_path / "train.txt"), str(tmp_path / "test.csv")])
    # unlisted video: not decoded; frame 120 (12 s) lies beyond the 4-s video: not written
    assert r["prepared"] == 1 and r["frames"] == 3 and not r["failed"]
    assert sorted(os.listdir(out / "frames")) == ["vidA_000_00004.jpg", "vidA_000_00014.jpg",
                                                  "vidA_001_00031.jpg"]
    assert os.listdir(out / "audio") == ["vidA.wav"]
    for f in (4, 14, 31):  # video frame i = 2.5 f shows a bar of int(96 (i + 1) / 100) pixels
        name = f"vidA_{f // 30:03d}_{f:05d}.jpg"
        width = (np.asarray(Image.open(out / "frames" / name).convert("L"))[32] > 100).sum()
        assert abs(width - int(96 * (round(2.5 * f) + 1) / 100)) <= 2, (f, width)
    # the loader's MUSIC fallback cuts the window centered on frame 31 (3.1 s) from vidA.wav
    rec = media_record(str(out), "vidA_001_00031", ["cello"], music_ids=True, frame_rate=10.0)
    assert rec.audio.endswith("vidA.wav") and rec.audio_offset == 3.1
    w = load_window(rec.audio, 8000, 0.2, rec.audio_offset)  # 3.0-3.2 s: the 4th second's tone
    assert abs(np.argmax(np.abs(np.fft.rfft(w))) * 8000 / len(w) - 1200) < 10
    r = main(["--videos", str(videos), "--out", str(out), "--rate", "8000", "--music-lists",
              str(tmp_path / "test.csv")])
    assert r["skipped"] == 1 and r["prepared"] == 0  # every listed frame is done
    # a list naming one more frame of a finished video: the video is processed again
    (tmp_path / "more.csv").write_text("vidA_000_00025\n")
    r = main(["--videos", str(videos), "--out", str(out), "--rate", "8000", "--music-lists",
              str(tmp_path / "more.csv")])
    assert r["prepared"] == 1 and os.path.isfile(out / "frames" / "vidA_000_00025.jpg")
    # the marker keeps what earlier runs wrote, and the frame beyond the end as known: nothing to do
    assert (out / ".done" / "vidA.txt").read_text().split() == [
        "vidA_000_00004", "vidA_000_00014", "vidA_000_00025", "vidA_001_00031",
        "beyond:vidA_004_00120"]
    r = main(["--videos", str(videos), "--out", str(out), "--rate", "8000", "--music-lists",
              str(tmp_path / "train.txt"), str(tmp_path / "test.csv")])
    assert r["skipped"] == 1 and r["prepared"] == 0 and r["frames"] == 3
    assert (out / "videos.txt").read_text().split() == ["vidA_000_00004", "vidA_000_00014",
                                                        "vidA_001_00031"]
    with pytest.raises(DataError, match=r"--music-lists: .*nope\.txt"):
        main(["--videos", str(videos), "--out", str(out), "--music-lists", str(tmp_path / "nope.txt")])
    (tmp_path / "bad.txt").write_text("not_a_music_id,cello\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: 'not_a_music_id' is not a MUSIC id"):
        main(["--videos", str(videos), "--out", str(out), "--music-lists", str(tmp_path / "bad.txt")])


def test_music_marker_keeps_ids_that_start_with_a_dash():
    # YouTube ids may start with "-": 1888 lines of music_solo_train.txt do, 2372 of
    # music_duet_train.txt
    first = merge_marker([], ["-0gY_000_00001"], ["-0gY_000_09999"])
    assert first == ["-0gY_000_00001", "beyond:-0gY_000_09999"]
    again = merge_marker(first, ["-0gY_000_00002"], [])
    assert again == ["-0gY_000_00001", "-0gY_000_00002", "beyond:-0gY_000_09999"]
    assert merge_marker(again, ["-0gY_000_09999"], []) == [  # now written: no longer beyond
        "-0gY_000_00001", "-0gY_000_00002", "-0gY_000_09999"]


def test_decode_frames_gives_each_time_its_own_frame(tmp_path):
    from tools.prepare_videos import decode_frames
    path = str(tmp_path / "v.mp4")
    write_test_video(path, seconds=4.0, fps=10)  # frame i: a bar of int(96 (i + 1) / 40) pixels
    times = [0.3 * k for k in range(14)] + [3.9, 5.0]  # every third frame; 5.0 s: past the end
    images, start, gaps = decode_frames(path, times)
    assert start == 0.0 and len(images) == len(times)
    for t, img, gap in zip(times, images, gaps):
        i = min(round(t * 10), 39)
        width = (np.asarray(img.convert("L"))[32] > 100).sum()
        assert abs(width - int(96 * (i + 1) / 40)) <= 2, (t, width)
        assert gap == pytest.approx(abs(t - i / 10), abs=1e-6)


def test_prepare_videos_keeps_earlier_videos_and_reads_no_output(tmp_path):
    """A second run into the same --out with other videos keeps the first run's lines in the
    list; --out inside --videos, the demo's and make_lists' files (json, jpg, csv) are not read
    as videos; class folders that would merge ('C++', 'C') are refused; when no file can be
    prepared the command fails."""
    first, second = tmp_path / "first", tmp_path / "second"
    os.makedirs(first / "cello")
    os.makedirs(second / "guitar")
    write_test_video(str(first / "cello" / "a.mp4"), seconds=1.0, fps=10)
    write_test_video(str(second / "guitar" / "b.mp4"), seconds=1.0, fps=10)
    out = second / "prepared"  # inside --videos
    main(["--videos", str(first), "--out", str(out)])
    (second / "guitar" / "b.json").write_text("{}")  # what demo.py once wrote beside a video
    (second / "guitar" / "b.jpg").write_bytes(b"")
    r = main(["--videos", str(second), "--out", str(out)])
    assert r["prepared"] == 1 and not r["failed"]
    assert (out / "videos.txt").read_text() == "b,guitar\na,cello\n"
    os.makedirs(second / "C++")
    os.makedirs(second / "c")
    with pytest.raises(DataError, match=r"class names 'c' and 'C\+\+' .* would both be the class 'c'"):
        main(["--videos", str(second), "--out", str(out)])
    broken = tmp_path / "broken"
    os.makedirs(broken)
    (broken / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"none of the 1 files under .*broken could be prepared"):
        main(["--videos", str(broken), "--out", str(tmp_path / "nothing")])


def test_prepare_videos_removes_what_a_killed_run_left(tmp_path):
    """A temporary frame of a process that no longer runs is removed at the next start; one of a
    live process is not."""
    import subprocess
    import sys
    videos, out = tmp_path / "videos", tmp_path / "root"
    os.makedirs(videos)
    write_test_video(str(videos / "a.mp4"), seconds=1.0, fps=10)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    os.makedirs(out / "frames")
    (out / "frames" / f"b.jpg.tmp.{dead}").write_bytes(b"half a jpeg")
    (out / "frames" / f"c.jpg.tmp.{os.getpid()}").write_bytes(b"being written")
    main(["--videos", str(videos), "--out", str(out)])
    assert sorted(os.listdir(out / "frames")) == ["a.jpg", f"c.jpg.tmp.{os.getpid()}"]
