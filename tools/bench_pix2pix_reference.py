"""Times the PyTorch reference pix2pix train step, so DermGAN's speed target is measured on the same machine.

Issue 7's target for DermGAN at 256 px is a throughput ratio: at least 1.3x the reference pix2pix
(junyanz/pytorch-CycleGAN-and-pix2pix, ``--netG unet_256 --netD basic``) in each one's best precision. A
ratio only means something when both sides ran on the same machine, so this script rebuilds the
reference's networks and its ``optimize_parameters`` in PyTorch and times them the way ``tools/bench.py``
times ours (median step after warm-up, first step on its own), writing rows that ``tools/bench.py
--reference`` reads.

What is rebuilt (from the pix2pix paper, Appendix 6.1, and the reference's defaults for ``pix2pix``):
    - G ``unet_256``: 8 down blocks ``LeakyReLU(0.2) -> Conv 4x4/2 -> BatchNorm`` (no norm on the
      outermost and innermost; no conv bias next to BatchNorm), 8 up blocks ``ReLU -> ConvTranspose 4x4/2
      -> BatchNorm`` with U-Net concatenation, dropout 0.5 in the three 512-channel up blocks after the
      innermost (pix2pix trains with dropout), ``Tanh`` output; ngf 64. Weights N(0, 0.02), BatchNorm scales
      N(1, 0.02).
    - D ``basic``: the 70x70 PatchGAN on ``cat(A, B)``: Conv 4x4/2 64 (bias) -> LeakyReLU, two Conv
      4x4/2 + BatchNorm + LeakyReLU blocks (128, 256), Conv 4x4/1 512 + BatchNorm + LeakyReLU, Conv 4x4/1 1.
    - One step = the reference's ``optimize_parameters``: ``fake = G(A)``; D step on
      ``D(cat(A, fake.detach()))`` and ``D(cat(A, B))`` with BCE-with-logits halved; G step with D's
      parameters frozen on ``BCE(D(cat(A, fake)), 1) + 100 * L1(fake, B)``; Adam 2e-4, betas (0.5, 0.999).

DermGAN's step (``keras_medgan.gans.DermGAN``) does all of that plus the lesion-box L1 and feature matching
(one more forward pass of D on the real pair), so the comparison is with the full DermGAN loss.

Needs PyTorch, which keras-medgan does not depend on; use a separate environment, e.g.::

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    /tmp/torchvenv/bin/python tools/bench_pix2pix_reference.py --json reference.json
    python tools/bench.py --models dermgan256 --precision mixed_bfloat16 --reference reference.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report  # noqa: E402  (pure: no TensorFlow)

LABEL = "pix2pix reference (PyTorch, unet_256 + basic PatchGAN)"


def build_networks(torch, ngf: int = 64, ndf: int = 64, dropout: bool = True):
    """The reference's ``unet_256`` generator and ``basic`` PatchGAN discriminator, initialised N(0, 0.02)."""
    nn = torch.nn

    class UNet(nn.Module):
        """unet_256 written as two lists: encoder blocks and decoder blocks joined by skip concatenation."""

        def __init__(self):
            super().__init__()
            widths = [ngf, ngf * 2, ngf * 4, ngf * 8, ngf * 8, ngf * 8, ngf * 8, ngf * 8]
            self.down = nn.ModuleList()
            in_ch = 3
            for i, out_ch in enumerate(widths):
                layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
                layers.append(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False))
                if 0 < i < len(widths) - 1:
                    layers.append(nn.BatchNorm2d(out_ch))
                self.down.append(nn.Sequential(*layers))
                in_ch = out_ch
            self.up = nn.ModuleList()
            # Decoder, innermost first: input channels are the previous output (+ the skip from i >= 1).
            for j in range(len(widths) - 1, -1, -1):
                out_ch = 3 if j == 0 else widths[j - 1]
                in_ch = widths[j] if j == len(widths) - 1 else widths[j] * 2
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=j == 0)]
                if j == 0:
                    layers.append(nn.Tanh())
                else:
                    layers.append(nn.BatchNorm2d(out_ch))
                    if dropout and 4 <= j <= 6:  # the three 512-channel blocks just outside the innermost
                        layers.append(nn.Dropout(0.5))
                self.up.append(nn.Sequential(*layers))

        def forward(self, x):
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
            x = self.up[0](skips.pop())
            for block in self.up[1:]:
                x = block(torch.cat([skips.pop(), x], 1))
            return x

    def patch_gan():
        layers = [nn.Conv2d(6, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        in_ch = ndf
        for mult, stride in ((2, 2), (4, 2), (8, 1)):
            layers += [nn.Conv2d(in_ch, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2)]
            in_ch = ndf * mult
        layers.append(nn.Conv2d(in_ch, 1, 4, 1, 1))
        return nn.Sequential(*layers)

    def init(module):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    generator, discriminator = UNet(), patch_gan()
    generator.apply(init)
    discriminator.apply(init)
    return generator, discriminator


def make_step(torch, generator, discriminator, precision: str, lambda_l1: float = 100.0):
    """The reference's ``optimize_parameters`` as one callable on ``(real_A, real_B)``."""
    bce, l1 = torch.nn.BCEWithLogitsLoss(), torch.nn.L1Loss()
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bfloat16" else None

    def context():
        return autocast() if autocast else torch.enable_grad()

    def set_requires_grad(flag):
        for p in discriminator.parameters():
            p.requires_grad_(flag)

    def step(real_a, real_b):
        with context():
            fake_b = generator(real_a)
        set_requires_grad(True)
        opt_d.zero_grad()
        with context():
            pred_fake = discriminator(torch.cat([real_a, fake_b.detach()], 1))
            pred_real = discriminator(torch.cat([real_a, real_b], 1))
            loss_d = 0.5 * (bce(pred_fake.float(), torch.zeros_like(pred_fake, dtype=torch.float32))
                            + bce(pred_real.float(), torch.ones_like(pred_real, dtype=torch.float32)))
        loss_d.backward()
        opt_d.step()
        set_requires_grad(False)
        opt_g.zero_grad()
        with context():
            pred_fake = discriminator(torch.cat([real_a, fake_b], 1))
            loss_g = (bce(pred_fake.float(), torch.ones_like(pred_fake, dtype=torch.float32))
                      + lambda_l1 * l1(fake_b.float(), real_b))
        loss_g.backward()
        opt_g.step()
        return float(loss_g.detach()), float(loss_d.detach())

    return step


def bench_row(torch, size: int, batch_size: int, precision: str, channels_last: bool, steps: int,
              warmup: int, seed: int = 0) -> dict:
    """Times one (batch, precision, layout) setting: first step, then the median of ``steps`` after ``warmup``."""
    torch.manual_seed(seed)
    generator, discriminator = build_networks(torch)
    generator.train()
    discriminator.train()
    real_a = torch.rand(batch_size, 3, size, size) * 2 - 1
    real_b = torch.rand(batch_size, 3, size, size) * 2 - 1
    if channels_last:
        generator = generator.to(memory_format=torch.channels_last)
        discriminator = discriminator.to(memory_format=torch.channels_last)
        real_a = real_a.contiguous(memory_format=torch.channels_last)
        real_b = real_b.contiguous(memory_format=torch.channels_last)
    step = make_step(torch, generator, discriminator, precision)
    start = time.perf_counter()
    losses = step(real_a, real_b)
    first = time.perf_counter() - start
    for _ in range(warmup):
        step(real_a, real_b)
    times, cpu = [], time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        losses = step(real_a, real_b)
        times.append(time.perf_counter() - start)
    cpu_per_step = (time.process_time() - cpu) / steps
    median = statistics.median(times)
    return {
        "benchmark": "train_step", "model": "pix2pix_reference", "label": LABEL, "image_size": size,
        "batch_size": batch_size, "precision": precision + (" channels_last" if channels_last else ""),
        "jit": False, "strategy": "default", "first_step_s": first, "median_step_s": median,
        "min_step_s": min(times), "cpu_s_per_step": cpu_per_step, "images_per_s": batch_size / median,
        "steps": steps, "warmup": warmup, "final_losses": {"g": losses[0], "d": losses[1]},
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side; unet_256 needs 256 (default 256)")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated (default 1,4, issue 7's)")
    parser.add_argument("--precision", default="float32,bfloat16",
                        help="comma-separated: float32, bfloat16 (CPU autocast) (default both)")
    parser.add_argument("--layouts", default="channels_last,contiguous",
                        help="comma-separated memory formats: channels_last, contiguous (default both)")
    parser.add_argument("--steps", type=int, default=10, help="counted steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted steps after the first (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's choice, all cores)")
    parser.add_argument("--json", default="reference.json", help="result file (default reference.json)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    layouts = [p.strip() for p in args.layouts.split(",") if p.strip()]
    for value, allowed, name in ((precisions, ("float32", "bfloat16"), "--precision"),
                                 (layouts, ("channels_last", "contiguous"), "--layouts")):
        bad = [v for v in value if v not in allowed]
        if bad:
            print(f"error: {name} accepts {', '.join(allowed)}; got {', '.join(bad)}", file=sys.stderr)
            return 2
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        batch_sizes = []
    if not batch_sizes or min(batch_sizes) < 1 or args.steps < 1 or args.warmup < 0:
        print(f"error: --batch-sizes takes integers >= 1 (got {args.batch_sizes!r}), --steps >= 1 and --warmup >= 0",
              file=sys.stderr)
        return 2
    if args.size != 256:
        print("error: --size must be 256: unet_256 has 8 stride-2 levels and is defined at 256 px", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("error: this benchmark needs PyTorch, which keras-medgan does not install. Run it from an "
              "environment with torch (python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch "
              "numpy), then pass its JSON to `python tools/bench.py --reference FILE`.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    load_start = os.getloadavg()[0]
    for batch_size in batch_sizes:
        for precision in precisions:
            for layout in layouts:
                before = os.getloadavg()[0]
                row = bench_row(torch, args.size, batch_size, precision, layout == "channels_last",
                                args.steps, args.warmup)
                row["load_1m"] = f"{before:.2f}→{os.getloadavg()[0]:.2f}"
                print({k: row[k] for k in ("batch_size", "precision", "median_step_s", "images_per_s")},
                      flush=True)
                rows.append(row)
    result = {
        "version": bench_report.RESULT_VERSION,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpus": [],
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "load_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "command": "python tools/bench_pix2pix_reference.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "results": rows,
    }
    tmp = f"{args.json}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:  # atomic: a killed run never leaves half a file
        json.dump(result, f, indent=2)
    os.replace(tmp, args.json)
    print(bench_report.markdown(result), end="", flush=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
