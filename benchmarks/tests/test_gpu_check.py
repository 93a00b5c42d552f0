"""benchmarks/gpu_check.sh as a dry run on the CPU at tiny size: every stage but the GPU itself."""
import json
import os
import subprocess
import sys


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", GPU_CHECK_TINY="1", GPU_CHECK_OUT=str(out),
               OMP_NUM_THREADS="1", PYTHON=sys.executable)  # the interpreter of the tests
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert {s: v["exit"] for s, v in report["stages"].items()} == {
        "tests": 0, "bench": 0, "train": 0, "resume": 0, "test_bf16": 0, "test_none": 0,
        # SIGTERM: train.py saves and exits 3 (EXIT_STOPPED), which torchrun reports as its 1
        "resume_stopped": 1}, report["stages"]
    assert report["train"]["samples_per_s"] > 0 and 0 <= report["train"]["data_wait"] <= 1
    assert report["model_only"]["cl+fp32"]["samples_per_s"] > 0
    assert report["train"]["of_model_only"] > 0
    # the stopped run saved mid-run and the resumed one continued from that step
    assert report["resume"]["saved_step"] == report["resume"]["resumed_from_step"] > 0
    assert set(report["test_bf16"]) == {"synthetic:test", "synthetic:test_pairs"}
    assert report["test_bf16_minus_fp32"]["synthetic:test"]["AP"] == 0.0  # bf16 is CUDA-only
    assert "Name" in report["profile_top10"]
