"""``nhance-batch finetune``: adapt a pretrained generator to another phone from image pairs."""

from __future__ import annotations

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT

INTERRUPTED_EXIT = 130


def _run_interruptible(run, config, update):
    """Run locally; the first Ctrl-C saves the state at the end of the current step and stops
    (a second one stops at once)."""
    import signal
    import threading

    asked = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        if asked.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        asked.set()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        return run(config, update, stop=asked.is_set)
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_bar(total: int):
    """A rich progress bar (step, losses, steps/s, ETA) and the callback that drives it."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("fine-tune"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[losses]}"),
                   TextColumn("{task.fields[rate]} steps/s"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), transient=False,
                   console=Console(stderr=True))  # stdout stays for the result (--json)
    task = bar.add_task("train", total=total, losses="", rate="-")

    def update(event) -> None:
        if not bar.live.is_started:  # shown from the first step: checks and set-up print first
            bar.start()
        keys = ("loss", "color", "content", "texture", "tv", "psnr")
        losses = " ".join(f"{k} {event.losses[k]:.4g}" for k in keys if k in event.losses)
        note = " [saved]" if event.checkpointed else ""
        if event.validation:
            note += f" [val PSNR {event.validation['psnr']:.2f} dB]"
        bar.update(task, completed=event.step, losses=losses + note,
                   rate=f"{event.steps_per_s:.2f}")

    return bar, task, update


@click.command("finetune")
@click.option("--pairs", "pairs_dir", required=True, metavar="DIR",
              help="Folder or fsspec URL with phone/ and target/ (or DPED's <phone>/ and "
                   "canon/) holding aligned image pairs of the same names and sizes.")
@click.option("--name", required=True, help="Name of the new model (used as --model NAME).")
@click.option("--base", default="iphone", metavar="iphone|blackberry|sony|PATH",
              help="Pretrained generator to start from: a model name or a checkpoint path.")
@click.option("--steps", type=int, default=1000, help="Training iterations.")
@click.option("--batch", type=int, default=50, help="Patches per iteration.")
@click.option("--patch", type=int, default=100, help="Patch side in pixels.")
@click.option("--lr", type=float, default=1e-4,
              help="Adam learning rate of generator and discriminator (DPED trains from "
                   "scratch at 5e-4; fine-tuning does better lower, see docs/finetune.md).")
@click.option("--content", type=click.Choice(["efficientnet-lite0", "vgg19", "none"]),
              default="efficientnet-lite0", help="Content-loss network.")
@click.option("--content-weight", type=float, default=10.0, help="Weight of the content loss.")
@click.option("--color-weight", type=float, default=0.5, help="Weight of the colour loss.")
@click.option("--texture-weight", type=float, default=1.0,
              help="Weight of the adversarial texture loss (0: no discriminator).")
@click.option("--tv-weight", type=float, default=2000.0, help="Weight of the TV loss.")
@click.option("--val-fraction", type=float, default=0.1,
              help="Share of the pairs (by file) held out for validation.")
@click.option("--out", default=None, metavar="DIR",
              help="Where the model goes (folder or fsspec URL); default: the user model folder.")
@click.option("--resume", is_flag=True, help="Continue the unfinished fine-tune in the output.")
@click.option("--checkpoint-every", type=int, default=200,
              help="Save the resumable state every K steps.")
@click.option("--eval-every", type=int, default=0,
              help="Validate every N steps (0: only before and after).")
@click.option("--seed", type=int, default=0, help="Seed of the split, patches and "
              "discriminator.")
@click.option("--no-jit", is_flag=True, help="Do not compile the step with XLA.")
@click.option("--address", default=None, metavar="RAY_ADDRESS",
              help="Train as an actor on this Ray cluster (on a GPU node when it has one).")
@click.option("--storage-options", default=None, metavar="JSON",
              help="fsspec options for --pairs and --out URLs.")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting model.json.")
def finetune(pairs_dir: str, name: str, base: str, steps: int, batch: int, patch: int,
             lr: float, content: str, content_weight: float, color_weight: float,
             texture_weight: float, tv_weight: float, val_fraction: float, out: str | None,
             resume: bool, checkpoint_every: int, eval_every: int, seed: int, no_jit: bool,
             address: str | None, storage_options: str | None, as_json: bool) -> None:
    """Fine-tune a pretrained DPED generator for another phone from aligned image pairs.

    Bad data (no pairs, names on one side only, different sizes, unreadable files, images
    smaller than the patch) is listed in one error, exit 2, before training starts.
    """
    import json

    from nhance_batch import storage
    from nhance_batch.finetune.losses import LossWeights
    from nhance_batch.finetune.pairs import PairError
    from nhance_batch.finetune.state import StateError
    from nhance_batch.finetune.train import FinetuneConfig, FinetuneError, finetune as run
    from nhance_batch.model.checkpoint import CheckpointError
    from nhance_batch.model.registry import ModelError

    try:
        options = storage.parse_storage_options(storage_options)
        config = FinetuneConfig(
            pairs=pairs_dir, name=name, base=base, steps=steps, batch=batch, patch=patch, lr=lr,
            content=content,
            weights=LossWeights(content=content_weight, color=color_weight,
                                texture=texture_weight, tv=tv_weight),
            val_fraction=val_fraction, out=out, resume=resume, checkpoint_every=checkpoint_every,
            eval_every=eval_every, seed=seed, jit=not no_jit, storage_options=options or None)
        bar, _, update = _progress_bar(steps)
        try:
            if address:
                from nhance_batch.finetune.remote import finetune_on_cluster

                info = finetune_on_cluster(config, address, update)
            else:
                info = _run_interruptible(run, config, update)
        finally:
            bar.stop()
    except (PairError, FinetuneError, StateError, ModelError, CheckpointError,
            storage.StorageError, ValueError) as exc:
        click.echo(f"error: {storage.redact(str(exc))}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    if "stopped_at" in info:
        click.echo(f"stopped at step {info['stopped_at']}, state saved; continue with the same "
                   "command and --resume", err=True)
        raise SystemExit(INTERRUPTED_EXIT)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    m = info["metrics"]

    def fmt(k):
        psnr = m[k]["psnr"]
        return f"PSNR {psnr:.2f} dB, SSIM {m[k]['ssim']:.4f}" if psnr is not None and \
            psnr == psnr else "n/a"

    where = out or str(_user_folder(name))
    use = f"--model {name}" if not out else f"--model-path {where}/{name}"
    click.echo(f"model {name!r} -> {where} ({info['steps']} steps from {base}, content "
               f"{content}); on {m['on']} pairs:\n  input:      {fmt('identity')}\n"
               f"  base model: {fmt('base')}\n  fine-tuned: {fmt('finetuned')}\n"
               f"use it with {use}")


def _user_folder(name: str):
    from nhance_batch.model.registry import user_models_dir

    return user_models_dir() / name
