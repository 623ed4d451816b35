"""A tiny training run that the engine's subprocess tests start (kill -9 and resume, torchrun).

Writes the final weights to ``<out>/rank<R>.safetensors`` and the history to
``<out>/rank<R>.json``. ``--kill-at-epoch K`` sends SIGKILL to itself at the 4th step of
epoch K (0-based), after the checkpoints of epochs 0..K-1 were written.
"""

import argparse
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from edgewise.engine import TrainConfig, fit
from edgewise.engine.loop import cross_entropy


def tiny_splits() -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(384, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    return SimpleNamespace(
        train=TensorDataset(x[:256], y[:256]), val=TensorDataset(x[256:], y[256:])
    )


def tiny_model(plain: bool) -> nn.Module:
    """With BatchNorm and dropout (random state to restore), or `plain` for exact DDP sums."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Identity() if plain else nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Identity() if plain else nn.Dropout(0.2),
        nn.Linear(4 * 64, 2),
    )


def train(
    run_dir: Path | None = None,
    epochs: int = 4,
    batch_size: int = 32,
    kill_at_epoch: int | None = None,
    resume: bool = False,
    plain: bool = False,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Train the tiny model; return the history rows (without timings) and the final weights."""
    splits = tiny_splits()
    model = tiny_model(plain)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=0.05,
        device="cpu",
        threads=1,
        augment=not plain,
        warmup_epochs=1,
    )
    steps = len(splits.train) // int(os.environ.get("WORLD_SIZE", "1")) // batch_size

    def loss_fn(net, images, labels, state):
        if state.epoch == kill_at_epoch and state.step == state.epoch * steps + 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return cross_entropy(net, images, labels, state)

    history = fit(
        model, splits, config, run_dir=run_dir, resume=resume, loss_fn=loss_fn, progress=False
    )
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows]
    return rows, model.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--kill-at-epoch", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    rows, weights = train(
        args.run_dir, args.epochs, args.batch_size, args.kill_at_epoch, args.resume, args.plain
    )
    rank = int(os.environ.get("RANK", "0"))
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, args.out / f"rank{rank}.safetensors")
    (args.out / f"rank{rank}.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
