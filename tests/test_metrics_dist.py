"""Evaluators under torch.distributed (2 gloo processes via torchrun) equal one process, with the
DistributedSampler's padding (a repeated index) counted once."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = 7  # odd: DistributedSampler pads rank 1 with a repeat of index 0


def _data():
    rng = np.random.default_rng(0)
    maps = rng.random((NUM, 2, 8, 16)).astype(np.float32)
    gts = rng.random((NUM, 2, 8, 16)) < 0.3
    gts[3, 1] = False  # one excluded source
    classes = np.stack([rng.choice(10, 2, replace=False) for _ in range(NUM)])
    classes[5, 1] = -1  # one padded source
    scores = rng.random((NUM, 10)).astype(np.float32)
    slot = np.tile(np.arange(2), (NUM, 1))
    return maps, gts, classes, scores, slot


def _evaluate(indices):
    """Run both evaluators over `indices` (one sample per update) and return their results."""
    import metrics
    maps, gts, classes, scores, slot = _data()
    single = metrics.SingleSourceEvaluator(iou_thresholds=(0.5, 0.3))
    multi = metrics.MultiSourceEvaluator(protocol="source")
    for i in indices:
        single.update(maps[i:i + 1, 0], gts[i:i + 1, 0], [i], ids=[f"s{i}"])
        multi.update(maps[i:i + 1], maps[i:i + 1, ::-1], gts[i:i + 1], classes[i:i + 1],
                     scores[i:i + 1], slot[i:i + 1], [i])
    return {"single": single.compute(), "multi": multi.compute(), "rows": len(single.rows())}


def _worker(out_path):
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler
    dist.init_process_group("gloo")
    sampler = DistributedSampler(range(NUM), num_replicas=dist.get_world_size(),
                                 rank=dist.get_rank(), shuffle=False)
    indices = list(sampler)
    result = _evaluate(indices)
    result["num_seen"] = len(indices)
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "dist.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.abspath(__file__), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(out.read_text())
    want = json.loads(json.dumps(_evaluate(range(NUM))))
    assert got["num_seen"] == 4  # 7 items over 2 ranks: rank 0 sees 4, with the padding
    assert got["single"] == want["single"] and got["multi"] == want["multi"]
    assert got["rows"] == NUM and got["single"]["num_samples"] == NUM
    assert got["multi"]["num_excluded"] == 1 and got["multi"]["num_sources"] == 2 * NUM - 2


if __name__ == "__main__":  # under torchrun, with PYTHONPATH=ROOT
    _worker(sys.argv[1])
