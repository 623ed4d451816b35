"""Baseline: every zoo model trained on Fashion-MNIST, with its accuracy and measured cost.

Writes benchmarks/results/baseline.json (and baseline.png): test accuracy, MACs,
parameters, seconds per epoch and batch-256 inference latency of each model,
all measured in one run on one machine.

    python benchmarks/baseline.py --epochs 5 --limit 12000 --threads 1   # the committed results
    python benchmarks/baseline.py            # every image, 10 epochs (hours for mobilenetv2 on a CPU)
    python benchmarks/baseline.py --quick    # smoke run on a small subset

Each model trains with its family's recipe (`edgewise.engine.recipe`, as `edgewise train`),
without augmentation. The committed run caps the data so that mobilenetv2 (about 27 ms
per image per epoch on one core) fits in minutes; resnet-8 reaches 92.58 % on every image
with `edgewise train resnet --data fashion-mnist --epochs 10`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from edgewise import cost, data, engine, models, report

RESULTS = Path(__file__).parent / "results"
# Per family: the zoo defaults, trained with the engine's defaults at these epochs.
MODELS = {
    "convnet": {},
    "mobilenetv2": {},
    "resnet": {"depth": 8},
    "vit": {},
}


def benchmark_model(
    name: str, kwargs: dict, splits: data.Splits, epochs: int, device: str, repeats: int,
    threads: int | None,
) -> dict:
    """Train `name` with its family's recipe (as `edgewise train` does), then test and time it."""
    model = models.build(name, splits.num_classes, splits.input_shape, **kwargs)
    config = engine.TrainConfig(epochs=epochs, seed=0, device=device, threads=threads,
                                **engine.recipe(name, epochs))
    history = engine.fit(model, splits, config, progress=True)
    test = engine.evaluate(model, splits.test, device=device)
    model = model.cpu().eval()
    images = splits.test.tensors[0]
    macs = cost.count_macs(model, images[:1])
    batch = images[:256]
    with torch.inference_mode():
        timing = cost.time_it(lambda: model(batch), warmup=2, repeats=repeats, threads=threads)
    seconds = history["seconds"]
    return {
        "model": name,
        "kwargs": kwargs,
        "test_accuracy": test["accuracy"],
        "macs": macs.total,
        "params": macs.params_total,
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "latency_b256_ms": 1e3 * timing.median_s,
        "threads": timing.threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch on 1000 images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--limit", type=int, default=None, help="cap on each split's size")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    epochs, limit, repeats = (1, 1000, 3) if args.quick else (args.epochs, args.limit, 15)
    device = str(engine.resolve_device(args.device))

    splits = data.load("fashion-mnist", limit=limit)
    rows = [benchmark_model(n, MODELS[n], splits, epochs, device, repeats, args.threads)
            for n in args.models]

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"dataset": splits.name, "epochs": epochs, "quick": args.quick,
               "augment": False, "train_images": len(splits.train), "test_images": len(splits.test), "models": rows}
    report.write_result(RESULTS / "baseline.json", payload, kind="baseline")
    report.bar_plot(
        RESULTS / "baseline.png",
        {r["model"]: 100 * r["test_accuracy"] for r in rows},
        ylabel="test accuracy (%)",
        title=f"Zoo baselines on {splits.name}, {epochs} epochs",
    )
    report.print_table(
        f"Zoo baselines on {splits.name} ({epochs} epochs)",
        ["model", "test acc %", "MMACs", "k params", "s/epoch", "b256 ms"],
        [
            [
                r["model"],
                f"{100 * r['test_accuracy']:.2f}",
                f"{r['macs'] / 1e6:.2f}",
                f"{r['params'] / 1e3:.1f}",
                f"{r['seconds_per_epoch']:.1f}",
                f"{r['latency_b256_ms']:.1f}",
            ]
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
