"""tools.get_data end to end, offline: yt-dlp downloads generated mp4s from a loopback HTTP
server, archives are real tar.gz / zip shards, a run is killed with SIGKILL and resumed."""
import functools
import http.server
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import ROOT
from tests.fixtures import write_test_video
from tools.get_data import STATE, TMP, main
from tools.get_data_sources import GetDataError
from tools.prepare_videos import decode_frames

yt_dlp = pytest.importorskip("yt_dlp")  # the only reason to skip: the URL source needs it

FREQS = [300, 600, 900, 1200]  # Hz of each second of a test video
YTIDS = ["a-b_c1d2e3f", "Zz_9-8y7X6w"]  # YouTube ids hold '_' and '-'
MUSIC_VIDEO = "m_u-s1cVid0"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection to an address other than 127.0.0.1 fails the test."""
    connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and address[0] != "127.0.0.1":
            raise AssertionError(f"a test tried to reach {address}")
        return connect(self, address)
    monkeypatch.setattr(socket.socket, "connect", guarded)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges (ffmpeg seeks with them); paths in `held` wait for `gate`,
    a path in `busy` answers 503 as many times as it says."""
    gate, held, busy = threading.Event(), set(), {}

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):  # yt-dlp reads a page's start, hangs up
            pass

    def send_head(self):
        name = self.path.lstrip("/")
        if name in self.held:
            self.gate.wait(30)
        if self.busy.get(name):
            self.busy[name] -= 1
            self.send_error(503, "busy")
            return None
        path, rng = self.translate_path(self.path), self.headers.get("Range")
        m = re.match(r"bytes=(\d*)-(\d*)$", rng or "")
        if not m or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a = int(m[1] or 0)
        b = min(int(m[2]) if m[2] else size - 1, size - 1)
        with open(path, "rb") as f:
            f.seek(a)
            data = f.read(b - a + 1)
        self.send_response(206)
        for k, v in (("Content-Type", "video/mp4"), ("Content-Range", f"bytes {a}-{b}/{size}"),
                     ("Content-Length", str(len(data))), ("Accept-Ranges", "bytes")):
            self.send_header(k, v)
        self.end_headers()
        return io.BytesIO(data)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Folder of the served videos: two 'YouTube' videos and a MUSIC video, 4 s each."""
    folder = tmp_path_factory.mktemp("videos")
    for name in YTIDS + [MUSIC_VIDEO]:
        write_test_video(str(folder / f"{name}.mp4"), seconds=4.0, fps=10, size=(64, 48),
                         sample_rate=16000, freq=FREQS)
    return folder


@pytest.fixture(scope="module")
def server(videos):
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(videos)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{ytid}}.mp4"
    Handler.gate.set()
    httpd.shutdown()


def bar(path):
    """Width of the test video's growing white bar in a frame (grows with time)."""
    return int((np.asarray(Image.open(path).convert("L"))[24] > 100).sum())


def tone(path):
    wave, sr = sf.read(path)
    return np.argmax(np.abs(np.fft.rfft(wave))) * sr / len(wave)


def state(root):
    return {e["id"]: e for e in map(json.loads, open(os.path.join(root, STATE)))}


def media(root):
    """{relative path: bytes} of everything under frames/ and audio/."""
    return {f"{sub}/{n}": open(os.path.join(root, sub, n), "rb").read()
            for sub in ("frames", "audio") for n in sorted(os.listdir(os.path.join(root, sub)))}


COMMON = ["--segment", "3", "--seconds", "0.8", "--rate", "8000", "--tries", "1",
          "--backoff", "0", "--workers", "2"]


@pytest.mark.parametrize("ffmpeg", ["auto", "none"])
def test_url_source_segments_404_coverage_and_rerun(tmp_path, videos, server, ffmpeg):
    """VGGSound ids through yt-dlp: the segment's center frame and audio, a 404 recorded as
    unavailable, an id not on YouTube left alone, a rerun that does nothing. ffmpeg 'auto' cuts
    with ffmpeg when one is installed, 'none' always with PyAV: both give the same items."""
    meta, root = tmp_path / "meta", tmp_path / "root"
    meta.mkdir()
    ids = [f"{YTIDS[0]}_000001", f"{YTIDS[1]}_000000", "gone0000000_000010", "sample0001"]
    (meta / "vggss_test.csv").write_text("\n".join(ids) + "\n")
    args = ["--benchmark", "vggss", "--metadata", str(meta), "--root", str(root),
            "--url-template", server, "--ffmpeg", ffmpeg, *COMMON]
    r = main(args + ["--limit", "1"])  # a first try: one video
    assert r["done"] == 1 and r["left for later (--limit)"] == 2
    r = main(args)
    assert r["done before"] == 1 and r["done"] == 1 and r["unavailable"] == 1
    assert r["not on YouTube (use --archive)"] == 1
    s = state(root)
    assert s["gone0000000_000010"]["status"] == "unavailable"
    assert "HTTP Error 404" in s["gone0000000_000010"]["reason"]
    assert "sample0001" not in s
    # segment [1, 4] -> frame at 2.5 s, audio 2.1..2.9 s (900 Hz); [0, 3] -> 1.5 s (600 Hz)
    for id_, center, hz in ((ids[0], 2.5, 900), (ids[1], 1.5, 600)):
        src, _, _ = decode_frames(str(videos / f"{id_[:11]}.mp4"), [center])
        src_path = tmp_path / "src.png"
        src[0].save(src_path)
        assert abs(bar(root / "frames" / f"{id_}.jpg") - bar(src_path)) <= 1
        assert abs(tone(root / "audio" / f"{id_}.wav") - hz) < 20
        assert sf.info(str(root / "audio" / f"{id_}.wav")).frames == round(0.8 * 8000)
        assert s[id_]["files"] == [f"frames/{id_}.jpg", f"audio/{id_}.wav"]
    assert not os.path.exists(root / TMP)
    cov = json.load(open(root / "get_data_coverage.json"))["vggss_test.csv"]
    assert (cov["items"], cov["present"], cov["missing"]) == (4, 2, 2)
    assert (root / "vggss_test.available.csv").read_text() == ids[0] + "\n" + ids[1] + "\n"

    r = main(args)  # done and unavailable ids are not tried again
    assert r["videos"] == 0 and r["done before"] == 2 and r["unavailable before"] == 1


def test_failed_ids_are_tried_again(tmp_path, server):
    """A 503 is a failure, not 'unavailable': --tries per run with backoff, and every rerun tries
    again; the tries add up in the state file."""
    meta, root = tmp_path / "meta", tmp_path / "root"
    meta.mkdir()
    id_ = f"{YTIDS[1]}_000000"
    (meta / "vggss_test.csv").write_text(id_ + "\n")
    args = ["--benchmark", "vggss", "--metadata", str(meta), "--root", str(root),
            "--url-template", server, *COMMON, "--tries", "2", "--backoff", "0.1"]
    Handler.busy[f"{YTIDS[1]}.mp4"] = 3
    try:
        r = main(args)
        assert r["failed"] == 1 and "503" in state(root)[id_]["reason"]
        assert state(root)[id_]["tries"] == 2 and Handler.busy[f"{YTIDS[1]}.mp4"] == 1
        r = main(args)  # the first try meets the last 503, the second succeeds
        assert r["done"] == 1 and state(root)[id_]["status"] == "done"
    finally:
        Handler.busy.clear()


def test_url_source_music_whole_videos(tmp_path, server):
    """MUSIC ids: the whole video, the listed frames, audio/<video>.wav; a frame beyond the
    video's end is unavailable; --keep-videos keeps the download."""
    meta, root, kept = tmp_path / "meta", tmp_path / "root", tmp_path / "kept"
    meta.mkdir()
    (meta / "music_solo_train.txt").write_text(f"{MUSIC_VIDEO}_000_00005,cello\n"
                                               f"{MUSIC_VIDEO}_008_00099,cello\n")
    (meta / "music_solo_test.csv").write_text(f"{MUSIC_VIDEO}_002_00025,cello\n")
    r = main(["--benchmark", "music_solo", "--metadata", str(meta), "--root", str(root),
              "--url-template", server, "--keep-videos", str(kept), *COMMON])
    assert r["videos"] == 1 and r["done"] == 2 and r["unavailable"] == 1
    assert state(root)[f"{MUSIC_VIDEO}_008_00099"]["reason"] == "frame beyond the video's end"
    assert bar(root / "frames" / f"{MUSIC_VIDEO}_000_00005.jpg") < \
        bar(root / "frames" / f"{MUSIC_VIDEO}_002_00025.jpg")
    wave, sr = sf.read(root / "audio" / f"{MUSIC_VIDEO}.wav")
    assert sr == 8000 and abs(len(wave) - 4 * 8000) < 800  # the whole sound track
    assert os.listdir(kept) == [f"{MUSIC_VIDEO}.mp4"]
    cov = r["coverage"]
    assert (cov["music_solo_train.txt"]["present"], cov["music_solo_test.csv"]["present"]) == (1, 1)


def test_archive_source_tar_and_zip(tmp_path, videos):
    """Members matched by file stem (the id's clip, or the whole video of a VGGSound id) or by
    --name-regex, one at a time out of a tar.gz and a zip; a file the tool did not write is kept."""
    meta, root = tmp_path / "meta", tmp_path / "root"
    meta.mkdir()
    clip = tmp_path / "clip.mp4"
    write_test_video(str(clip), seconds=3.0, fps=10, size=(64, 48), sample_rate=16000,
                     freq=[500, 700, 900])
    train = [f"{YTIDS[0]}_000001", "clipid00000_000030", "theirs00000_000000", "absent00000_000000"]
    (meta / "vgginstruments_train.txt").write_text("".join(f"{i},cello\n" for i in train))
    (meta / "vgginstruments_test.csv").write_text("sample0001,cello\n")
    shard = tmp_path / "part-0.tar.gz"
    with tarfile.open(shard, "w:gz") as tf:
        tf.add(videos / f"{YTIDS[0]}.mp4", f"full/{YTIDS[0]}.mp4")  # whole video: cut [1, 4]
        tf.add(clip, "clips/clipid00000_000030.mp4")  # the 10-s clip itself: its center
        tf.add(clip, "clips/unlisted.mp4")
    with zipfile.ZipFile(tmp_path / "part-1.zip", "w") as zf:
        zf.write(clip, "x/sample0001.mp4")
    for sub in ("frames", "audio"):
        os.makedirs(root / sub)
    (root / "frames" / "theirs00000_000000.jpg").write_bytes(b"theirs")
    (root / "audio" / "theirs00000_000000.wav").write_bytes(b"theirs")
    (root / "frames" / "sample0001.jpg").write_bytes(b"theirs")  # its wav is missing
    r = main(["--benchmark", "vggsound_instruments", "--metadata", str(meta), "--root", str(root),
              "--archive", str(shard), str(tmp_path / "part-1.zip"), *COMMON])
    assert r["done"] == 3 and r["present before"] == 1 and r["not in the archives"] == 1
    assert (root / "frames" / "theirs00000_000000.jpg").read_bytes() == b"theirs"
    assert (root / "frames" / "sample0001.jpg").read_bytes() == b"theirs"  # never replaced
    assert state(root)["sample0001"]["files"] == ["audio/sample0001.wav"]
    assert abs(tone(root / "audio" / f"{YTIDS[0]}_000001.wav") - 900) < 20
    assert abs(tone(root / "audio" / "clipid00000_000030.wav") - 700) < 20  # 1.1..1.9 s
    assert all(e["source"] == "archive" for e in state(root).values())
    assert not os.path.exists(root / TMP)
    assert r["coverage"]["vgginstruments_train.txt"]["present"] == 3

    # another naming rule: the key is a regex group in the member's path
    with zipfile.ZipFile(tmp_path / "named.zip", "w") as zf:
        zf.write(clip, "videos/absent00000_000000-720p.mp4")
    r = main(["--benchmark", "vggsound_instruments", "--metadata", str(meta), "--root", str(root),
              "--archive", str(tmp_path / "named.zip"), "--name-regex",
              r"(?P<id>[^/]+)-720p\.mp4$", *COMMON])
    assert r["done"] == 1 and r["done before"] == 3
    with pytest.raises(GetDataError, match="no group"):
        main(["--benchmark", "vggsound_instruments", "--metadata", str(meta), "--root",
              str(root), "--archive", str(shard), "--name-regex", "x"])


def test_killed_run_resumes_to_the_same_files(tmp_path, server):
    """SIGKILL while downloads are under way; the rerun ends with the files of an uninterrupted
    run, and nothing half-written was ever in frames/ or audio/."""
    meta = tmp_path / "meta"
    meta.mkdir()
    ids = [f"{YTIDS[0]}_000000", f"{YTIDS[0]}_000001", f"{YTIDS[1]}_000000",
           f"{YTIDS[1]}_000001"]
    (meta / "vggss_test.csv").write_text("\n".join(ids) + "\n")

    def args(root):
        return ["--benchmark", "vggss", "--metadata", str(meta), "--root", str(root),
                "--url-template", server, *COMMON]
    main(args(tmp_path / "whole"))
    expected = media(tmp_path / "whole")
    assert len(expected) == 8

    root = tmp_path / "killed"
    Handler.gate.clear()
    Handler.held.add(f"{YTIDS[1]}.mp4")  # downloads of the second video hang until the gate opens
    proc = subprocess.Popen([sys.executable, "-m", "tools.get_data", *args(root)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 40
        while time.time() < deadline and not (  # recorded, then renamed into place
                os.path.exists(root / STATE) and open(root / STATE).read().count('"done"') >= 2
                and os.path.isdir(root / "audio") and len(media(root)) >= 4):
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        Handler.held.clear()
        Handler.gate.set()
    partial = media(root)
    assert sorted(partial) == sorted(f"{sub}/{i}.{ext}" for i in ids[:2]
                                     for sub, ext in (("frames", "jpg"), ("audio", "wav")))
    assert all(partial[k] == expected[k] for k in partial)  # complete files only
    r = main(args(root))
    assert r["done before"] == 2 and r["done"] == 2
    assert media(root) == expected
    assert not os.path.exists(root / TMP)


def test_coverage_of_the_published_lists(tmp_path, metadata_dir):
    """--coverage-only on the real lists: every line counted, a pair present only when both of
    its clips are, and .available copies in the list's own format."""
    root = tmp_path / "root"
    test = open(os.path.join(metadata_dir, "vggss_test.csv")).read().split()
    pairs = [x.split(",") for x in open(os.path.join(metadata_dir, "vggsound_duet_test.csv"))
             .read().split()]
    have = {test[0], test[5], pairs[3][0], pairs[3][2], pairs[4][0]}
    for sub, ext in (("frames", "jpg"), ("audio", "wav")):
        os.makedirs(root / sub)
        for i in have:
            (root / sub / f"{i}.{ext}").write_bytes(b"x")
    r = main(["--benchmark", "vggss", "vggsound_duet", "--metadata", metadata_dir, "--root",
              str(root), "--coverage-only"])["coverage"]
    assert set(r) == {"vggss_test.csv", "vggsound_duet_test.csv"}  # no training list published
    n_vggss = sum(1 for x in test if x in have)
    assert r["vggss_test.csv"] == {"items": len(test), "present": n_vggss,
                                   "missing": len(test) - n_vggss,
                                   "available_list": "vggss_test.available.csv"}
    assert r["vggsound_duet_test.csv"]["present"] == 1
    assert (root / "vggsound_duet_test.available.csv").read_text() == ",".join(pairs[3]) + "\n"
    assert len(test) == 5158 and r["vggsound_duet_test.csv"]["items"] == len(pairs)


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no list file of vggss"):
        main(["--benchmark", "vggss", "--root", str(tmp_path), "--coverage-only"])
    proc = subprocess.run([sys.executable, "-m", "tools.get_data", "--benchmark", "vggss",
                           "--root", str(tmp_path), "--cookies", str(tmp_path / "none.txt")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --cookies {tmp_path / 'none.txt'}: no such file"]


def test_test_results_say_how_much_of_the_published_list_they_measure(tmp_path):
    """results.json's coverage: the items of the list scored and, when tools.get_data counted
    the published list in data.root, its size and the share (the list given may be the
    `.available` copy under the published name or under its own)."""
    from engine import list_coverage
    from utils.config import Config
    cfg = Config()
    cfg.data.root = str(tmp_path)

    def listed(origin, n):  # a test set: its items and the list they came from
        return type("Listed", (list,), {"origin": origin})(range(n))
    copy = str(tmp_path / "available" / "vggss_test.csv")
    assert list_coverage(cfg, listed(copy, 3)) == {"list": copy, "items": 3}
    (tmp_path / "get_data_coverage.json").write_text(json.dumps(
        {"vggss_test.csv": {"items": 4, "present": 3, "missing": 1}}))
    for origin in (copy, str(tmp_path / "vggss_test.available.csv")):
        assert list_coverage(cfg, listed(origin, 3)) == {
            "list": origin, "items": 3, "published_items": 4, "share": 0.75}


def test_a_second_run_into_one_root_is_refused(tmp_path):
    """Two runs into one --root would share the state file and the temporary folder: the second
    is refused naming the first (its lock), before it writes anything."""
    from utils.run_folder import FolderLock, RunFolderInUse
    meta, root = tmp_path / "meta", tmp_path / "root"
    meta.mkdir()
    root.mkdir()
    (meta / "vggss_test.csv").write_text("abcdefghijk_000001\n")
    lock = FolderLock(str(root), "python -m tools.get_data (the first)", what="--root").acquire()
    try:
        with pytest.raises(RunFolderInUse, match=r"--root .*root is in use by process \d+ .*"
                                                  r"\(python -m tools.get_data \(the first\)\)"):
            main(["--benchmark", "vggss", "--root", str(root), "--metadata", str(meta),
                  "--url-template", "http://127.0.0.1:9/{ytid}.mp4", "--limit", "1"])
    finally:
        lock.release()
    assert sorted(os.listdir(root)) == ["audio", "frames"]  # and no state file
