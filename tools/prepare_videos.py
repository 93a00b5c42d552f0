"""Videos -> the on-disk layout every benchmark reads: frames/<id>.jpg, audio/<id>.wav, a list.

    python tools/prepare_videos.py --videos raw/ --out data/music --every 1.0 --rate 22050

For every file under --videos that PyAV can decode (any container, frame rate or sample rate):
* --centre (default): one frame at the centre of the clip, id = file stem;
* --every S: a frame every S seconds starting at S/2, ids ``<stem>_<k:04d>``;
and for each frame a mono wav at --rate Hz of --seconds centred on the frame's time (shifted to stay
inside the clip, tiled when the clip is shorter). The list file (default ``<out>/videos.txt``) gets
``id`` per line, or ``id,class`` when the videos sit in class sub-folders (``<videos>/<class>/x.mp4``).

Resumable: a finished video leaves ``<out>/.done/<stem>.txt`` (its list lines) and is skipped next
time. Files that cannot be decoded are listed at the end (and in ``<out>/undecodable.txt``).
"""
import argparse
import logging
import os
import sys
from typing import List, Optional, Tuple

import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.audio import cut_window, decode_av  # noqa: E402
from datasets.records import canonical_class  # noqa: E402

logger = logging.getLogger("prepare_videos")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", required=True, help="folder of videos (searched recursively)")
    p.add_argument("--out", required=True, help="data root: writes frames/, audio/, the list")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--every", type=float, default=0.0, help="one frame every S seconds")
    mode.add_argument("--centre", action="store_true", help="one frame at the clip centre (default)")
    p.add_argument("--rate", type=int, default=22050, help="sample rate of the written wavs")
    p.add_argument("--seconds", type=float, default=3.0, help="audio window around each frame")
    p.add_argument("--list", default="videos.txt", help="list file name, written under --out")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    return p.parse_args(argv)


def find_videos(folder: str) -> List[Tuple[str, Optional[str]]]:
    """All files under folder, sorted, with the class given by their sub-folder (None at top)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        cls = None if rel == "." else canonical_class(rel.split(os.sep)[0])
        out.extend((os.path.join(dirpath, f), cls) for f in sorted(filenames)
                   if not f.startswith("."))
    return out


def frame_times(duration: float, every: float) -> List[float]:
    """Times of the frames to extract: the centre, or every S seconds from S/2."""
    if every <= 0:
        return [duration / 2]
    n = max(int(duration // every), 1)
    return [min(every * (k + 0.5), duration) for k in range(n)]


def decode_frames(path: str, times: List[float]):
    """The decoded video frames (PIL RGB) nearest to each time (seconds from the video stream's
    start), one sequential decode; also returns that start in container time (seconds)."""
    import av
    best = [None] * len(times)
    best_d = [float("inf")] * len(times)
    with av.open(path) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        stream = c.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        for frame in c.decode(stream):
            t = (frame.time or 0.0) - start
            for i, target in enumerate(times):
                d = abs(t - target)
                if d < best_d[i]:
                    best[i], best_d[i] = frame, d
            if t > times[-1] + 1.0:
                break
    if any(f is None for f in best):
        raise ValueError("no video frame decoded")
    return [f.to_image() for f in best], start


def video_duration(path: str) -> float:
    import av
    with av.open(path) as c:
        if c.duration:
            return c.duration / 1e6
        s = c.streams.video[0] if c.streams.video else c.streams.audio[0]
        if s.duration:
            return float(s.duration * s.time_base)
    return 0.0


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def _atomic(path, write):
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def process(path: str, cls: Optional[str], args) -> List[str]:
    """Write the frames and wavs of one video; return its list lines."""
    stem = os.path.splitext(os.path.basename(path))[0]
    audio, audio_start = decode_av(path, args.rate, with_start=True)
    duration = video_duration(path) or len(audio) / args.rate
    times = frame_times(duration, args.every)
    images, video_start = decode_frames(path, times)
    lines = []
    for k, (t, img) in enumerate(zip(times, images)):
        id_ = stem if args.every <= 0 else f"{stem}_{k:04d}"
        # t counts from the video stream's start; the audio array from the audio stream's start
        wave = cut_window(audio, args.rate, args.seconds, max(t + video_start - audio_start, 0.0))
        _atomic(os.path.join(args.out, "frames", id_ + ".jpg"),
                lambda p: img.convert("RGB").save(p, format="JPEG", quality=args.quality))
        _atomic(os.path.join(args.out, "audio", id_ + ".wav"),
                lambda p: sf.write(p, wave, args.rate, subtype="PCM_16", format="WAV"))
        lines.append(id_ if cls is None else f"{id_},{cls}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for sub in ("frames", "audio", ".done"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    videos = find_videos(args.videos)
    stems = {}
    for path, _ in videos:  # ids come from file names: two videos must not share one
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise SystemExit(f"two videos would get the id '{stem}': {stems[stem]} and {path}; "
                             "rename one of them")
        stems[stem] = path
    failed, skipped, done_lines = [], 0, []
    for path, cls in tqdm(videos, desc="videos", unit="video"):
        stem = os.path.splitext(os.path.basename(path))[0]
        marker = os.path.join(args.out, ".done", stem + ".txt")
        if os.path.isfile(marker):
            skipped += 1
            with open(marker) as f:
                done_lines.extend(f.read().split())
            continue
        try:
            lines = process(path, cls, args)
        except Exception as e:  # undecodable: reported at the end, never replaced
            failed.append(f"{path}: {type(e).__name__}: {e}")
            continue
        _atomic(marker, lambda p: _write_text(p, "\n".join(lines) + "\n"))
        done_lines.extend(lines)
    _atomic(os.path.join(args.out, args.list),
            lambda p: _write_text(p, "".join(x + "\n" for x in done_lines)))
    report = os.path.join(args.out, "undecodable.txt")
    if failed:
        _atomic(report, lambda p: _write_text(p, "\n".join(failed) + "\n"))
        logger.warning("%d of %d files could not be decoded (listed in %s):\n  %s", len(failed),
                       len(videos), report, "\n  ".join(failed))
    elif os.path.exists(report):
        os.remove(report)
    logger.info("%d videos: %d prepared, %d already done, %d undecodable; %d frames listed in %s",
                len(videos), len(videos) - skipped - len(failed), skipped, len(failed),
                len(done_lines), os.path.join(args.out, args.list))
    return {"prepared": len(videos) - skipped - len(failed), "skipped": skipped,
            "failed": failed, "frames": len(done_lines)}


if __name__ == "__main__":
    main()
