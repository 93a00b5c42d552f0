"""Items per second of tools.get_data through its archive and its URL (yt-dlp) source.

    python -m benchmarks.bench_get_data                  # 12 clips, about 2 minutes on 2 cores
    python -m benchmarks.bench_get_data --clips 4 --workers 1

Data: clips like VGGSound's (10 s, 640x360 at 25 fps, h264 + aac 44.1 kHz stereo; moving
shapes with grain, about YouTube's 360p bitrate) named <ytid>.mp4, ids <ytid>_000000, and one
60-s clip of the same kind with 90 listed MUSIC frames (MUSIC's lists name 1.5 frames per second
of video). Each item: the frame at the segment's center (JPEG q95) and a 3-s 22.05-kHz wav.
* per-item phases (one thread): decoding (duration, center frame, audio) vs writing (window,
  JPEG, wav), the functions tools.get_data runs;
* archive source: an uncompressed tar of the clips, --workers threads;
* URL source: a loopback HTTP server (127.0.0.1) and yt-dlp, a segment download through ffmpeg
  when one is found, and --ffmpeg none (the whole video, cut with PyAV). Loopback transfers are
  free: YouTube's own request time and throttling (see --rate-limit) come on top.
"""
import argparse
import functools
import http.server
import json
import logging
import os
import tempfile
import threading
import time
from fractions import Fraction

import numpy as np

from datasets.audio import cut_window, decode_av
from tests.fixtures import _audio_frames, _encode, synthetic_frame
from tests.test_get_data import Handler
from tools.get_data import main as get_data
from tools.get_data_sources import find_ffmpeg
from tools.prepare_videos import _save_jpg, _save_wav, decode_frames, video_duration


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=12, help="10-s clips to generate")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="thread counts")
    return p.parse_args(argv)


def write_real_clip(path, seconds=10.0, size=(640, 360), fps=25, sample_rate=44100, seed=0):
    """A clip that decodes like a YouTube 360p video: moving shapes on a smooth background plus
    grain, h264 (crf 23) + aac stereo."""
    import av
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.asarray(synthetic_frame(rng, w + 200, h))
    with av.open(path, "w") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps), options={"crf": "23",
                                                                  "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a_s = c.add_stream("aac", rate=sample_rate, layout="stereo")
        frames = []
        for i in range(int(seconds * fps)):
            img = base[:, 2 * i % 200:2 * i % 200 + w].astype(np.int16)
            img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)  # grain
            frames.append(av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8),
                                                     format="rgb24"))
        _encode(c, vs, frames)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 1000) * t) \
            + 0.05 * rng.standard_normal(len(t))
        _encode(c, a_s, _audio_frames(np.stack([wave, 0.8 * wave]).astype(np.float32),
                                      sample_rate, "stereo"))


def phases(paths, out):
    """Seconds decoding and writing the center item of each clip, one thread."""
    decode = write = 0.0
    for k, path in enumerate(paths):
        t0 = time.perf_counter()
        duration = video_duration(path)
        images, video_start, _ = decode_frames(path, [duration / 2])
        audio, audio_start = decode_av(path, 22050, with_start=True)
        t1 = time.perf_counter()
        wave = cut_window(audio, 22050, 3.0, duration / 2 + video_start - audio_start)
        _save_jpg(images[0], os.path.join(out, f"{k}.jpg"), 95)
        _save_wav(wave, os.path.join(out, f"{k}.wav"), 22050)
        write += time.perf_counter() - t1
        decode += t1 - t0
    return decode, write


def timed(argv):
    r = get_data(argv)
    return r.get("done", 0), r["seconds"]


def main(argv=None):
    args = parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    d = tmp.name
    videos, meta = os.path.join(d, "videos"), os.path.join(d, "meta")
    os.makedirs(videos)
    os.makedirs(meta)
    ids = [f"bench{k:06d}_000000" for k in range(args.clips)]
    t0 = time.perf_counter()
    for k, id_ in enumerate(ids):
        write_real_clip(os.path.join(videos, id_[:11] + ".mp4"), seed=k)
    write_real_clip(os.path.join(videos, "musicvideo1.mp4"), seconds=60.0, seed=99)
    size = np.mean([os.path.getsize(os.path.join(videos, i[:11] + ".mp4")) for i in ids])
    print(f"generated {args.clips} clips (10 s, 640x360, 25 fps, h264 + aac, {size / 1e6:.2f} MB "
          f"each) and a 60-s clip in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} cpus")
    logging.getLogger("avgn").disabled = True  # the tool's own log lines
    results = {"clips": args.clips, "clip_mb": size / 1e6}

    os.makedirs(os.path.join(d, "phases"))
    dec, wr = phases([os.path.join(videos, i[:11] + ".mp4") for i in ids],
                     os.path.join(d, "phases"))
    results["phases"] = {"decode_s_per_item": dec / len(ids), "write_s_per_item": wr / len(ids),
                         "decode_share": dec / (dec + wr)}
    print(f"per item, one thread: decode {dec / len(ids):.3f} s, write {wr / len(ids):.3f} s "
          f"(decode {100 * dec / (dec + wr):.0f} % of the item's time)")
    outs = [os.path.join(d, "phases", f"0.{e}") for e in ("jpg", "wav")]
    results["bytes_per_item"] = {"jpg": os.path.getsize(outs[0]), "wav": os.path.getsize(outs[1])}

    import tarfile
    shard = os.path.join(d, "clips.tar")
    with tarfile.open(shard, "w") as tf:
        for i in ids:
            tf.add(os.path.join(videos, i[:11] + ".mp4"), f"clips/{i}.mp4")
    with open(os.path.join(meta, "vggss_test.csv"), "w") as f:
        f.writelines(i + "\n" for i in ids)
    base = ["--benchmark", "vggss", "--metadata", meta, "--backoff", "0"]
    for w in args.workers:
        n, s = timed(base + ["--root", os.path.join(d, f"arch{w}"), "--archive", shard,
                             "--workers", str(w)])
        results[f"archive_workers{w}"] = n / s
        print(f"archive source (tar), {w} worker(s): {n} items in {s:.1f} s = {n / s:.2f} items/s")

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=videos))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{{ytid}}.mp4"
    modes = (["auto"] if find_ffmpeg("auto") else []) + ["none"]
    for mode in modes:
        for w in args.workers:
            n, s = timed(base + ["--root", os.path.join(d, f"url{mode}{w}"), "--url-template",
                                 url, "--ffmpeg", mode, "--workers", str(w)])
            what = "segment via ffmpeg" if mode == "auto" else "whole video, PyAV cut"
            results[f"url_{mode}_workers{w}"] = n / s
            print(f"URL source (yt-dlp, loopback, {what}), {w} worker(s): {n} items in {s:.1f} s "
                  f"= {n / s:.2f} items/s")
    httpd.shutdown()

    with open(os.path.join(meta, "music_solo_train.txt"), "w") as f:
        f.writelines(f"musicvideo1_{k // 30:03d}_{int(k * 6.6):05d},cello\n" for k in range(90))
    n, s = timed(["--benchmark", "music_solo", "--metadata", meta, "--root",
                  os.path.join(d, "music"), "--archive", videos, "--workers", "1"])
    results["music_s_per_video_minute"] = s
    print(f"MUSIC (a 60-s video, {n} frames + its whole wav, folder source, 1 worker): {s:.1f} s "
          "per minute of video")
    print(json.dumps(results))
    tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
