"""One record type and one small parser per annotation / list format.

Every benchmark is read into `Record`s (one per video frame); `datasets.dataset` turns records
into samples. Parsers never guess: a malformed line, box or class raises `DataError` naming the
file and the line (or entry) it came from.

Formats:
* list files: ``id`` | ``id,class`` | ``id,c1,c2`` (one frame, several sources) and pair lists
  ``id1,c1,id2,c2`` (two frames side by side), see `read_list` / `read_pair_list`;
* ``vggss.json``: ``{file, class, bbox: [[x1, y1, x2, y2], ...]}``, normalized xyxy, several boxes
  per file, clipped to [0, 1] (a few boxes hold -2.9e16), see `read_vggss_json`;
* ``music_solo.json`` ``{file, class, bbox}`` and ``music_duet.json``
  ``{file, class_src1, bbox_src1, class_src2, bbox_src2}``: normalized **[x, y, w, h]** (the official
  code reads them as xyxy, which empties 1647 of the 2124 solo boxes), see `read_music_json`;
* VGGSound-Instruments ``anno/<id>.pkl``: a pickled 2-D array, see `load_mask_pkl`;
* VGGSound's ``vggsound.csv`` ``ytid,start,label,split`` to build training lists, see
  `read_vggsound_csv` / `write_list`.

Class names are compared in canonical form (`canonical_class`): lower case, letters and digits of
any script kept, every other run of characters replaced by ``_`` ("female speech, woman
speaking", "female_speech_woman_speaking" -> "female_speech_woman_speaking"; "police car (siren)"
-> "police_car_siren"; "小提琴" and "大提琴" stay two classes). Two names of one file that differ
in more than case, spaces and punctuation but would get one form ("C++", "C") are refused, naming
both (`ClassNames`), as is a name with nothing left.
"""
import csv
import json
import math
import os
import pickle
import unicodedata
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.errors import InputError

Box = Tuple[float, float, float, float]  # normalized x1, y1, x2, y2


class DataError(InputError, ValueError):
    """Bad input: a missing/corrupt file, an unknown class, a malformed box or list line."""


@dataclass
class Record:
    """One video frame and its audio.

    id: clip id (``<root>/frames/<id>.jpg``); frame / audio: paths of the jpg and of the audio
    (wav/flac, or any container PyAV reads); audio_offset: center of the audio window in seconds
    (None: center of the clip); classes: canonical class names of the sources visible in the frame,
    in order; boxes: per source a list of normalized xyxy boxes (possibly empty; None: no boxes,
    e.g. training lists); mask_path: pickled 2-D mask of the first source (VGGSound-Instruments);
    where: ``file:line`` of the list entry, for error messages.
    """
    id: str
    frame: str
    audio: str
    classes: List[str]
    audio_offset: Optional[float] = None
    boxes: Optional[List[List[Box]]] = None
    mask_path: Optional[str] = None
    where: str = ""
    extra: dict = field(default_factory=dict)  # free slot for subclasses (e.g. synthetic render)


def _kept(name: str, categories: str) -> str:
    name = unicodedata.normalize("NFC", name).strip().lower()
    return "_".join("".join(ch if unicodedata.category(ch)[0] in categories else " "
                            for ch in name).split())


def canonical_class(name: str) -> str:
    """'Female speech, woman speaking' -> 'female_speech_woman_speaking'; '小提琴' -> '小提琴'.

    NFC, lower case; letters, marks and digits of any script are kept, every run of anything
    else (spaces, punctuation, symbols, '_') becomes one '_', none at either end: ASCII names give
    what they always gave. Empty when nothing is left (`ClassNames.key` refuses it)."""
    return _kept(name, "LMN")


class ClassNames:
    """Canonical keys of the class names one file (or one folder of class folders) writes,
    refusing a name whose key another name of it already has although the two differ in more
    than case, spaces and punctuation: 'C++' and 'C' (both 'c') are refused, naming both;
    'Police car (siren)' and 'police_car_siren' are one class."""

    def __init__(self):
        self.seen = {}  # key -> (spelling with symbols, name, where)

    def key(self, name: str, where: str) -> str:
        key = canonical_class(name)
        if not key:
            raise DataError(f"{where}: class name {name!r} has no letter or digit")
        spelling = _kept(name, "LMNS")
        first = self.seen.setdefault(key, (spelling, name, where))
        if first[0] != spelling:
            raise DataError(f"{where}: class names {name!r} and {first[1]!r} ({first[2]}) would "
                            f"both be the class {key!r}; rename one of them")
        return key


def _check_file(path):
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")


# --------------------------------------------------------------------------- list files
@dataclass
class ListEntry:
    id: str
    classes: List[str]  # canonical; empty for bare-id lists
    where: str  # file:line


def csv_rows(path: str):
    """Yield ('<path>:<line>', stripped fields) for every non-blank line of a list file."""
    _check_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop a byte-order mark
            for n, row in enumerate(csv.reader(f), 1):
                row = [x.strip() for x in row]
                if row and any(row):
                    yield f"{path}:{n}", row
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a text list ({type(e).__name__}: {e})") from None


def _reject(message, on_bad):
    """A malformed line: raise DataError, or hand the message to on_bad (the line is dropped)."""
    if on_bad is None:
        raise DataError(message)
    on_bad(message)


def read_list(path: str, min_fields: int = 1, max_fields: int = 3,
              on_bad=None) -> List[ListEntry]:
    """``id[,c1[,c2...]]`` per line -> ListEntry per line (blank lines ignored).

    min_fields / max_fields: allowed number of comma-separated fields (id included).
    on_bad: None raises DataError on a malformed line; else on_bad(message) and the line is
        dropped.
    """
    out, names = [], ClassNames()
    for where, row in csv_rows(path):
        if not (min_fields <= len(row) <= max_fields) or not all(row):
            _reject(f"{where}: expected {min_fields}..{max_fields} non-empty comma-separated "
                    f"fields (id[,class...]), got {row!r}", on_bad)
            continue
        try:
            out.append(ListEntry(row[0], [names.key(c, where) for c in row[1:]], where))
        except DataError as e:
            _reject(str(e), on_bad)
    return out


def read_pair_list(path: str, on_bad=None) -> List[Tuple[ListEntry, ListEntry]]:
    """``id1,c1,id2,c2`` per line -> pairs of single-source ListEntries (two frames).
    on_bad: as in `read_list`."""
    out, names = [], ClassNames()
    for where, row in csv_rows(path):
        if len(row) < 4 or len(row) % 2 or not all(row):
            _reject(f"{where}: expected id1,class1,id2,class2[,...], got {row!r}", on_bad)
            continue
        try:
            out.append(tuple(ListEntry(row[i], [names.key(row[i + 1], where)], where)
                             for i in range(0, len(row), 2)))
        except DataError as e:
            _reject(str(e), on_bad)
    return out


def write_list(entries: Sequence[Tuple[str, Sequence[str]]], path: str) -> None:
    """Write ``id,class[,class...]`` lines (inverse of `read_list`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for id_, classes in entries:
            f.write(",".join([id_, *classes]) + "\n")


def read_vggsound_csv(path: str, classes: Optional[Sequence[str]] = None,
                      split: Optional[str] = None) -> List[ListEntry]:
    """VGGSound's ``vggsound.csv`` (``ytid,start,label,split``) -> entries with ids
    ``<ytid>_<start:06d>``.

    classes: keep only these class names (any spelling; compared canonically), None: all;
    split: keep only ``train`` or ``test`` rows, None: all. An unknown name in `classes` raises.
    """
    _check_file(path)
    wanted = None if classes is None else {canonical_class(c) for c in classes}
    seen, out, names = set(), [], ClassNames()
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not any(x.strip() for x in row):
                continue
            where = f"{path}:{n}"
            if len(row) != 4:
                raise DataError(f"{where}: expected ytid,start,label,split, got {row!r}")
            ytid, start, label, sp = (x.strip() for x in row)
            try:
                start = int(float(start))
            except ValueError:
                raise DataError(f"{where}: start '{start}' is not a number") from None
            cls = names.key(label, where)
            seen.add(cls)
            if (wanted is None or cls in wanted) and (split is None or sp == split):
                out.append(ListEntry(f"{ytid}_{start:06d}", [cls], where))
    if wanted is not None and wanted - seen:
        raise DataError(f"{path}: unknown classes {sorted(wanted - seen)}")
    return out


# --------------------------------------------------------------------------- boxes
UNSET = -1e15  # vggss.json marks an unknown corner with -2.88e16 (12 boxes): such a box is empty
MARGIN = 0.01  # coordinates this far outside [0, 1] are rounding, and clipped


def _numbers(values, where):
    if (not isinstance(values, (list, tuple)) or len(values) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in values)):
        raise DataError(f"{where}: malformed box {values!r} (expected 4 finite numbers)")
    return [float(v) for v in values]


def _box(xyxy, where, raw=None) -> Box:
    """Normalized x1, y1, x2, y2 -> the same clipped to [0, 1]. A coordinate below UNSET makes
    the box empty (0, 0, 0, 0); coordinates outside [0, 1] by more than MARGIN (pixel units?) or
    a box with x2 < x1 or y2 < y1 raise DataError naming `where`."""
    raw = xyxy if raw is None else raw
    if any(v < UNSET for v in xyxy):
        return (0.0, 0.0, 0.0, 0.0)
    if not all(-MARGIN <= v <= 1 + MARGIN for v in xyxy):
        raise DataError(f"{where}: box {raw!r} lies outside [0, 1]: boxes are normalized by the "
                        "frame's width and height (pixel units?)")
    if xyxy[2] < xyxy[0] or xyxy[3] < xyxy[1]:
        raise DataError(f"{where}: box {raw!r} is inverted (its right or bottom edge lies "
                        "before its left or top edge)")
    return tuple(float(min(max(v, 0.0), 1.0)) for v in xyxy)


def xywh_to_xyxy(b) -> Tuple[float, float, float, float]:
    x, y, w, h = b
    return (x, y, x + w, y + h)


def _json_entries(path: str):
    """Yield ('<path>[i] (<file>)', entry) for every entry of a JSON list of annotations."""
    _check_file(path)
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is dropped
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of annotations")
    for i, e in enumerate(data):
        yield f"{path}[{i}] ({e.get('file', '?') if isinstance(e, dict) else '?'})", e


def _class_name(value, where, names) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: class must be a non-empty string, got {value!r}")
    return names.key(value, where)


def _new_file(seen, file, where):
    if file in seen:
        raise DataError(f"{where}: '{file}' is annotated twice")


def read_vggss_json(path: str) -> Dict[str, Tuple[str, List[Box]]]:
    """vggss.json -> {id: (canonical class, [xyxy boxes clipped to [0, 1]])}."""
    out, names = {}, ClassNames()
    for where, e in _json_entries(path):
        if not isinstance(e, dict) or not {"file", "class", "bbox"} <= e.keys():
            raise DataError(f"{where}: expected keys file, class, bbox")
        if not isinstance(e["bbox"], list):
            raise DataError(f"{where}: bbox must be a list of boxes")
        _new_file(out, e["file"], where)
        out[e["file"]] = (_class_name(e["class"], where, names),
                          [_box(_numbers(b, where), where) for b in e["bbox"]])
    return out


def read_music_json(path: str) -> Dict[str, List[Tuple[str, List[Box]]]]:
    """music_solo.json / music_duet.json -> {id: [(canonical class, [xyxy box]), ...per source]}.

    Boxes are stored as normalized [x, y, w, h]; they are converted to xyxy and clipped.
    Solo entries use ``class``/``bbox``, duet entries ``class_src<k>``/``bbox_src<k>`` (k = 1, 2, ...).
    """
    out, names = {}, ClassNames()
    for where, e in _json_entries(path):
        if not isinstance(e, dict) or "file" not in e:
            raise DataError(f"{where}: expected an object with a 'file' key")
        keys = [("class", "bbox")] if "class" in e else []
        k = 1
        while f"class_src{k}" in e:
            keys.append((f"class_src{k}", f"bbox_src{k}"))
            k += 1
        if not keys:
            raise DataError(f"{where}: no class/bbox or class_src1/bbox_src1 keys")
        sources = []
        for ck, bk in keys:
            if bk not in e:
                raise DataError(f"{where}: '{ck}' without '{bk}'")
            raw = e[bk]
            if not isinstance(raw, (list, tuple)):
                raise DataError(f"{where}: '{bk}' must be [x, y, w, h], got {raw!r}")
            listed = raw if raw and isinstance(raw[0], (list, tuple)) else [raw]  # or one box
            boxes = [_box(xywh_to_xyxy(_numbers(b, where)), where, b) for b in listed]
            sources.append((_class_name(e[ck], where, names), boxes))
        _new_file(out, e["file"], where)
        out[e["file"]] = sources
    return out


def load_mask_pkl(path: str) -> np.ndarray:
    """VGGSound-Instruments ``anno/<id>.pkl`` -> 2-D float array (binarize with > 0)."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            m = np.asarray(pickle.load(f))
    except Exception as e:  # corrupt pickle: report which file
        raise DataError(f"cannot read mask {path}: {e}") from e
    m = np.squeeze(m)
    if m.ndim != 2:
        raise DataError(f"mask {path} has shape {m.shape}, expected a 2-D array")
    return m.astype(np.float32)
