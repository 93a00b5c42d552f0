"""Training-loader throughput: this pipeline vs the authors' per-item PyAV + scipy path.

    python -m benchmarks.bench_data                       # generates 512 items in a temp dir
    python -m benchmarks.bench_data --root data/music --list music_solo_train.txt

Both loaders do the same work per item with the same DataLoader (batch 32, --workers processes):
decode a jpg frame, resize short side + random crop + flip + ImageNet normalization, decode a
3-s audio window at 22050 Hz and compute its log spectrogram.
* ours: `AudioVisualDataset` (soundfile reads only the window, polyphase resampling,
  torch.stft, JPEG draft decoding);
* authors' path (EZ-VSL / AVGN code): per item `av.open` of the audio container, seek, decode and
  resample with PyAV's resampler, `scipy.signal.spectrogram(nperseg=512, noverlap=274)`, and
  torchvision transforms (bicubic resize) on the frame.
Prints items/s of each and the ratio. The default data: 480p jpgs and 10-s 44.1 kHz wavs.
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from datasets import AudioVisualDataset, collate, read_list
from datasets.benchmarks import media_record
from tests.fixtures import make_root
from utils.config import DataConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="", help="data root (frames/, audio/); default: generate one")
    p.add_argument("--list", default="", help="list file (id[,class]); default: all frames/*.jpg")
    p.add_argument("--items", type=int, default=512, help="items to generate / to load")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--size", type=int, default=224, help="image size")
    return p.parse_args(argv)


class AuthorsPath(torch.utils.data.Dataset):
    """The per-item path of the authors' code (EZ-VSL `load_spectrogram` / `load_audio_av`)."""

    def __init__(self, records, size, sample_rate=22050, seconds=3.0):
        from torchvision import transforms
        self.records, self.sample_rate, self.seconds = records, sample_rate, seconds
        self.transform = transforms.Compose([
            transforms.Resize(int(size * 1.1), transforms.InterpolationMode.BICUBIC),
            transforms.RandomCrop((size, size)), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    def __len__(self):
        return len(self.records)

    def load_audio_av(self, path):
        import av
        container = av.open(path)
        stream = container.streams.audio[0]
        duration = float(stream.duration * stream.time_base)
        start = max(duration / 2 - self.seconds / 2, 0)
        container.seek(int(start / stream.time_base), stream=stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        chunks, n = [], int(self.sample_rate * self.seconds)
        for frame in container.decode(audio=0):
            if frame.time is not None and frame.time + frame.samples / frame.sample_rate < start:
                continue
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
            if sum(len(c) for c in chunks) >= n:
                break
        container.close()
        audio = np.clip(np.concatenate(chunks), -1, 1)
        if len(audio) < n:
            audio = np.tile(audio, n // len(audio) + 1)
        return audio[:n]

    def __getitem__(self, i):
        from scipy import signal
        r = self.records[i]
        image = self.transform(Image.open(r.frame).convert("RGB"))
        audio = self.load_audio_av(r.audio)
        _, _, spec = signal.spectrogram(audio, self.sample_rate, nperseg=512, noverlap=274)
        spec = torch.from_numpy(np.log(spec + 1e-7)).float()[None]
        return {"image": image, "spec": spec}


def throughput(dataset, batch, workers, collate_fn=None):
    """items/s over one pass (the first batch, which includes worker start-up, is not timed)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                         shuffle=True, drop_last=True, collate_fn=collate_fn)
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for b in it:
        n += len(b["image"])
    return n / (time.perf_counter() - t0)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    tmp = None
    root = args.root
    if not root:
        tmp = tempfile.TemporaryDirectory()
        root = tmp.name
        t0 = time.perf_counter()
        ids = make_root(root, args.items)
        print(f"generated {len(ids)} items (854x480 jpg, 10 s 44.1 kHz wav) in "
              f"{time.perf_counter() - t0:.0f} s under {root}")
    elif args.list:
        ids = [e.id for e in read_list(args.list, 1, 3)][:args.items]
    else:
        ids = sorted(f[:-4] for f in os.listdir(os.path.join(root, "frames")))[:args.items]
    records = [media_record(root, i, ["x"]) for i in ids]
    cfg = DataConfig(root=root, image_size=args.size)
    ours = AudioVisualDataset([(r,) for r in records], ["x"], cfg, train=True)
    authors = AuthorsPath(records, args.size, cfg.audio.sample_rate, cfg.audio.seconds)
    a = throughput(authors, args.batch, args.workers)
    o = throughput(ours, args.batch, args.workers, collate)
    print(f"{len(records)} items, {args.workers} workers, batch {args.batch}, "
          f"{torch.get_num_threads()} torch thread(s) per process, {os.cpu_count()} cpus")
    print(f"authors' path (PyAV open+seek+resample, scipy spectrogram): {a:8.1f} items/s")
    print(f"this pipeline (soundfile window, resample_poly, torch.stft): {o:8.1f} items/s")
    print(f"ratio: {o / a:.2f}x")
    if tmp is not None:
        tmp.cleanup()
    return {"ours": o, "authors": a, "ratio": o / a}


if __name__ == "__main__":
    main()
