"""Bad input, as a new user gives it: each case ends before training with one message that names
the key, file or list line, and nothing a finished run wrote is ever lost.

The data is a small VGG-SS-layout benchmark (the synthetic generator's frames, wavs and
annotations under the vggss file names), copied per test so that each case can break its own.
"""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import train
from datasets import build_dataset
from datasets.records import DataError, read_vggss_json
from datasets.synthetic import write_synthetic
from utils.config import ConfigError, load_config
from utils.errors import InputError

SR = 8000
TINY = ["model.dim=32", "model.heads=4", "model.width=8", "model.depth=1", "model.visual_stride=8",
        "data.image_size=32", f"data.audio.sample_rate={SR}", "data.audio.seconds=1.0",
        "data.audio.n_fft=256", "data.audio.hop=125", "data.audio.frames=64",
        "data.audio.freq_bins=64", "data.num_workers=0", "train.batch_size_per_gpu=8",
        "train.epochs=1", "train.max_steps=1", "train.eval_every=0", "eval.batch_size=16",
        "eval.save_vis=0", "data.dataset=vggss", "data.val_fraction=0", "eval.test_sets=[vggss]"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vggss") / "base")
    write_synthetic(out, image_size=32, sample_rate=SR, seconds=1.0, num_train=40, num_val=4,
                    num_test=12, num_duet=2, num_pairs=4, num_trios=2)
    for src, dst in (("train.txt", "vggsound_single_train.txt"), ("test.txt", "vggss_test.csv"),
                     ("annotations.json", "vggss.json")):
        shutil.copy(os.path.join(out, src), os.path.join(out, dst))
    return out


@pytest.fixture
def root(base, tmp_path):
    """A private copy of the benchmark."""
    return shutil.copytree(base, str(tmp_path / "data"))


def fit(root, out, *extra):
    train.main(["--config", "configs/synthetic.yaml", *TINY, f"data.root={root}",
                f"train.output_dir={out}", *extra])
    return os.path.join(out, "checkpoint.pth")


def rewrite(path, edit):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(edit(text))


# ----------------------------------------------------------------------------- data loss
def test_rerun_into_a_finished_run_is_refused(root, tmp_path):
    out = str(tmp_path / "run")
    ckpt = fit(root, out, "train.max_steps=2", "eval.test_at_end=false")
    before = {n: open(os.path.join(out, n), "rb").read() for n in ("checkpoint.pth", "log.jsonl")}
    with pytest.raises(FileExistsError, match=r"run.* already holds a run \(checkpoint.pth, "
                                              r"log.jsonl\).*--resume auto.*--overwrite"):
        fit(root, out, "train.max_steps=1", "eval.test_at_end=false")
    assert before == {n: open(os.path.join(out, n), "rb").read() for n in before}
    rewrite(os.path.join(root, "vggss_test.csv"), lambda t: t + "test_999999\n")
    with pytest.raises(DataError, match="test_999999"):  # a later check fails: nothing deleted
        fit(root, out, "train.max_steps=1", "--overwrite")
    assert before == {n: open(os.path.join(out, n), "rb").read() for n in before}
    with pytest.raises(ValueError, match="model.zero_init_residual"):  # so does the model's own
        fit(root, out, "train.max_steps=1", "--overwrite", "model.arch=authors",
            "eval.test_at_end=false")
    assert before == {n: open(os.path.join(out, n), "rb").read() for n in before}
    fit(root, out, "train.max_steps=1", "eval.test_at_end=false", "--overwrite")  # on purpose
    assert torch.load(ckpt, weights_only=True)["step"] == 1
    with open(os.path.join(out, "log.jsonl")) as f:
        assert len(f.readlines()) == 1  # the old run's lines are gone, not mixed in


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(root, tmp_path):
    """Two runs with one train.output_dir: while the first lives (it holds the folder's lock),
    the second is refused before it writes anything, even with --overwrite; the lock file of a
    run that died, and the temporary file of its interrupted save, are taken over with a
    warning."""
    from utils.run_folder import LOCK, FolderLock, RunFolderInUse
    out = tmp_path / "run"
    code = ("import sys, time; sys.path.insert(0, '.'); from utils.run_folder import FolderLock; "
            f"FolderLock({str(out)!r}, 'train.py --config first.yaml').acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ((), ("--overwrite",)):
            with pytest.raises(RunFolderInUse, match=rf"in use by process {holder.pid} on .*"
                                                     r"first.yaml"):
                fit(root, str(out), "eval.test_at_end=false", *extra)
            assert sorted(os.listdir(out)) == [LOCK]  # no log, config or checkpoint
    finally:
        holder.kill()  # dies holding it: the kernel drops the lock, the file stays
        holder.wait()
    (out / "checkpoint.pth.tmp.{}".format(holder.pid)).write_bytes(b"half a checkpoint")
    ckpt = fit(root, str(out), "train.max_steps=1", "eval.test_at_end=false")
    assert torch.load(ckpt, weights_only=True)["step"] == 1
    assert sorted(os.listdir(out)) == ["checkpoint.pth", "config.yaml", "log.jsonl", "train.log"]
    log = (out / "train.log").read_text()
    assert f"process {holder.pid}" in log and f"tmp.{holder.pid}" in log
    FolderLock(str(out)).acquire().release()  # a run that ends releases it: no file, no warning
    assert LOCK not in os.listdir(out)


def test_failing_resume_names_the_keys_and_changes_nothing(root, tmp_path):
    out = str(tmp_path / "run")
    fit(root, out, "train.epochs=2", "train.max_steps=2", "eval.test_at_end=false")
    names = ("config.yaml", "train.log", "checkpoint.pth", "log.jsonl")
    before = {n: open(os.path.join(out, n), "rb").read() for n in names}
    with pytest.raises(ValueError, match=r"trained with model.dim=32 \(command: 64\)"):
        fit(root, out, "model.dim=64", "--resume", "auto")
    with pytest.raises(ValueError, match=r"model.name='avgn' \(command: 'ezvsl'\)"):
        fit(root, out, "model.name=ezvsl", "--resume", "auto")
    assert before == {n: open(os.path.join(out, n), "rb").read() for n in names}
    # overrides after the flags (argparse's intermixed parsing) continue the run
    train.main(["--config", "configs/synthetic.yaml", "--resume", "auto", *TINY,
                f"data.root={root}", f"train.output_dir={out}", "train.epochs=2",
                "train.max_steps=3", "eval.test_at_end=false"])
    assert torch.load(os.path.join(out, "checkpoint.pth"), weights_only=True)["step"] == 3


# ----------------------------------------------------------------------------- config values
BAD_VALUES = [
    ("train.schedule=cosin", r"'train.schedule' must be one of constant, cosine; got 'cosin' "
                             r"\(did you mean 'cosine'\?\)"),
    ("train.batchnorm=synk", r"'train.batchnorm' must be one of batch, sync, frozen"),
    ("train.optimizer=adamw", r"'train.optimizer' must be one of adam, sgd; got 'adamw'"),
    ("data.canvas=concatt", r"'data.canvas' must be one of concat, single"),
    ("model.loc_features=modulatd", r"'model.loc_features' must be one of modulated, raw"),
    ("model.assignment=hrd", r"'model.assignment' must be one of soft, hard"),
    ("model.audio_tokens=grd", r"'model.audio_tokens' must be one of global, grid"),
    ("model.visual_stride=12", r"'model.visual_stride' must be one of 32, 16, 8; got 12$"),
    ("model.visual_stride='16'", r"'model.visual_stride' must be one of 32, 16, 8; got '16'$"),
    ("train.lr=.inf", r"'train.lr' must be > 0 and finite; got inf"),
    ("loss.w_loc=-1", r"'loss.w_loc' must be >= 0 and finite; got -1.0"),
    ("eval.protocol=frames", r"'eval.protocol' must be one of frame, source"),
    ("eval.threshold=fixd:0.5", r"'eval.threshold'.*median, fixed:v.*got 'fixd:0.5'"),
    ("eval.threshold=fixed:50", r"'eval.threshold'.*\(0 <= v <= 1\).*got 'fixed:50'"),
    ("eval.threshold=fixed:abc", r"'eval.threshold'.*got 'fixed:abc'"),
    ("eval.threshold=max_ratio:0", r"'eval.threshold'.*\(0 < r <= 1\)"),
    ("train.lr=[1", r"override 'train.lr=\[1': the value of 'train.lr' is not valid YAML"),
    ("data.val_fraction=1.5", r"'data.val_fraction' must be in \[0, 1\); got 1.5"),
    ("train.batch_size_per_gpu=0", r"'train.batch_size_per_gpu' must be > 0; got 0"),
    ("model.dim=99", r"'model.dim' \(99\) must be divisible by model.heads"),
    ("eval.ciou_thresholds=[0.3, 30]", r"'eval.ciou_thresholds' must be in \[0, 1\]"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_config_value_fails_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/synthetic.yaml", [override])


def test_bad_values_stop_every_entry_point_before_anything_is_written(root, tmp_path, script):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="eval.threshold"):
        fit(root, out, "eval.threshold=fixd:0.5")
    assert not out.exists()
    ckpt = fit(root, out, "eval.test_at_end=false")
    for bad in ("eval.protocol=frames", "train.schedule=cosin"):  # on --resume too
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            train.main(["--resume", ckpt, bad])
    with pytest.raises(ConfigError, match="eval.protocol"):
        script("test.py").main(["--ckpt", ckpt, "eval.protocol=frames"])
    bad = {**torch.load(ckpt, weights_only=True)}
    bad["config"]["eval"]["threshold"] = "fixd:0.5"  # a stored config is checked like a file
    torch.save(bad, str(tmp_path / "bad.pth"))
    demo = script("demo.py")
    with pytest.raises(demo.DemoError, match="bad.pth .*'eval.threshold'.*got 'fixd:0.5'"):
        demo.load_demo_model(str(tmp_path / "bad.pth"), torch.device("cpu"))


def _entry_points(tmp):
    """(name, argv, what stderr must say): bad input for every command a user runs."""
    bad_ckpt = os.path.join(tmp, "random.pth")
    with open(bad_ckpt, "wb") as f:
        f.write(os.urandom(256))
    return [
        ("train.py", ["train.py", f"train.output_dir={tmp}/run", "eval.threshold=fixd:0.5"],
         "'eval.threshold'"),
        ("train.py --resume", ["train.py", "--resume", bad_ckpt], "cannot read checkpoint"),
        ("test.py", ["test.py", "--ckpt", os.path.join(tmp, "missing.pth")],
         "checkpoint not found"),
        ("demo.py", ["demo.py", "--ckpt", bad_ckpt, "--video", os.path.join(tmp, "v.mp4")],
         "cannot read checkpoint"),
        ("tools.check_data", ["-m", "tools.check_data", "--config", "configs/synthetic.yaml",
                              "model.loc_features=modulatd"], "'model.loc_features' must be one of"),
        ("tools.prepare_videos", ["-m", "tools.prepare_videos", "--videos",
                                  os.path.join(tmp, "none"), "--out", os.path.join(tmp, "out")],
         os.path.join(tmp, "none")),
        ("tools.make_synthetic", ["-m", "tools.make_synthetic", "--out", bad_ckpt], bad_ckpt),
    ]


def test_every_entry_point_checks_its_input_under_python_O(tmp_path):
    """Input checks are not asserts: under python -O (asserts removed) every command still
    refuses bad input with its message, and a function a user may call directly still raises."""
    for name, argv, message in _entry_points(str(tmp_path)):
        p = subprocess.run([sys.executable, "-O", *argv], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode != 0 and message in p.stderr, (name, p.returncode, p.stderr[-2000:])
        if name.startswith(("train.py", "test.py")):  # one line, exit code 2, no traceback
            assert p.returncode == 2 and "Traceback" not in p.stderr, (name, p.stderr[-2000:])
            assert p.stderr.strip().splitlines()[-1].startswith("error: "), p.stderr[-2000:]
    code = ("import numpy as np\nfrom datasets.audio import log_spectrogram\n"
            "log_spectrogram(np.zeros((2, 4000), np.float32), 512, 220, 300)")
    p = subprocess.run([sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode != 0 and "expected a 1-D waveform" in p.stderr, p.stderr[-2000:]
    from models.avgn import AVGN
    with pytest.raises(ValueError, match="loc_features must be modulated or raw"):
        AVGN(num_classes=2, dim=8, heads=2, width=8, loc_features="modulatd")


# ----------------------------------------------------------------------------- data
def _annotation(root, edit):
    path = os.path.join(root, "vggss.json")
    with open(path) as f:
        entries = json.load(f)
    edit(entries)
    with open(path, "w") as f:
        json.dump(entries, f)


@pytest.mark.parametrize("box,message", [
    ([0.6, 0.2, 0.3, 0.7], r"is inverted"),
    ([10, 20, 100, 200], r"lies outside \[0, 1\].*pixel units"),
])
def test_bad_boxes_name_the_entry(root, box, message):
    def edit(entries):
        entries[-1]["bbox"] = [box]  # a test item (the last entries)
    _annotation(root, edit)
    name = json.load(open(os.path.join(root, "vggss.json")))[-1]["file"]
    with pytest.raises(DataError, match=rf"vggss.json\[\d+\] \({name}\): box .*{message}"):
        read_vggss_json(os.path.join(root, "vggss.json"))


def test_rounding_and_unset_corners_stay_clipped(tmp_path):
    path = tmp_path / "a.json"
    unset = -2.8823037615171176e+16  # vggss.json's unset corner
    path.write_text(json.dumps([{"file": "a", "class": "x", "bbox": [[-0.004, 0.1, 1.003, 0.5]]},
                                {"file": "b", "class": "x", "bbox": [[0.38, 0.86, 0.70, unset],
                                                                    [unset, 0.2, 0.5, 0.8]]}]))
    boxes = read_vggss_json(str(path))
    assert boxes["a"][1] == [(0.0, 0.1, 1.0, 0.5)]
    assert boxes["b"][1] == [(0.0, 0.0, 0.0, 0.0)] * 2  # empty: excluded from AP, as before


def test_real_vggss_annotation_still_reads():
    path = os.path.join(ROOT, "..", "shared", "metadata", "vggss.json")
    if not os.path.isfile(path):
        pytest.skip("no ../shared/metadata")
    assert len(read_vggss_json(path)) > 5000


def _drop_frame(root):
    os.remove(os.path.join(root, "frames", "test_000003.jpg"))


def _append(line):
    return lambda root: rewrite(os.path.join(root, "vggss_test.csv"), lambda t: t + line)


def _empty(root):
    open(os.path.join(root, "vggss_test.csv"), "w").close()


def _bom_on_first_line_and_missing(root):
    rewrite(os.path.join(root, "vggss_test.csv"), lambda t: "\ufeff" + t)
    _drop_frame(root)


TEST_LIST_DEFECTS = [
    (_drop_frame, r"frame file not found: .*test_000003.jpg \(list entry .*vggss_test.csv:4\)"),
    (_append("extra_1,violin\n"), r"vggss_test.csv:13: 'extra_1' has no annotation in vggss.json"),
    (_append("test_999999\n"), r"vggss_test.csv:13: 'test_999999' has no annotation"),
    (_empty, r"test list .*vggss_test.csv has no entries"),
    (_bom_on_first_line_and_missing, r"test_000003.jpg \(list entry .*vggss_test.csv:4\)"),
]


@pytest.mark.parametrize("breaks,message", TEST_LIST_DEFECTS,
                         ids=["missing jpg", "unknown id", "no annotation", "empty", "bom"])
def test_test_list_defects_stop_training_before_the_first_step(root, tmp_path, breaks, message):
    breaks(root)
    out = tmp_path / "run"
    with pytest.raises(DataError, match=message):
        fit(root, out)
    assert not out.exists()  # refused at start-up: no folder, no log, no checkpoint


def test_unknown_class_in_a_test_list_is_named(root, tmp_path):
    def edit(entries):
        entries[-1]["class"] = "violin"
    _annotation(root, edit)
    rewrite(os.path.join(root, "vggss_test.csv"), lambda t: t.replace(
        t.splitlines()[-1], t.splitlines()[-1].split(",")[0] + ",violin"))
    with pytest.raises(DataError, match=r"unknown class 'violin' .*vggss_test.csv:12"):
        fit(root, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pth").exists()  # found before training


def test_empty_training_list_is_named(root, tmp_path):
    open(os.path.join(root, "vggsound_single_train.txt"), "w").close()
    with pytest.raises(DataError, match=r"training list .*vggsound_single_train.txt has no "
                                        r"entries"):
        fit(root, tmp_path / "run")
    rewrite(os.path.join(root, "vggsound_single_train.txt"), lambda t: "train_000000,cross\n")
    with pytest.raises(ValueError, match=r"1 training items \(.*vggsound_single_train.txt\) give "
                                         r"no full batch"):
        fit(root, tmp_path / "run2", "eval.test_at_end=false")


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e30])
def test_non_finite_audio_names_file_and_line(root, value):
    wav = os.path.join(root, "audio", "test_000002.wav")
    x = np.zeros(SR, np.float32)
    x[SR // 2] = value
    sf.write(wav, x, SR, subtype="FLOAT")
    ds = build_dataset(load_config("configs/synthetic.yaml", TINY + [f"data.root={root}"]),
                       "test", class_names=None)
    with pytest.raises(DataError, match=r"audio .*test_000002.wav holds sample values such as "
                                        r".*\(list entry .*vggss_test.csv:3\)"):
        ds[2]


def test_byte_order_marks_are_read(root, tmp_path):
    for name in ("vggsound_single_train.txt", "vggss_test.csv", "vggss.json"):
        rewrite(os.path.join(root, name), lambda t: "\ufeff" + t)
    cfg = load_config("configs/synthetic.yaml", TINY + [f"data.root={root}", "data.on_error=skip"])
    assert len(build_dataset(cfg, "train")) == 40  # the first line is not dropped
    assert build_dataset(cfg, "test")[0]["id"] == "test_000000"


def test_broken_json_names_its_file(root):
    rewrite(os.path.join(root, "vggss.json"), lambda t: t[:-5])
    cfg = load_config("configs/synthetic.yaml", TINY + [f"data.root={root}"])
    with pytest.raises(DataError, match=r"vggss.json: not valid JSON"):
        build_dataset(cfg, "test")


def test_every_warning_reaches_console_and_train_log(root, tmp_path, capsys):
    os.remove(os.path.join(root, "frames", "train_000005.jpg"))
    out = tmp_path / "run"
    fit(root, out, "data.on_error=skip", "eval.test_at_end=false")
    text = (out / "train.log").read_text()
    assert "dropped 1 of 40 items of" in text and "train_000005.jpg" in text
    assert "dropped 1 of 40 items" in capsys.readouterr().out
    warnings.warn("a library's warning")  # Python warnings are captured as well
    assert "a library's warning" in (out / "train.log").read_text()


def test_random_file_as_checkpoint(tmp_path, script):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(RuntimeError) as e:
        script("test.py").main(["--ckpt", str(junk)])
    assert str(e.value).startswith(f"cannot read checkpoint {junk}: not a checkpoint written by "
                                   "train.py, or truncated (")
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- check_data
def test_check_data_reports_every_bad_entry_and_cleans_the_training_list(root, tmp_path):
    from tools.check_data import main as check_data
    with open(os.path.join(root, "frames", "train_000007.jpg"), "wb") as f:
        f.write(b"\xff\xd8 not a jpeg")  # exists, cannot be decoded
    os.remove(os.path.join(root, "audio", "train_000011.wav"))
    rewrite(os.path.join(root, "vggsound_single_train.txt"), lambda t: t + "half_a_line\n")
    x = np.zeros(SR, np.float32)
    x[3] = np.nan
    sf.write(os.path.join(root, "audio", "test_000004.wav"), x, SR, subtype="FLOAT")
    out = tmp_path / "report"
    rows = check_data(["--config", "configs/synthetic.yaml", *TINY, f"data.root={root}", "--workers",
                       "2", "--out", str(out), "--clean-train", str(tmp_path / "clean")])
    train_list = os.path.join(root, "vggsound_single_train.txt")
    found = {(split, where.replace(root + os.sep, "")) for split, where, _ in rows}
    assert found == {("train", "vggsound_single_train.txt:8"),
                     ("train", "vggsound_single_train.txt:12"),
                     ("train", "vggsound_single_train.txt:41"),
                     ("test vggss", "vggss_test.csv:5")}, rows
    reasons = " | ".join(r for _, _, r in rows)
    assert "cannot decode frame" in reasons and "audio file not found" in reasons
    assert "expected 2..3 non-empty comma-separated fields" in reasons
    assert "holds sample values such as nan" in reasons
    assert len((out / "check_data.tsv").read_text().splitlines()) == 1 + 4
    with open(train_list) as f:
        lines = f.read().splitlines()
    cleaned = (tmp_path / "clean" / "vggsound_single_train.txt").read_text().splitlines()
    assert cleaned == [x for n, x in enumerate(lines, 1) if n not in (8, 12, 41)]
    cfg = load_config("configs/synthetic.yaml", TINY + [f"data.root={root}",
                                                         f"data.metadata={tmp_path / 'clean'}"])
    shutil.copy(os.path.join(root, "vggss.json"), tmp_path / "clean")
    assert len(build_dataset(cfg, "train")) == 38  # the cleaned list trains without a drop


def test_check_data_never_cleans_a_list_in_place_nor_into_an_empty_list(root, tmp_path):
    """--clean-train pointed at the list's own folder, or over an earlier copy, is refused
    before any decoding; a data.root that makes every entry fail writes no (empty) list."""
    from tools.check_data import main as check_data
    args = ["--config", "configs/synthetic.yaml", *TINY, "--workers", "1", "--splits", "train",
            "--out", str(tmp_path / "report")]
    train_list = os.path.join(root, "vggsound_single_train.txt")
    before = open(train_list).read()
    with pytest.raises(InputError, match="would replace the list itself"):
        check_data(args + [f"data.root={root}", "--clean-train", root])
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "vggsound_single_train.txt").write_text("an earlier copy\n")
    with pytest.raises(FileExistsError, match=r"vggsound_single_train.txt exists; .*--overwrite"):
        check_data(args + [f"data.root={root}", "--clean-train", str(tmp_path / "clean")])
    assert not (tmp_path / "report").exists()  # refused before decoding
    wrong_root = shutil.copytree(root, str(tmp_path / "wrong"),
                                 ignore=shutil.ignore_patterns("frames", "audio"))
    with pytest.raises(InputError, match=r"every line of .*failed \(the first: .*not found"):
        check_data(args + [f"data.root={wrong_root}", "--clean-train", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
    assert open(train_list).read() == before
    check_data(args + [f"data.root={root}", "--clean-train", str(tmp_path / "clean"), "--overwrite"])
    assert (tmp_path / "clean" / "vggsound_single_train.txt").read_text() == before


def test_make_synthetic_never_writes_into_an_existing_folder(tmp_path):
    """tools.make_synthetic --out: an existing folder is refused; --overwrite replaces it whole
    (no stale file of the old one is left), and --out holds the benchmark complete."""
    from tools.make_synthetic import main as make_synthetic
    small = ["--image-size", "32", "--sample-rate", "4000", "--seconds", "0.25", "--num-train",
             "12", "--num-val", "4", "--num-test", "12", "--num-duet", "2", "--num-pairs", "4",
             "--num-trios", "2"]
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "train.txt").write_text("my own list\n")
    with pytest.raises(FileExistsError, match="exists and holds files.*--overwrite"):
        make_synthetic(["--out", str(out), *small])
    assert (out / "train.txt").read_text() == "my own list\n"
    (out / "frames").mkdir()
    (out / "frames" / "stale.jpg").write_bytes(b"old")
    make_synthetic(["--out", str(out), "--overwrite", *small])
    assert len((out / "train.txt").read_text().splitlines()) == 12
    assert not (out / "frames" / "stale.jpg").exists() and (out / "meta.json").exists()
    # no temporary folder left; synthetic.lock: the lock of runs reading it (using_data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic", "synthetic.lock"]


def test_an_evaluation_with_nothing_to_score_is_an_error_not_a_nan(root, tmp_path, script):
    """test.py --split val on a val carve-out without boxes: results.json records the NaN, and the
    command fails naming the set, instead of reporting AP nan with success."""
    from utils.errors import InputError
    out = tmp_path / "run"
    ckpt = fit(root, str(out), "eval.test_at_end=false", "data.val_fraction=0.25")
    with pytest.raises(InputError, match=r"nothing to score in vggss \[val\]: no item with an "
                                         r"annotated box"):
        script("test.py").main(["--ckpt", ckpt, "--split", "val", "--out", str(tmp_path / "t")])
    assert json.loads((tmp_path / "t" / "results.json").read_text())["split"] == "val"


@pytest.mark.parametrize("name,breaks", [
    ("test_000003.jpg", lambda root: open(os.path.join(root, "frames", "test_000003.jpg"),
                                          "wb").write(b"\xff\xd8 not a jpeg")),
    ("test_000004.wav", lambda root: open(os.path.join(root, "audio", "test_000004.wav"),
                                          "wb").write(b"RIFF not a wav")),
    ("test_000005.wav", lambda root: sf.write(os.path.join(root, "audio", "test_000005.wav"),
                                              np.full(SR, np.nan, np.float32), SR,
                                              subtype="FLOAT"))],
    ids=["corrupt jpg", "corrupt wav", "nan wav"])
def test_test_files_are_decoded_before_the_first_step(root, tmp_path, name, breaks):
    """A test file that exists but cannot be loaded stops train.py before training, naming it
    (not at the end of training)."""
    breaks(root)
    out = tmp_path / "run"
    with pytest.raises(DataError, match=rf"1 test item\(s\) cannot be loaded, the first: vggss: "
                                        rf".*{name}"):
        fit(root, out)
    assert not out.exists()


def test_test_py_never_replaces_results(root, tmp_path, script):
    """test.py beside a run that holds results (train.py's own test) writes to test-1, test-2,
    ...; an --out holding results needs --overwrite."""
    out = tmp_path / "run"
    ckpt = fit(root, str(out), "train.max_steps=1")  # tests at the end: out/results.json
    before = (out / "results.json").read_bytes()
    script("test.py").main(["--ckpt", ckpt])
    script("test.py").main(["--ckpt", ckpt, "eval.threshold=fixed:0.5"])
    assert (out / "results.json").read_bytes() == before
    assert (out / "test-1" / "results.json").exists() and (out / "test-2" / "test.log").exists()
    with pytest.raises(FileExistsError, match=r"holds results.json.*--overwrite"):
        script("test.py").main(["--ckpt", ckpt, "--out", str(out / "test-1")])
    script("test.py").main(["--ckpt", ckpt, "--out", str(out / "test-1"), "--overwrite"])


def test_check_data_names_the_common_reason_when_every_test_entry_fails(root, tmp_path, capsys):
    """Every test entry written as <id>.mp4: the report says none of the N entries can be used
    and why (not that the list has no entries), and the console shows the common reason and the
    first entries."""
    from tools.check_data import main as check_data
    rewrite(os.path.join(root, "vggss_test.csv"),  # id,class -> id.mp4,class
            lambda t: "".join(line.replace(",", ".mp4,", 1) + "\n" for line in t.splitlines()))
    rows = check_data(["--config", "configs/synthetic.yaml", *TINY, f"data.root={root}",
                       "--workers", "1", "--splits", "test", "--out", str(tmp_path)])
    reasons = " | ".join(r for _, _, r in rows)
    assert "none of its 12 entries can be used (the first: " in reasons and "no entries" not in \
        reasons.replace("none of its", "")
    console = capsys.readouterr().out
    assert "12 of the 13 bad entries fail the same way: " in console and "has no annotation" in console


# ----------------------------------------------------------------------------- round two
def test_unicode_class_names_are_kept_and_colliding_names_refused(root, tmp_path):
    """Names of any script stay distinct classes (小提琴 violin, 大提琴 cello were both '' once);
    two names of one file that would get one key but differ beyond case and punctuation are
    refused naming both; a name with no letter or digit is refused."""
    from datasets.records import read_list
    names = ["小提琴", "大提琴", "dôme", "däme"]
    lines = [line.split(",")[0] + "," + names[k % 4]
             for k, line in enumerate(open(os.path.join(root, "vggsound_single_train.txt")))]
    rewrite(os.path.join(root, "vggsound_single_train.txt"), lambda t: "\n".join(lines) + "\n")
    cfg = load_config("configs/synthetic.yaml", TINY + [f"data.root={root}"])
    assert build_dataset(cfg, "train").class_names == sorted(names)
    path = tmp_path / "list.txt"
    path.write_text("a,C++\nb,c\n")
    with pytest.raises(DataError, match=r"list.txt:2: class names 'c' and 'C\+\+' \(.*list.txt:1\) "
                                        r"would both be the class 'c'"):
        read_list(str(path), 2, 2)
    path.write_text("a,Police car (siren)\nb,police_car_siren\nc,???\n")
    with pytest.raises(DataError, match=r"list.txt:3: class name '\?\?\?' has no letter"):
        read_list(str(path), 2, 2)


def test_an_item_listed_twice_in_a_test_list_is_refused(root, tmp_path):
    """A duplicated test line would count its item twice: refused naming both lines."""
    first = open(os.path.join(root, "vggss_test.csv")).readline()
    rewrite(os.path.join(root, "vggss_test.csv"), lambda t: t + first)
    with pytest.raises(DataError, match=r"vggss_test.csv:13: test_\d+ is listed twice .*\(also "
                                        r".*vggss_test.csv:1\)"):
        fit(root, str(tmp_path / "run"))


def test_silent_test_audio_is_counted_and_named(root, tmp_path):
    """An all-zero wav (or one below -80 dBFS) is scored as any item, but counted as num_silent
    in results.json, with a warning naming it."""
    ids = [line.split(",")[0] for line in open(os.path.join(root, "vggss_test.csv"))]
    sf.write(os.path.join(root, "audio", ids[2] + ".wav"), np.zeros(SR, np.float32), SR)
    sf.write(os.path.join(root, "audio", ids[5] + ".wav"),
             np.random.default_rng(0).uniform(-5e-5, 5e-5, SR).astype(np.float32), SR)
    fit(root, str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())["results"]["vggss"]
    assert metrics["num_silent"] == 2 and metrics["num_excluded"] == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "2 item(s) with a silent source" in log and ids[2] in log


@pytest.mark.parametrize("text,message", [
    ("", r"empty.yaml: the config file is empty"),
    ("# only a comment\n", r"empty.yaml: the config file is empty")])
def test_an_empty_config_file_is_refused(tmp_path, text, message):
    (tmp_path / "empty.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path / "empty.yaml"))


def test_audio_keys_that_disagree_are_named():
    """data.audio.seconds changed alone: two thirds of every spectrogram would be padding."""
    with pytest.raises(ConfigError, match=r"seconds 1.0 x sample_rate 22050 = 22050 samples give "
                                          r"101 spectrogram columns at hop 220 \(stft\), but "
                                          r"frames is 300: 199 of them would be padding"):
        load_config(None, ["data.audio.seconds=1.0"])
    with pytest.raises(ConfigError, match=r"freq_bins \(300\) is more than the 257 bins"):
        load_config(None, ["data.audio.freq_bins=300"])
    load_config(["configs/music_duet.yaml", "configs/cpu.yaml"])  # the CPU overlay agrees


def test_a_data_root_in_use_is_not_regenerated(tmp_path):
    """A generated synthetic root that a live run reads (train.py, test.py hold a shared lock)
    is not regenerated at other sizes, nor replaced by tools.make_synthetic --overwrite: both
    are refused naming the run; once it ends, regeneration goes on."""
    from datasets.synthetic import ensure_synthetic, read_meta
    from tools.make_synthetic import main as make_synthetic
    from utils.run_folder import DataInUse, using_data
    small = dict(sample_rate=4000, seconds=0.25, num_train=8, num_val=2, num_test=4, num_duet=2,
                 num_pairs=2, num_trios=2)
    root = str(tmp_path / "synthetic")
    ensure_synthetic(root, image_size=32, **small)
    with using_data([root], "train.py --config mine.yaml"):
        with pytest.raises(DataInUse, match=rf"data root .*synthetic is in use by process "
                                            rf"{os.getpid()} .*\(train.py --config mine.yaml\)"):
            ensure_synthetic(root, image_size=48, **small)
        with pytest.raises(DataInUse, match="in use by process"):
            make_synthetic(["--out", root, "--overwrite", "--image-size", "48"])
        assert read_meta(root)["image_size"] == 32
    assert ensure_synthetic(root, image_size=48, **small) and read_meta(root)["image_size"] == 48


def test_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    """torch.save on a full disk says only `inline_container.cc:672 unexpected pos`: the save
    names the file and the disk instead, and leaves no temporary file."""
    import collections
    from utils import files
    from utils.checkpoint import save_checkpoint

    def full(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(files.shutil, "disk_usage",
                        lambda p: collections.namedtuple("U", "total used free")(1, 1, 0))
    with pytest.raises(files.DiskFull, match=r"cannot write .*checkpoint.pth: the disk holding it "
                                             r"is full"):
        save_checkpoint({"a": 1}, str(tmp_path / "checkpoint.pth"))
    assert os.listdir(tmp_path) == []


def test_entry_points_exit_2_on_bad_input_in_one_line(tmp_path):
    """demo.py and the tools end bad input as train.py and test.py do: one line, exit code 2."""
    for cmd in (["demo.py", "--ckpt", str(tmp_path / "none.pth"), "--video", "x.mp4"],
                ["-m", "tools.prepare_videos", "--videos", str(tmp_path / "none"), "--out",
                 str(tmp_path / "out")],
                ["-m", "tools.make_synthetic", "--out", __file__]):
        p = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 2 and p.stderr.startswith("error: ") \
            and len(p.stderr.strip().splitlines()) == 1, (cmd, p.returncode, p.stderr[-2000:])


def test_a_missing_val_list_names_the_key(root, tmp_path):
    with pytest.raises(DataError, match=r"data.val_list nope.csv: no such file in data.metadata"):
        fit(root, str(tmp_path / "run"), "data.val_list=nope.csv", "train.eval_every=1")
    assert not (tmp_path / "run").exists()



def test_pid_alive_reads_no_process_group():
    """utils.files.pid_alive (the lock holders and remove_stale's killed runs): 0 and -1 would be
    process groups to os.kill, so they name no process; neither does a non-number."""
    from utils.files import pid_alive
    assert pid_alive(os.getpid()) and pid_alive(str(os.getpid()))
    assert not pid_alive(0) and not pid_alive(-1) and not pid_alive("x")
