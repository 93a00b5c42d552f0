"""docs/data.md "Your own videos" end to end: the commands of that section's bash block, read from
the page, run in-process (in their order, from a folder that stands for the repository root) on
generated clips, with tiny sizes appended to train.py; and tools.make_lists' box file on its own."""
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_script
from datasets import read_list
from datasets.benchmarks import clip_of
from tests.fixtures import TINY_RUN, write_clip
from tools import check_data, make_lists, prepare_videos

DOC, SECTION = os.path.join(ROOT, "docs", "data.md"), "## Your own videos"
# the doc's class folders, and the synthetic shape that sounds in each
SHAPES = {"guitar": "disc", "dog": "square", "siren": "triangle"}
CLIPS, SECONDS, SIZE = 3, 3.0, (64, 48)
# train.py at test sizes (TINY_RUN without its synthetic-only keys and list truncation)
TINY = [o for o in TINY_RUN if not o.startswith(("data.max_items", "data.synthetic_train"))]
PROGRAMS = ["tools.prepare_videos", "tools.make_lists", "tools.check_data", "train.py",
            "test.py", "demo.py"]


def doc_commands(path=None):
    """[argv] of the first ```bash block under SECTION (`\\` continuations joined, comments
    dropped), without the leading `python` / `python -m`."""
    path = path or DOC
    text = open(path, encoding="utf-8").read()
    assert SECTION + "\n" in text, f"{path} has no section '{SECTION}'"
    section = text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    assert "```bash\n" in section, f"'{SECTION}' of {path} has no ```bash block"
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            argv = shlex.split(line)
            assert argv[0] == "python", line
            commands.append(argv[2:] if argv[1] == "-m" else argv[1:])
    return commands


def frame_boxes(ids, box):
    """Pixel xyxy box of the sounding shape on each frame id <stem>_<k> of `prepare_videos
    --every 1.0` (frame time k + 0.5 s); box: write_clip's box(t)."""
    return {i: box(1.0 * (int(i.rsplit("_", 1)[1]) + 0.5)) for i in ids}


def run(argv, boxes):
    """One doc command, in-process; the box file is written before make_lists reads it."""
    if argv[0] == "tools.make_lists":
        args = make_lists.parse_args(argv[1:])
        w, h = SIZE
        with open(args.boxes, "w") as f:
            f.write(",".join(make_lists.HEADERS[args.box_format]) + "\n")
            for id_, (x1, y1, x2, y2) in boxes.items():
                if args.box_format == "xywh":
                    x2, y2 = x2 - x1, y2 - y1
                if args.units == "normalized":
                    x1, y1, x2, y2 = x1 / w, y1 / h, x2 / w, y2 / h
                f.write(f"{id_},{x1},{y1},{x2},{y2}\n")
    if argv[0].startswith("tools."):
        module = {"tools.prepare_videos": prepare_videos, "tools.make_lists": make_lists,
                  "tools.check_data": check_data}[argv[0]]
        extra = ["--workers", "1"] if module is check_data else []
        return module.main(argv[1:] + extra)
    return load_script(argv[0]).main(argv[1:] + (TINY if argv[0] == "train.py" else []))


def test_your_own_videos_as_the_doc_shows(tmp_path, monkeypatch):
    commands = doc_commands()
    assert [c[0] for c in commands] == PROGRAMS, "the doc's steps changed: update PROGRAMS"
    monkeypatch.chdir(tmp_path)  # the doc's relative paths, from a stand-in repository root
    os.symlink(os.path.join(ROOT, "configs"), "configs")
    videos = commands[0][commands[0].index("--videos") + 1]
    boxes = {}
    for cls, shape in SHAPES.items():  # the silent shape is another class's
        silent = SHAPES[list(SHAPES)[(list(SHAPES).index(cls) + 1) % len(SHAPES)]]
        os.makedirs(os.path.join(videos, cls))
        for k in range(1, CLIPS + 1):
            clip = write_clip(os.path.join(videos, cls, f"{cls}-{k:02d}.mp4"), SECONDS, 15,
                              *SIZE, 22050, sounding=shape, distractor=silent)
            ids = [f"{cls}-{k:02d}_{j:04d}" for j in range(int(SECONDS))]
            boxes.update(frame_boxes(ids, clip["box"]))

    results = [run(argv, boxes) for argv in commands]
    listed, made, bad = results[0], results[1], results[2]
    assert listed["frames"] == len(boxes) and bad == []
    args = make_lists.parse_args(commands[1][1:])
    meta, cfg_path = args.out, os.path.join(args.out, make_lists.CONFIG)

    # splits: by clip, every clip in exactly one, every class in each
    splits = {s: read_list(made["paths"][s], 2, 2) for s in ("train", "val", "test")}
    clips = {s: {clip_of(e.id) for e in es} for s, es in splits.items()}
    assert all(clips[a].isdisjoint(clips[b]) for a, b in (("train", "val"), ("train", "test"),
                                                          ("val", "test")))
    assert set().union(*clips.values()) == {clip_of(i) for i in boxes}
    assert all({e.classes[0] for e in es} == set(SHAPES) for es in splits.values())
    # vggss.json: each val and test frame with its box, normalized xyxy
    ann = {a["file"]: a for a in json.load(open(os.path.join(meta, "vggss.json")))}
    assert set(ann) == {e.id for s in ("val", "test") for e in splits[s]}
    w, h = SIZE
    for id_, a in ann.items():
        x1, y1, x2, y2 = boxes[id_]
        assert a["class"] == id_.split("-")[0]
        np.testing.assert_allclose(a["bbox"], [[x1 / w, y1 / h, x2 / w, y2 / h]], atol=1e-6)
    assert Image.open(os.path.join("data", "mine", "frames", next(iter(ann)) + ".jpg")).size == SIZE

    # train: best.pth chosen by the annotated val; test.py: results with an AP; demo: run/demo/
    run_dir = os.path.dirname(commands[4][commands[4].index("--ckpt") + 1])
    assert os.path.isfile(os.path.join(run_dir, "best.pth"))
    assert "no annotated item" not in open(os.path.join(run_dir, "train.log")).read()
    tested = json.load(open(os.path.join(run_dir, "test-1", "results.json")))["results"]
    assert set(tested) == {"vggsound_single"}
    assert 0 < tested["vggsound_single"]["AP"] <= 1
    assert tested["vggsound_single"]["num_samples"] == len(splits["test"])
    video = commands[5][commands[5].index("--video") + 1]
    stem = os.path.splitext(os.path.basename(video))[0]
    assert os.path.getsize(os.path.join(run_dir, "demo", stem + ".mp4")) > 0
    assert json.load(open(os.path.join(run_dir, "demo", stem + ".json")))

    # make_lists again: refused in one line, exit 2, nothing replaced
    before = {p: open(p).read() for p in made["paths"].values()}
    p = subprocess.run([sys.executable, "-m", *commands[1]], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert "--overwrite" in p.stderr and cfg_path.split(os.sep)[-1] in p.stderr
    assert {q: open(q).read() for q in before} == before


@pytest.fixture
def frames(tmp_path):
    """A root of 3 clips x 2 frames of 80x40 px with their list; returns (root, list path)."""
    root = tmp_path / "root"
    os.makedirs(root / "frames")
    lines = []
    for clip, cls in (("a-1", "cat"), ("a-2", "cat"), ("a-3", "cat")):
        for k in range(2):
            Image.new("RGB", (80, 40)).save(root / "frames" / f"{clip}_{k:04d}.jpg")
            lines.append(f"{clip}_{k:04d},{cls}\n")
    (root / "videos.txt").write_text("".join(lines))
    return root


def make(root, text, *options):
    (root / "boxes.csv").write_text(text)
    return make_lists.main(["--root", str(root), "--boxes", str(root / "boxes.csv"),
                            "--out", str(root / "meta"), "--overwrite", "--val", "0.2",
                            "--test", "0.2", *options])


def test_box_units_and_formats_agree(frames):
    ids = [f"a-{c}_{k:04d}" for c in (1, 2, 3) for k in range(2)]
    pixel = "id,x1,y1,x2,y2\n" + "".join(f"{i},8,4,40,20\n" for i in ids)
    norm_xywh = "id,x,y,w,h\n" + "".join(f"{i},0.1,0.1,0.4,0.4\n" for i in ids)
    outs = []
    for text, options in ((pixel, ("--units", "pixel")),
                          (norm_xywh, ("--units", "normalized", "--box-format", "xywh"))):
        made = make(frames, text, *options)
        outs.append(json.load(open(made["paths"]["boxes"])))
    assert outs[0] == outs[1] and outs[0][0]["bbox"] == [[0.1, 0.1, 0.5, 0.5]]


@pytest.mark.parametrize("line, message", [
    ("a-1_0000,8,4,90,20", "boxes.csv:3: box ['8', '4', '90', '20'] lies outside the 80x40"),
    ("a-1_0000,40,4,8,20", "boxes.csv:3: box ['40', '4', '8', '20'] is inverted or empty"),
    ("a-9_0000,8,4,40,20", "boxes.csv:3: unknown id 'a-9_0000'"),
    ("a-1_0000,8,4,40", "boxes.csv:3: expected 5 fields"),
    ("a-1_0000,8,4,x,20", "boxes.csv:3: expected 4 numbers"),
])
def test_bad_boxes_name_the_line(frames, line, message):
    with pytest.raises(make_lists.DataError, match=message.replace("[", r"\[")):
        make(frames, f"id,x1,y1,x2,y2\na-2_0000,8,4,40,20\n{line}\n", "--units", "pixel")
    with pytest.raises(make_lists.DataError, match="boxes.csv:1: expected the header "
                       "'id,x1,y1,x2,y2' of --box-format xyxy, got 'id,x,y,w,h' .that is "
                       "--box-format xywh"):
        make(frames, f"id,x,y,w,h\n{line}\n", "--units", "pixel")


def test_only_fully_boxed_clips_are_evaluated(frames):
    """A clip with a box on one of its two frames trains; too few boxed clips is an error."""
    text = "id,x1,y1,x2,y2\na-1_0000,8,4,40,20\na-2_0000,8,4,40,20\na-2_0001,8,4,40,20\n"
    made = make(frames, text, "--units", "pixel", "--val", "0")
    assert made["partly_boxed"] == ["a-1"] and {clip_of(i) for i in made["splits"]["test"]} \
        == {"a-2"} and not made["splits"]["val"]
    with pytest.raises(make_lists.DataError, match="no clip with a box on every frame is left "
                       "for val"):
        make(frames, text, "--units", "pixel")


def test_the_config_inherits_the_base_asked_for(frames):
    """--base: the paper config by default, the recipe on request; another benchmark's config is
    refused (the lists take vggsound_single's file names)."""
    from utils.config import load_config
    ids = [f"a-{c}_{k:04d}" for c in (1, 2, 3) for k in range(2)]
    text = "id,x1,y1,x2,y2\n" + "".join(f"{i},8,4,40,20\n" for i in ids)
    paper = load_config(make(frames, text, "--units", "pixel")["paths"]["config"])
    recipe = load_config(make(frames, text, "--units", "pixel", "--base",
                              "configs/recipe/vggsound_single.yaml")["paths"]["config"])
    assert (paper.model.arch, recipe.model.arch) == ("authors", "paper")
    assert paper.data.root == recipe.data.root == str(frames)
    with pytest.raises(make_lists.InputError, match="--base configs/music.yaml: the lists take "
                                                    "the file names of vggsound_single"):
        make(frames, text, "--units", "pixel", "--base", "configs/music.yaml")
