"""Where `tools.get_data` finds the videos, and how one video becomes list items.

* `download`: one video (or, for a VGGSound segment and an ffmpeg executable, only the segment)
  from a URL through yt-dlp's Python API;
* `archive_members`: the files of a folder, tar (any compression) or zip shard, one at a time;
  `member_key`: the name a member is matched to list ids by;
* `make_items`: one local video -> ``frames/<id>.jpg`` and ``audio/<id>.wav`` (or, MUSIC,
  ``audio/<video>.wav``) in a staging folder, through tools.prepare_videos' own functions.

Outcomes: a source that says the video is gone (removed, private, HTTP 404, a segment beyond the
video's end, no sound track) raises `Unavailable`; any other exception is a failure worth
another try (a network error, YouTube asking to sign in, a truncated file).
"""
import argparse
import os
import re
import shutil
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from datasets.audio import cut_window, decode_av
from tools.prepare_videos import (_save_jpg, _save_wav, decode_frames, process, process_music,
                                  stem_of, video_duration)
from utils.errors import InputError
from utils.logger import logger


class GetDataError(InputError, ValueError):
    """A bad option or source of tools.get_data (the message says which and how to fix it)."""


class Unavailable(Exception):
    """The source says this video (or this part of it) cannot be had: not worth another try."""


# yt-dlp's messages for a video that is gone for good (anything else is retried)
GONE = re.compile(r"video unavailable|this video is (un|not )available|private video|"
                  r"has been removed|been terminated|no longer available|blocked it|copyright|"
                  r"not made this video available|members[- ]only|join this channel|"
                  r"HTTP Error (404|410)", re.IGNORECASE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Job:
    """The list ids one source video yields (kinds: MUSIC video, VGGSound segment, plain clip)."""
    key: str  # the id, or the MUSIC video (<video> of <video>_<segment>_<frame>)
    ids: List[str]
    ytid: str = ""  # YouTube id ('': archives only, e.g. VGGSound-Instruments' sampleNNNN)
    start: Optional[float] = None  # VGGSound <ytid>_<start:06d>: segment start in the video (s)
    frames: Optional[Dict[str, int]] = None  # MUSIC: {id: frame number at --frame-rate}


@dataclass
class Settings:
    """What turning a video into items needs (the options of tools.prepare_videos)."""
    rate: int  # sample rate of the wavs
    seconds: float  # audio window around each frame (VGGSound, clips)
    frame_rate: float  # MUSIC frame numbers count at this rate from the video's start
    quality: int  # JPEG quality
    segment: float  # length of a VGGSound segment (s)

    def prepare_args(self, out):
        """The argument namespace tools.prepare_videos' functions read."""
        return argparse.Namespace(out=out, every=0.0, rate=self.rate, seconds=self.seconds,
                                  frame_rate=self.frame_rate, quality=self.quality)


# --------------------------------------------------------------------------- items
def process_segment(path: str, id_: str, span: Tuple[float, float], out: str, s: Settings):
    """Items of the segment `span` (seconds from the video stream's start) of a whole video: the
    frame at the segment's center and --seconds of audio centered on it, kept inside the segment
    (what prepare_videos --center writes for the segment cut out as a clip)."""
    duration = video_duration(path)
    t0, t1 = span[0], min(span[1], duration) if duration else span[1]
    if t1 <= t0:
        raise Unavailable(f"the video is {duration:.1f} s long: the segment at {t0:.0f} s is "
                          "beyond its end")
    center = (t0 + t1) / 2
    images, video_start, _ = decode_frames(path, [center])
    audio, audio_start = decode_av(path, s.rate, with_start=True,
                                   span=(t0 + video_start, t1 + video_start))
    s0 = max(t0 + video_start, audio_start)  # container time of the segment's first sample
    a = int(round((s0 - audio_start) * s.rate))
    b = int(round((t1 + video_start - audio_start) * s.rate))
    if b <= a:
        raise Unavailable(f"no sound in the segment at {t0:.0f} s")
    wave = cut_window(audio[a:b], s.rate, s.seconds, center + video_start - s0)
    _save_jpg(images[0], os.path.join(out, "frames", id_ + ".jpg"), s.quality)
    _save_wav(wave.astype(np.float32), os.path.join(out, "audio", id_ + ".wav"), s.rate)


def make_items(path: str, job: Job, span: Optional[Tuple[float, float]], out: str,
               s: Settings) -> Dict[str, Tuple[str, str]]:
    """Write the items of `job` from the local video `path` into out/frames, out/audio.

    span: the segment to cut from a whole video (VGGSound); None: the file is the clip itself.
    Returns {id: (status, reason)}, status 'done' or 'unavailable' (a MUSIC frame beyond the
    video's end). Raises Unavailable (no video or sound stream, segment beyond the end) or any
    decoding error."""
    for sub in ("frames", "audio"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    try:
        if job.frames is not None:  # MUSIC: the listed frames and the whole sound track
            written, beyond = process_music(path, job.frames, s.prepare_args(out))
            wav = os.path.join(out, "audio", stem_of(path) + ".wav")
            os.replace(wav, os.path.join(out, "audio", job.key + ".wav"))  # named by the video
            return {**{i: ("done", "") for i in written},
                    **{i: ("unavailable", "frame beyond the video's end") for i in beyond}}
        if span is not None:
            process_segment(path, job.key, span, out, s)
        else:  # the clip itself: prepare_videos --center, then named by the id
            process(path, None, s.prepare_args(out))
            for sub, ext in (("frames", ".jpg"), ("audio", ".wav")):
                os.replace(os.path.join(out, sub, stem_of(path) + ext),
                           os.path.join(out, sub, job.key + ext))
    except Exception as e:
        if re.search(r"no (video|audio) stream", str(e)):  # the source has no picture or sound
            raise Unavailable(str(e)) from e
        raise
    return {job.key: ("done", "")}


# --------------------------------------------------------------------------- YouTube / URLs
def find_ffmpeg(choice: str) -> str:
    """The ffmpeg executable yt-dlp cuts segments with: --ffmpeg PATH, 'none', or 'auto' (ffmpeg
    on PATH, else the one of the imageio-ffmpeg wheel). '' when there is none."""
    if choice == "none":
        return ""
    if choice != "auto":
        if not os.path.isfile(choice):
            raise FileNotFoundError(f"--ffmpeg {choice}: no such file")
        return choice
    found = shutil.which("ffmpeg")
    if not found:
        try:
            import imageio_ffmpeg
            found = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            found = ""
    return found or ""


class RateLimit:
    """At most `per_minute` download starts per minute over all workers (0: no limit)."""

    def __init__(self, per_minute: float):
        self.gap, self.next, self.lock = 60.0 / per_minute if per_minute else 0.0, 0.0, \
            threading.Lock()

    def wait(self):
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.gap
        time.sleep(start - now)


class _YtdlpLog:
    """yt-dlp's messages: progress dropped, each distinct warning logged once."""
    seen, lock = set(), threading.Lock()

    def debug(self, msg):
        pass

    info = debug
    error = debug  # raised as DownloadError, reported with the id

    def warning(self, msg):
        with self.lock:
            if msg not in self.seen:
                self.seen.add(msg)
                logger.warning("yt-dlp: %s", ANSI.sub("", msg))


def download(job: Job, folder: str, url_template: str, ffmpeg: str, fmt: str, segment: float,
             cookies: str = "") -> Tuple[str, bool]:
    """Download job's video into `folder` with yt-dlp; returns (path, whether the file holds only
    the segment [start, start + segment] of a VGGSound id). Only the segment is downloaded when
    `ffmpeg` is an executable (yt-dlp's download_ranges); otherwise the whole video."""
    import yt_dlp
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
    from yt_dlp.utils import DownloadError, download_range_func
    opts = {"outtmpl": os.path.join(folder, f"{job.ytid}.%(ext)s"), "format": fmt,
            "quiet": True, "noprogress": True, "noplaylist": True, "logger": _YtdlpLog(),
            "retries": 3, "socket_timeout": 30, "overwrites": True, "continuedl": False}
    if cookies:
        opts["cookiefile"] = cookies
    section = job.start is not None and bool(ffmpeg)
    if ffmpeg:
        opts["ffmpeg_location"] = ffmpeg
        # yt-dlp checks that ffmpeg exists through a context variable its command line sets
        # (per thread); the option alone is not enough for download_ranges
        FFmpegPostProcessor._ffmpeg_location.set(ffmpeg)
    if section:
        opts["download_ranges"] = download_range_func(None, [(job.start, job.start + segment)])
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url_template.format(ytid=job.ytid), download=True)
    except DownloadError as e:
        reason = ANSI.sub("", str(e)).removeprefix("ERROR: ").strip()
        if GONE.search(reason):
            raise Unavailable(reason) from None
        if "sign in" in reason.lower():
            reason += " (--cookies FILE: cookies of a signed-in browser session)"
        raise RuntimeError(reason) from None
    duration = info.get("duration")
    if job.start is not None and duration and job.start >= duration:
        raise Unavailable(f"the video is {duration:.0f} s long: the segment at {job.start:.0f} s "
                          "is beyond its end")
    downloads = info.get("requested_downloads") or [{}]
    path = downloads[0].get("filepath") or ""
    if not os.path.isfile(path):
        raise RuntimeError(f"yt-dlp reported no file for {job.ytid}")
    return path, section


# --------------------------------------------------------------------------- archives
def member_key(name: str, pattern: Optional[re.Pattern]) -> Optional[str]:
    """The name a member (path inside an archive or folder) is matched by: its file name without
    the extension, or pattern's group 'id' (None: the pattern does not match)."""
    if pattern is None:
        return stem_of(name)
    m = pattern.search(name)
    return m["id"] if m else None


def archive_members(path: str) -> Iterator[Tuple[str, object]]:
    """(name, extract) for every file of a folder (searched recursively), tar (gz, bz2, xz) or
    zip, in archive order; extract(folder) writes that one member into `folder` and returns
    (its path, whether it is a copy to delete). A folder's files are read in place."""
    if os.path.isdir(path):
        for dirpath, dirnames, names in os.walk(path):
            dirnames.sort()
            for n in sorted(names):
                full = os.path.join(dirpath, n)
                yield os.path.relpath(full, path), lambda folder, full=full: (full, False)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path, "r|*") as tf:  # a stream: members in order, nothing seeks back
            for m in tf:
                if m.isfile():
                    yield m.name, lambda folder, m=m: (_copy(tf.extractfile(m), m.name, folder),
                                                       True)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda folder, info=info: (
                        _copy(zf.open(info), info.filename, folder), True)
    else:
        raise GetDataError(f"--archive {path}: neither a folder, a tar nor a zip file")


def _copy(stream, name, folder) -> str:
    """Copy one member's bytes to folder/<its file name>."""
    path = os.path.join(folder, os.path.basename(name))
    with stream, open(path, "wb") as f:
        shutil.copyfileobj(stream, f, 1 << 20)
    return path
