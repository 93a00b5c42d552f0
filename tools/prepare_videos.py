"""Videos -> the on-disk layout every benchmark reads: frames/<id>.jpg, audio/<id>.wav, a list.

    python -m tools.prepare_videos --videos raw/ --out data/mine --every 1.0 --rate 22050
    python -m tools.prepare_videos --videos music_videos/ --out data/music \
        --music-lists data/music/metadata/music_*_train.txt data/music/metadata/music_*_test.csv

For every file under --videos that PyAV can decode (any container, frame rate or sample rate):
* --center (default): one frame at the center of the clip, id = file stem;
* --every S: a frame every S seconds starting at S/2, ids ``<stem>_<k:04d>``;
and for each frame a mono wav at --rate Hz of --seconds centered on the frame's time (shifted to stay
inside the clip, tiled when the clip is shorter). The list file (default ``<out>/videos.txt``) gets
``id`` per line, or ``id,class`` when the videos sit in class sub-folders (``<videos>/<class>/x.mp4``).
* --music-lists: the frames the MUSIC lists name, ids ``<video>_<segment>_<frame>`` with frame
  numbers counted at --frame-rate (10) from the start of the video, and the whole sound track of
  each video as ``audio/<video>.wav`` (sample 0 = the video's start), from which the loader cuts
  the window centered on each frame. Videos no list names are not decoded.

Resumable: a finished video leaves ``<out>/.done/<stem>.txt`` (its list lines) and is skipped next
time; the list keeps the videos an earlier run prepared into the same --out. Files that cannot be
decoded are listed at the end (and in ``<out>/undecodable.txt``); when none could be prepared the
command fails (exit code 2). Pictures, wavs, lists and JSON files under --videos (what this tool,
tools.make_lists and demo.py write) and --out itself, when it lies inside --videos, are not read.
"""
import argparse
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf

from datasets import DataError, read_list
from utils.errors import run_cli
from datasets.audio import cut_window, decode_av
from datasets.benchmarks import MUSIC_ID
from datasets.records import ClassNames
from utils.files import remove_stale, write_atomic
from utils.logger import logger, progress, setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", required=True, help="folder of videos (searched recursively)")
    p.add_argument("--out", required=True, help="data root: writes frames/, audio/, the list")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--every", type=float, default=0.0, help="one frame every S seconds")
    mode.add_argument("--center", "--centre", action="store_true",
                      help="one frame at the clip center (default)")
    mode.add_argument("--music-lists", nargs="+", default=None,
                      help="MUSIC list files: extract the frames they name (<video>_<seg>_<frame>)")
    p.add_argument("--frame-rate", type=float, default=10.0,
                   help="frames per second the MUSIC frame numbers count (--music-lists)")
    p.add_argument("--rate", type=int, default=22050, help="sample rate of the written wavs")
    p.add_argument("--seconds", type=float, default=3.0, help="audio window around each frame")
    p.add_argument("--list", default="videos.txt", help="list file name, written under --out")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = p.parse_args(argv)
    if args.frame_rate <= 0:
        p.error(f"--frame-rate must be positive, got {args.frame_rate}")
    return args


def stem_of(path: str) -> str:
    """A video's id: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


# files that are no video: what this tool, tools.make_lists and demo.py write, lists, pictures
NOT_VIDEO = (".jpg", ".jpeg", ".png", ".wav", ".json", ".txt", ".csv", ".tsv", ".yaml", ".pth",
             ".log", ".md")


def find_videos(folder: str, skip: Optional[str] = None) -> List[Tuple[str, Optional[str]]]:
    """All files under folder, sorted, with the class given by their sub-folder (None at top).
    Hidden files, NOT_VIDEO extensions and the folder `skip` (our own --out, when it lies
    inside) are left out. Two class folders whose names would be one class but differ beyond
    case and punctuation ('C++', 'C') raise DataError."""
    out, names = [], ClassNames()
    skip = skip and os.path.abspath(skip)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.abspath(os.path.join(dirpath, d)) != skip)
        rel = os.path.relpath(dirpath, folder)
        cls = None if rel == "." else names.key(rel.split(os.sep)[0], os.path.join(
            folder, rel.split(os.sep)[0]))
        out.extend((os.path.join(dirpath, f), cls) for f in sorted(filenames)
                   if not f.startswith(".") and not f.lower().endswith(NOT_VIDEO))
    return out


def frame_times(duration: float, every: float) -> List[float]:
    """Times of the frames to extract: the center, or every S seconds from S/2."""
    if every <= 0:
        return [duration / 2]
    n = max(int(duration // every), 1)
    return [min(every * (k + 0.5), duration) for k in range(n)]


def music_frames(list_paths: List[str]) -> Dict[str, Dict[str, int]]:
    """{video: {id: frame number}} of the MUSIC ids (``<video>_<segment>_<frame>``) in the lists."""
    out = {}
    for path in list_paths:
        try:
            entries = read_list(path, 1, 3)
        except DataError as e:  # missing or malformed list: one line, no traceback
            raise DataError(f"--music-lists: {e}") from None
        for e in entries:
            m = MUSIC_ID.match(e.id)
            if m is None:
                raise DataError(f"{e.where}: '{e.id}' is not a MUSIC id "
                                "<video>_<segment>_<frame>")
            out.setdefault(m["video"], {})[e.id] = int(m["frame"])
    return out


def decode_frames(path: str, times: List[float]):
    """The decoded video frames (PIL RGB) nearest to each time (seconds from the video stream's
    start; ascending), one sequential decode that converts each chosen frame once. Returns
    (images, start of the video stream in container time, |frame time - time| per time)."""
    import av
    images, gaps, last = [], [], [None, None]  # last: (frame, its PIL image)

    def take(frame, t, target):  # one PIL image per decoded frame, however many times use it
        if last[0] is not frame:  # `last` holds the frame, so `is` cannot match a recycled one
            last[:] = [frame, frame.to_image()]
        images.append(last[1])
        gaps.append(abs(t - target))

    with av.open(path) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        stream = c.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        prev = None  # (frame, t) of the previous decoded frame
        for frame in c.decode(stream):
            t = (frame.time or 0.0) - start
            while len(images) < len(times) and t >= times[len(images)]:
                target = times[len(images)]  # between the previous frame and this one
                if prev is not None and target - prev[1] < t - target:
                    take(*prev, target)
                else:
                    take(frame, t, target)
            if len(images) == len(times):
                break
            prev = (frame, t)
        if prev is None and not images:
            raise ValueError("no video frame decoded")
        while len(images) < len(times):  # times after the last frame: the last frame
            take(*prev, times[len(images)])
    return images, start, gaps


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


def _save_jpg(img, path, quality):
    write_atomic(path, lambda p: img.convert("RGB").save(p, format="JPEG", quality=quality))


def _save_wav(wave, path, rate):
    write_atomic(path, lambda p: sf.write(p, wave, rate, subtype="PCM_16", format="WAV"))


def process_music(path: str, frames: Dict[str, int], args):
    """The listed frames of one MUSIC video and its whole sound track; return (the ids written,
    the ids beyond the video's end)."""
    stem = stem_of(path)
    ids = sorted(frames, key=frames.get)
    images, video_start, gaps = decode_frames(path, [frames[i] / args.frame_rate for i in ids])
    beyond = [i for i, g in zip(ids, gaps) if g > 1.0 / args.frame_rate]
    if beyond:  # the video is shorter than the list says (trimmed or another upload): not written
        logger.warning("%s: %d listed frames lie beyond the video's end and are not written "
                       "(first: %s)", path, len(beyond), beyond[0])
        keep = [k for k, g in enumerate(gaps) if g <= 1.0 / args.frame_rate]
        ids, images = [ids[k] for k in keep], [images[k] for k in keep]
    audio, audio_start = decode_av(path, args.rate, with_start=True)
    shift = int(round((audio_start - video_start) * args.rate))  # sample 0 = the video's start
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    for id_, img in zip(ids, images):
        _save_jpg(img, os.path.join(args.out, "frames", id_ + ".jpg"), args.quality)
    _save_wav(audio, os.path.join(args.out, "audio", stem + ".wav"), args.rate)
    return ids, beyond


BEYOND = "beyond:"  # marker prefix of a listed frame beyond the video's end (ids have no ':')


def merge_marker(known: List[str], written: List[str], beyond: List[str]) -> List[str]:
    """A MUSIC video's marker lines after processing some of its frames: every id written, now or
    before, then BEYOND + id for each listed frame found beyond the video's end (not written)."""
    now = set(written) | set(beyond)
    written_before = {k for k in known if not k.startswith(BEYOND) and k not in now}
    beyond_before = {k[len(BEYOND):] for k in known if k.startswith(BEYOND)} - now
    return (sorted(set(written) | written_before)
            + [BEYOND + b for b in sorted(set(beyond) | beyond_before)])


def process(path: str, cls: Optional[str], args) -> List[str]:
    """Write the frames and wavs of one video; return its list lines."""
    stem = stem_of(path)
    audio, audio_start = decode_av(path, args.rate, with_start=True)
    duration = video_duration(path) or len(audio) / args.rate
    times = frame_times(duration, args.every)
    images, video_start, _ = decode_frames(path, times)
    lines = []
    for k, (t, img) in enumerate(zip(times, images)):
        id_ = stem if args.every <= 0 else f"{stem}_{k:04d}"
        # t counts from the video stream's start; the audio array from the audio stream's start
        wave = cut_window(audio, args.rate, args.seconds, max(t + video_start - audio_start, 0.0))
        _save_jpg(img, os.path.join(args.out, "frames", id_ + ".jpg"), args.quality)
        _save_wav(wave, os.path.join(args.out, "audio", id_ + ".wav"), args.rate)
        lines.append(id_ if cls is None else f"{id_},{cls}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if not os.path.isdir(args.videos):
        raise FileNotFoundError(f"--videos {args.videos}: no such folder")
    videos = find_videos(args.videos, skip=args.out)
    if not videos:
        raise DataError(f"--videos {args.videos}: no video under it")
    for sub in ("frames", "audio", ".done"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
        for path in remove_stale(os.path.join(args.out, sub)):
            logger.warning("removed %s, left by an interrupted run", path)
    wanted = music_frames(args.music_lists) if args.music_lists else None
    if wanted is not None:
        have = {stem_of(p) for p, _ in videos}
        missing = sorted(set(wanted) - have)
        if missing:
            logger.warning("%d of the %d videos the lists name are not under %s (first: %s)",
                           len(missing), len(wanted), args.videos, missing[0])
        videos = [(p, c) for p, c in videos if stem_of(p) in wanted]
    numbered = [stem_of(p) for p, _ in videos if re.search(r"_\d{4}$", stem_of(p))]
    if numbered and wanted is None and args.every <= 0:
        logger.warning("%d video names end in _<4 digits>, as the ids of --every frames do: %s is "
                       "taken for a frame of the clip %s by the val carve-out and tools.make_lists "
                       "(datasets.benchmarks.clip_of); rename them with '-' (%s)", len(numbered),
                       numbered[0], numbered[0][:-5], numbered[0][:-5] + "-" + numbered[0][-4:])
    stems = {}
    for path, _ in videos:  # ids come from file names: two videos must not share one
        stem = stem_of(path)
        if stem in stems:
            raise DataError(f"two videos would get the id '{stem}': {stems[stem]} and {path}; "
                            "rename one of them")
        stems[stem] = path
    failed, skipped, done_lines = [], 0, []
    for path, cls in progress(videos, desc="videos", unit="video", leave=True):
        stem = stem_of(path)
        # marker: the ids written, one per line; MUSIC: also BEYOND + id for listed frames that
        # lie beyond the video's end (known, not written)
        marker = os.path.join(args.out, ".done", stem + ".txt")
        known = []
        if os.path.isfile(marker):
            with open(marker) as f:
                known = f.read().split()
            if wanted is None:
                skipped += 1
                done_lines.extend(known)
                continue
            seen = {k[len(BEYOND):] if k.startswith(BEYOND) else k for k in known}
            if set(wanted[stem]) <= seen:  # else: the lists name new frames
                skipped += 1
                done_lines.extend(sorted(set(wanted[stem]) & set(known)))
                continue
        try:
            if wanted is None:
                lines = process(path, cls, args)
            else:
                written, beyond = process_music(path, wanted[stem], args)
                done_lines.extend(written)
                lines = merge_marker(known, written, beyond)
        except Exception as e:  # undecodable: reported at the end, never replaced
            failed.append(f"{path}: {type(e).__name__}: {e}")
            continue
        write_atomic(marker, lambda p: _write_text(p, "\n".join(lines) + "\n"))
        if wanted is None:
            done_lines.extend(lines)
    if wanted is None:  # videos prepared into --out by an earlier run stay listed
        earlier = earlier_lines(args.out, stems)
        if earlier:
            logger.info("%d frames of videos prepared into %s before (not under %s now) stay "
                        "in the list", len(earlier), args.out, args.videos)
        done_lines.extend(earlier)
    write_atomic(os.path.join(args.out, args.list),
                 lambda p: _write_text(p, "".join(x + "\n" for x in done_lines)))
    report = os.path.join(args.out, "undecodable.txt")
    if failed:
        write_atomic(report, lambda p: _write_text(p, "\n".join(failed) + "\n"))
        logger.warning("%d of %d files could not be decoded (listed in %s):\n  %s", len(failed),
                       len(videos), report, "\n  ".join(failed))
    elif os.path.exists(report):
        os.remove(report)
    logger.info("%d videos: %d prepared, %d already done, %d undecodable; %d frames listed in %s",
                len(videos), len(videos) - skipped - len(failed), skipped, len(failed),
                len(done_lines), os.path.join(args.out, args.list))
    if failed and len(failed) == len(videos):
        raise DataError(f"none of the {len(videos)} files under {args.videos} could be prepared "
                        f"(listed in {report}; the first: {failed[0]})")
    return {"prepared": len(videos) - skipped - len(failed), "skipped": skipped,
            "failed": failed, "frames": len(done_lines)}


def earlier_lines(out: str, stems) -> List[str]:
    """The list lines of the videos whose .done markers lie in `out` but are not in `stems`."""
    done, lines = os.path.join(out, ".done"), []
    for name in sorted(os.listdir(done)):
        if name.endswith(".txt") and name[:-4] not in stems:
            with open(os.path.join(done, name)) as f:
                lines.extend(f.read().split())
    return lines


if __name__ == "__main__":
    run_cli(main)
