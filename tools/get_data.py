r"""A benchmark's published ids -> its data.root on disk (frames/, audio/), resumable, with coverage.

    python -m tools.get_data --benchmark vggss vggsound_single vggsound_duet \
        --metadata data/vggsound/metadata --root data/vggsound --workers 4 --rate-limit 30
    python -m tools.get_data --benchmark music music_duet --root data/music \
        --metadata data/music/metadata --archive music_videos/ --keep-videos raw/
    python -m tools.get_data --benchmark vggsound_instruments --root data/vgginst \
        --archive shards/part-*.tar.gz --coverage-only

Ids come from every list file the benchmarks read (datasets.benchmarks.BENCHMARKS; a list missing
from --metadata is skipped with a warning) and, with --vggsound-csv, from VGGSound's vggsound.csv.
* MUSIC ids <video>_<segment>_<frame>: the whole video <video> is needed; it gives the frames the
  lists name and audio/<video>.wav (tools.prepare_videos --music-lists).
* VGGSound ids <ytid>_<start:06d>: the 10-s segment at `start`; it gives the frame at its center
  and --seconds of audio around it (tools.prepare_videos --center on the segment).
* any other id (VGGSound-Instruments' sampleNNNN): a clip that only --archive can provide.

Sources. URL (default): yt-dlp downloads --url-template with {ytid} filled in; with an ffmpeg
executable (--ffmpeg) only a VGGSound segment is downloaded, else the whole video and PyAV cuts the
segment. --archive: folders, tar (gz, bz2, xz) or zip shards, read member by member (one member is
copied to a temporary file, processed, deleted). A member is matched by its key, the file name
without its extension (or --name-regex's group `id`, searched in the path inside the archive):
key == id: the member is that id's clip (a VGGSound 10-s clip, a sampleNNNN clip); key == ytid of
a VGGSound id: the whole video, the segment is cut from it; key == video of a MUSIC id: the video.

State: <root>/get_data_state.jsonl, one JSON line per id and outcome (the last one counts): done
(with the files written), unavailable (the source's reason; skipped by later runs of the same
source kind) or failed (tried again by every run, --tries times with a doubling --backoff).
Done ids whose files are gone are made again. Files are made in <root>/.get_data_tmp/ and renamed
into frames/ and audio/, so a killed run leaves nothing a loader reads as good; a file already
there that this tool did not write is never replaced (its item counts as present).

Coverage (also alone, --coverage-only): for every list, the items whose frame and audio are on
disk (a pair: both) in <root>/get_data_coverage.json and <root>/<list>.available.<ext>, the list's
present lines in its own format.
"""
import argparse
import csv
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Dict, List

from datasets.benchmarks import BENCHMARKS, MUSIC_ID, media_record
from datasets.records import DataError, read_list, read_vggsound_csv
from tools.get_data_sources import (GetDataError, Job, RateLimit, Settings, Unavailable,
                                    archive_members, download, find_ffmpeg, make_items,
                                    member_key)
from utils.errors import run_cli
from utils.files import write_atomic
from utils.logger import logger, progress, setup_logging
from utils.run_folder import FolderLock

STATE, REPORT, TMP = "get_data_state.jsonl", "get_data_coverage.json", ".get_data_tmp"
SEGMENT_ID = re.compile(r"^(?P<ytid>.+)_(?P<start>\d{6})$")  # VGGSound <ytid>_<start:06d>
# with ffmpeg: at most 360p video + best audio, merged; without: one file holding both
FORMAT_MERGE = "bv*[height<=?360]+ba/b[height<=?360]/bv*+ba/b"
FORMAT_SINGLE = "b[height<=?360]/b"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--benchmark", nargs="+", required=True, choices=sorted(BENCHMARKS),
                   metavar="NAME", help="benchmarks whose lists name the ids (several: their "
                   f"lists together): {', '.join(sorted(BENCHMARKS))}")
    p.add_argument("--root", required=True, help="data.root: frames/, audio/, state, coverage")
    p.add_argument("--metadata", default="", help="folder of the list files (default: --root)")
    p.add_argument("--vggsound-csv", default="", metavar="CSV",
                   help="also the ids of VGGSound's vggsound.csv (ytid,start,label,split)")
    p.add_argument("--csv-split", default="train", choices=["train", "test", "all"],
                   help="rows of --vggsound-csv to take")
    p.add_argument("--csv-classes", default="", metavar="LIST",
                   help="keep the csv rows of the classes of this id,class list (default: all)")
    p.add_argument("--archive", nargs="+", default=[], metavar="PATH",
                   help="take the videos from these folders / tar / zip shards, not from URLs")
    p.add_argument("--name-regex", default="", help="archive member key: this regex's group "
                   "'id', searched in the member's path (default: file name w/o extension)")
    p.add_argument("--url-template", default="https://www.youtube.com/watch?v={ytid}",
                   help="URL of a video, {ytid} = the YouTube id")
    p.add_argument("--cookies", default="", metavar="FILE", help="Netscape cookies file for "
                   "yt-dlp, for when YouTube asks to sign in or to confirm you are not a bot")
    p.add_argument("--ffmpeg", default="auto", help="ffmpeg executable for downloading only a "
                   "segment: PATH, auto (PATH, then the imageio-ffmpeg wheel), none (PyAV cuts)")
    p.add_argument("--format", default="", help="yt-dlp format selector (default: at most 360p, "
                   f"'{FORMAT_MERGE}' with ffmpeg, '{FORMAT_SINGLE}' without)")
    p.add_argument("--keep-videos", default="", metavar="DIR", help="keep each downloaded / "
                   "extracted video in DIR (a later run can read it with --archive DIR)")
    p.add_argument("--workers", type=int, default=4, help="videos handled at once (threads)")
    p.add_argument("--rate-limit", type=float, default=0.0, metavar="N",
                   help="at most N downloads started per minute (URL source; 0: no limit)")
    p.add_argument("--tries", type=int, default=3, help="tries per video and run (URL source)")
    p.add_argument("--backoff", type=float, default=10.0, help="seconds before the second try, "
                   "doubled before each next one")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="handle at most N videos "
                   "this run (a first try; 0: all)")
    p.add_argument("--retry-unavailable", action="store_true",
                   help="try again ids this source kind said were unavailable")
    p.add_argument("--coverage-only", action="store_true", help="only write the coverage report")
    p.add_argument("--rate", type=int, default=22050, help="sample rate of the written wavs")
    p.add_argument("--seconds", type=float, default=3.0, help="audio around a VGGSound frame")
    p.add_argument("--segment", type=float, default=10.0, help="VGGSound segment length (s)")
    p.add_argument("--frame-rate", type=float, default=10.0, help="MUSIC frame numbers' rate")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = p.parse_args(argv)
    for name in ("workers", "tries"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("rate_limit", "backoff", "limit"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


# --------------------------------------------------------------------------- lists and ids
@dataclass
class ListFile:
    """One list: its lines as written and the ids of each (two or more for a pair line)."""
    name: str
    lines: List[str]
    ids: List[List[str]]
    music: bool  # MUSIC ids (audio may be <video>.wav)


def read_ids(path: str, pairs: bool, music: bool) -> ListFile:
    lines, ids = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for n, line in enumerate(f.read().splitlines(), 1):
            row = [x.strip() for x in next(csv.reader([line]), [])]
            if not any(row):
                continue
            found = row[0::2] if pairs else row[:1]
            bad = [i for i in found if not i or (music and not MUSIC_ID.match(i))]
            if bad:
                raise DataError(f"{path}:{n}: {bad[0]!r} is not an id"
                                + (" <video>_<segment>_<frame>" if music else ""))
            lines.append(line)
            ids.append(found)
    return ListFile(os.path.basename(path), lines, ids, music)


def benchmark_lists(args) -> List[ListFile]:
    """The lists of every --benchmark found in --metadata, and the --vggsound-csv rows."""
    metadata, out, seen = args.metadata or args.root, [], set()
    for name in args.benchmark:
        spec = BENCHMARKS[name]
        for file in (spec.train_list, *spec.extra_train_lists, spec.val_list, spec.test_list):
            if not file or file in seen:
                continue
            seen.add(file)
            path = os.path.join(metadata, file)
            if not os.path.isfile(path):
                logger.warning("%s: not found, skipped%s", path, " (the authors publish it; or "
                               "take the training ids from vggsound.csv: --vggsound-csv)"
                               if file == spec.train_list and not spec.published_train else "")
                continue
            out.append(read_ids(path, file == spec.test_list and spec.test_pairs, spec.music_ids))
    if args.vggsound_csv:
        classes = None
        if args.csv_classes:
            classes = sorted({e.classes[0] for e in read_list(args.csv_classes, 2, 2)})
        rows = read_vggsound_csv(args.vggsound_csv, classes,
                                 None if args.csv_split == "all" else args.csv_split)
        out.append(ListFile(f"vggsound_{args.csv_split}.txt",
                            [f"{e.id},{e.classes[0]}" for e in rows], [[e.id] for e in rows],
                            False))
    if not out:
        raise FileNotFoundError(f"no list file of {', '.join(args.benchmark)} under {metadata} "
                                "(--metadata; docs/data.md says where they are published)")
    return out


def make_jobs(lists: List[ListFile]) -> List[Job]:
    """One job per source video, in list order: a MUSIC video with all its listed frames, a
    VGGSound segment, or a plain clip."""
    jobs = {}
    for lf in lists:
        for id_ in (i for ids in lf.ids for i in ids):
            if lf.music:
                video = MUSIC_ID.match(id_)["video"]
                job = jobs.setdefault(("music", video), Job(video, [], ytid=video, frames={}))
                if id_ not in job.frames:
                    job.ids.append(id_)
                    job.frames[id_] = int(MUSIC_ID.match(id_)["frame"])
            elif ("clip", id_) not in jobs:
                m = SEGMENT_ID.match(id_)
                jobs[("clip", id_)] = (Job(id_, [id_], ytid=m["ytid"], start=float(m["start"]))
                                       if m else Job(id_, [id_]))
    return list(jobs.values())


def present(root: str, id_: str, music: bool) -> bool:
    """Frame and audio of `id_` on disk, where the loader looks for them."""
    r = media_record(root, id_, [], music_ids=music)
    return os.path.isfile(r.frame) and os.path.isfile(r.audio)


# --------------------------------------------------------------------------- state
class State:
    """<root>/get_data_state.jsonl: {id, status, reason, source, tries, files} per line, the last
    line of an id counts. Lines are appended as ids finish (a line cut by a kill is ignored) and
    the file is rewritten, one line per id, atomically at the start and the end of a run."""

    def __init__(self, path: str):
        self.path, self.items = path, {}
        if os.path.isfile(path):
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.items[entry["id"]] = entry
                    except (ValueError, KeyError, TypeError):
                        continue
        self.files = {p for e in self.items.values() if e["status"] == "done"
                      for p in e.get("files", [])}  # what this tool wrote: it may replace them
        self.compact()
        self.file = open(path, "a")

    def record(self, id_, status, reason="", source="", tries=0, files=()):
        tries += self.items.get(id_, {}).get("tries", 0) if status == "failed" else 0
        entry = {"id": id_, "status": status, "reason": reason, "source": source,
                 "tries": tries, "files": list(files)}
        self.items[id_] = entry
        self.files.update(files)
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def compact(self):
        def write(tmp):
            with open(tmp, "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in self.items.values())
        write_atomic(self.path, write)

    def close(self):
        self.file.close()
        self.compact()


class Run:
    """One run's bookkeeping: staging folders, what is recorded, what is renamed into place."""

    def __init__(self, root, state, source):
        self.root, self.state, self.source = root, state, source
        self.counts, self.failures, self.tmp = Counter(), [], os.path.join(root, TMP)
        shutil.rmtree(self.tmp, ignore_errors=True)  # what a killed run left
        os.makedirs(self.tmp)

    def stage(self) -> str:
        """A new staging folder (any thread)."""
        return tempfile.mkdtemp(dir=self.tmp)

    def finish(self, job: Job, stage: str, outcome: Dict[str, tuple], tries: int = 1):
        """Record each id's outcome, then rename its staged files into place: a file that exists
        and that this tool did not write is left as it is."""
        staged = [f"{sub}/{n}" for sub in ("frames", "audio")
                  if os.path.isdir(os.path.join(stage, sub))
                  for n in os.listdir(os.path.join(stage, sub))]
        keep = [f for f in staged
                if not os.path.exists(os.path.join(self.root, f)) or f in self.state.files]
        for id_, (status, reason) in outcome.items():
            mine = {f"frames/{id_}.jpg", f"audio/{id_}.wav", f"audio/{job.key}.wav"}
            self.state.record(id_, status, reason, self.source, tries,
                              [f for f in keep if f in mine] if status == "done" else [])
            self.counts[status] += 1
            if status == "failed":
                self.failures.append(f"{id_}: {reason}")
        for f in keep:  # after the record: a kill in between leaves 'done' ids to make again
            os.replace(os.path.join(stage, f), os.path.join(self.root, f))
        shutil.rmtree(stage, ignore_errors=True)

    def failed(self, job, stage, error: Exception, tries=1):
        status = "unavailable" if isinstance(error, Unavailable) else "failed"
        reason = str(error) if status == "unavailable" else f"{type(error).__name__}: {error}"
        self.finish(job, stage, {i: (status, reason) for i in job.ids}, tries)


def todo(job: Job, run: Run, retry_unavailable: bool):
    """The part of `job` still to do (None: nothing), counting the ids it leaves out."""
    keep = []
    for id_ in job.ids:
        e = run.state.items.get(id_, {})
        if present(run.root, id_, job.frames is not None):
            run.counts["done before" if e.get("status") == "done" else "present before"] += 1
        elif (e.get("status") == "unavailable" and e.get("source") == run.source
              and not retry_unavailable):
            run.counts["unavailable before"] += 1
        else:
            keep.append(id_)
    if not keep:
        return None
    return replace(job, ids=keep, frames=None if job.frames is None else
                   {i: job.frames[i] for i in keep})


def keep_video(path: str, folder: str, name: str):
    """Move a downloaded / extracted video to folder/<name>.<ext> (renamed complete)."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name + os.path.splitext(path)[1])
    write_atomic(target, lambda tmp: shutil.move(path, tmp))


# --------------------------------------------------------------------------- sources
def from_urls(jobs: List[Job], run: Run, args, settings: Settings, bar):
    """Download every job's video with yt-dlp (--workers at once, --rate-limit), make its items."""
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        raise GetDataError("the URL source needs yt-dlp: pip install -r requirements.txt") from None
    try:
        args.url_template.format(ytid="x")
    except (KeyError, IndexError, ValueError):
        raise GetDataError(f"--url-template {args.url_template!r}: the only field is {{ytid}}") \
            from None
    if "{ytid}" not in args.url_template:
        raise GetDataError(f"--url-template {args.url_template!r} has no {{ytid}}")
    ffmpeg = find_ffmpeg(args.ffmpeg)
    if any(j.start is not None for j in jobs):
        logger.info("ffmpeg: %s", ffmpeg or ("none (--ffmpeg none)" if args.ffmpeg == "none" else
                    "none found (pip install imageio-ffmpeg, or --ffmpeg PATH)")
                    + ("" if ffmpeg else ": VGGSound segments are cut with PyAV from whole videos"))
    fmt = args.format or (FORMAT_MERGE if ffmpeg else FORMAT_SINGLE)
    limiter = RateLimit(args.rate_limit)

    def work(job):
        for attempt in range(1, args.tries + 1):
            stage = run.stage()
            try:
                limiter.wait()
                video, section = download(job, stage, args.url_template, ffmpeg,
                                          fmt, args.segment, args.cookies)
                # the segment's span in the file: all of a downloaded section (ffmpeg may add a
                # few frames at its end), or cut from the whole video
                span = None if job.start is None else (0.0, args.segment) if section else \
                    (job.start, job.start + args.segment)
                outcome = make_items(video, job, span, stage, settings)
                if args.keep_videos:
                    keep_video(video, args.keep_videos, job.key if section else job.ytid)
                else:
                    os.remove(video)
                return job, stage, outcome, attempt
            except Unavailable as e:
                return job, stage, e, attempt
            except Exception as e:
                if attempt == args.tries:
                    return job, stage, e, attempt
                logger.info("%s: try %d of %d failed (%s); again in %.0f s", job.key, attempt,
                            args.tries, e, args.backoff * 2 ** (attempt - 1))
                shutil.rmtree(stage, ignore_errors=True)
                time.sleep(args.backoff * 2 ** (attempt - 1))

    pool = ThreadPoolExecutor(args.workers)
    try:
        pending = {pool.submit(work, j) for j in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                job, stage, outcome, tries = f.result()
                if isinstance(outcome, Exception):
                    run.failed(job, stage, outcome, tries)
                else:
                    run.finish(job, stage, outcome, tries)
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def from_archives(jobs: List[Job], run: Run, args, settings: Settings, bar):
    """Read every --archive member by member; a member whose key names jobs is copied to a
    temporary file (folders: read in place), turned into their items, deleted."""
    try:
        pattern = re.compile(args.name_regex) if args.name_regex else None
    except re.error as e:
        raise GetDataError(f"--name-regex {args.name_regex!r}: {e}") from None
    if pattern is not None and "id" not in pattern.groupindex:
        raise GetDataError(f"--name-regex {args.name_regex!r} has no group (?P<id>...)")
    table = {}  # member key -> [(job, segment to cut or None)]
    for job in jobs:
        table.setdefault(job.key, []).append((job, None))
        if job.start is not None:
            table.setdefault(job.ytid, []).append((job, (job.start, job.start + args.segment)))
    claimed = set()

    def work(path, copied, matches):
        out = []
        for job, span in matches:
            stage = run.stage()
            try:
                out.append((job, stage, make_items(path, job, span, stage, settings)))
            except Exception as e:
                out.append((job, stage, e))
        if copied and args.keep_videos:
            keep_video(path, args.keep_videos, os.path.splitext(os.path.basename(path))[0])
        elif copied:
            os.remove(path)
        return out

    def collect(futures):
        for f in futures:
            for job, stage, outcome in f.result():
                if isinstance(outcome, Exception):
                    run.failed(job, stage, outcome)
                else:
                    run.finish(job, stage, outcome)
                bar.update(1)

    pool, pending = ThreadPoolExecutor(args.workers), set()
    try:
        for archive in args.archive:
            for name, extract in archive_members(archive):
                matches = [(j, s) for j, s in table.get(member_key(name, pattern), ())
                           if j.key not in claimed]
                if not matches:
                    continue
                claimed.update(j.key for j, _ in matches)
                path, copied = extract(run.stage())  # one member at a time, in archive order
                pending.add(pool.submit(work, path, copied, matches))
                while len(pending) >= 2 * args.workers:  # bounded temporary copies
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(finished)
                if args.limit and len(claimed) >= args.limit:
                    break
            if args.limit and len(claimed) >= args.limit:
                break
        finished, pending = wait(pending)
        collect(finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    left = sum(len(j.ids) for j in jobs if j.key not in claimed)
    run.counts["left for later (--limit)" if args.limit and len(claimed) >= args.limit
               else "not in the archives"] += left


# --------------------------------------------------------------------------- coverage
def coverage(root: str, lists: List[ListFile]) -> dict:
    """Per list: items present (every frame and audio on disk) and missing; writes
    <root>/get_data_coverage.json and <root>/<list>.available.<ext> (the present lines)."""
    report = {}
    for lf in lists:
        have = [line for line, ids in zip(lf.lines, lf.ids)
                if all(present(root, i, lf.music) for i in ids)]
        stem, ext = os.path.splitext(lf.name)
        copy = f"{stem}.available{ext}"

        def write(tmp, have=have):
            with open(tmp, "w", newline="") as f:
                f.writelines(line + "\n" for line in have)
        write_atomic(os.path.join(root, copy), write)
        report[lf.name] = {"items": len(lf.lines), "present": len(have),
                           "missing": len(lf.lines) - len(have), "available_list": copy}

    def write_report(tmp):
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
    write_atomic(os.path.join(root, REPORT), write_report)
    logger.info("coverage (%s):\n%s", os.path.join(root, REPORT), "\n".join(
        f"  {name:34s} {r['present']:7d} of {r['items']:7d} present "
        f"({100 * r['present'] / max(r['items'], 1):5.1f} %), {r['missing']} missing"
        for name, r in report.items()))
    return report


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    for path, what in ((args.cookies, "--cookies"), (args.vggsound_csv, "--vggsound-csv"),
                       (args.csv_classes, "--csv-classes"),
                       *((a, "--archive") for a in args.archive)):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{what} {path}: no such file")
    lists = benchmark_lists(args)
    os.makedirs(args.root, exist_ok=True)
    if args.coverage_only:
        return {"coverage": coverage(args.root, lists)}
    for sub in ("frames", "audio"):
        os.makedirs(os.path.join(args.root, sub), exist_ok=True)
    lock = FolderLock(args.root, "python -m tools.get_data", what="--root").acquire()
    try:  # one run per root: a second one is refused, naming the first
        return fetch(args, lists)
    finally:
        lock.release()


def fetch(args, lists):
    """main's work under the root's lock: the jobs, the sources, the summary and coverage."""
    run = Run(args.root, State(os.path.join(args.root, STATE)),
              "archive" if args.archive else "url")
    jobs = [j for j in (todo(j, run, args.retry_unavailable) for j in make_jobs(lists)) if j]
    if not args.archive:
        offline = [j for j in jobs if not j.ytid]
        run.counts["not on YouTube (use --archive)"] += sum(len(j.ids) for j in offline)
        jobs = [j for j in jobs if j.ytid]
    if args.limit and not args.archive:
        run.counts["left for later (--limit)"] += sum(len(j.ids) for j in jobs[args.limit:])
        jobs = jobs[:args.limit]
    settings = Settings(args.rate, args.seconds, args.frame_rate, args.quality, args.segment)
    t0 = time.time()
    bar = progress(total=len(jobs), desc="videos", unit="video", leave=True)
    try:
        (from_archives if args.archive else from_urls)(jobs, run, args, settings, bar)
    finally:
        bar.close()
        run.state.close()
        shutil.rmtree(run.tmp, ignore_errors=True)
    wall = time.time() - t0
    logger.info("%d videos in %.0f s; ids: %s", len(jobs), wall,
                ", ".join(f"{n} {k}" for k, n in run.counts.items()) or "nothing to do")
    for line in run.failures[:3]:
        logger.warning("failed: %s", line)
    if run.failures:
        logger.warning("%d ids failed: run the same command again to retry them (reasons in %s)",
                       len(run.failures), os.path.join(args.root, STATE))
    return {**run.counts, "videos": len(jobs), "seconds": wall,
            "coverage": coverage(args.root, lists)}


if __name__ == "__main__":
    run_cli(main)
