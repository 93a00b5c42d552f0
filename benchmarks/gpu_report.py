"""The figures of a benchmarks/gpu_check.sh run, from its output folder, in one JSON.

    python -m benchmarks.gpu_report gpu_check_out      # writes gpu_check_out/gpu_check.json

Reads status.txt (stage, exit status, seconds), environment.json, bench.log (the model-only
table and the profile of benchmarks.bench_train), train.jsonl / run_compile.jsonl (train.py's
log.jsonl: samples/s and the share of time waiting for data), resume_stopped.log / resume.log
(the step the stopped run saved and the step the resumed one started from) and results_bf16.json /
results_none.json (test.py of the same checkpoint under bf16 and fp32).
"""
import argparse
import json
import os
import re


def _read(folder, name):
    path = os.path.join(folder, name)
    return open(path).read() if os.path.isfile(path) else ""


def _jsonl(folder, name):
    return [json.loads(line) for line in _read(folder, name).splitlines() if line.strip()]


def bench_rows(text):
    """{variant: {samples_per_s, tflops, peak_share}} from benchmarks.bench_train's table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"[\d.]+", cells[1]):
            peak = cells[4].rstrip("%")
            rows[cells[0]] = {"samples_per_s": float(cells[1]), "tflops": float(cells[3]),
                              "peak_share": float(peak) / 100 if peak != "-" else None}
    return rows


def training(records, model_only):
    """The last epoch record of a train.py run against the model-only rate of its variant."""
    if not records:
        return None
    r = records[-1]
    rate = r.get("train_samples_per_s")
    return {"samples_per_s": rate, "data_wait": r.get("train_data_wait"), "steps": r.get("step"),
            "of_model_only": rate / model_only if rate and model_only else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", help="the output folder of benchmarks/gpu_check.sh")
    folder = p.parse_args(argv).folder
    status = [line.split() for line in _read(folder, "status.txt").splitlines() if line.strip()]
    bench = bench_rows(_read(folder, "bench.log"))
    plain = next((v for k, v in bench.items() if "compile" not in k), {})
    compiled = next((v for k, v in bench.items() if "compile" in k), {})
    profile = _read(folder, "bench.log").partition("top 10 by self time:")[2].strip()
    saved = re.findall(r"saved .* at step (\d+)", _read(folder, "resume_stopped.log"))
    resumed = re.findall(r"resumed from .* step (\d+)", _read(folder, "resume.log"))
    tests = {amp: json.loads(_read(folder, f"results_{amp}.json") or "{}").get("results", {})
             for amp in ("bf16", "none")}
    differences = {name: {k: v - tests["none"][name][k] for k, v in metrics.items()
                          if isinstance(v, float) and isinstance(tests["none"][name].get(k), float)}
                   for name, metrics in tests["bf16"].items() if name in tests["none"]}
    report = {
        "stages": {s[0]: {"exit": int(s[1]), "seconds": int(s[2])} for s in status},
        "environment": json.loads(_read(folder, "environment.json") or "{}"),
        "model_only": bench,
        "train": training(_jsonl(folder, "run.jsonl"), plain.get("samples_per_s")),
        "train_compile": training(_jsonl(folder, "run_compile.jsonl"),
                                  compiled.get("samples_per_s")),
        "resume": {"saved_step": int(saved[-1]) if saved else None,
                   "resumed_from_step": int(resumed[-1]) if resumed else None},
        "test_bf16": tests["bf16"], "test_bf16_minus_fp32": differences,
        "profile_top10": profile,
    }
    with open(os.path.join(folder, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("stages", "train", "train_compile", "resume")},
                     indent=1))
    return report


if __name__ == "__main__":
    main()
