"""Fine-tune a pretrained DPED generator on pairs from another phone: the training loop.

The generator is the one the enhancer runs (:func:`nhance_batch.model.dped.forward`), trained
as arrays through pure ``keras.ops`` functions, so one step runs on TensorFlow and on JAX
(:mod:`nhance_batch.finetune.backend`). Each iteration updates the generator (colour, content,
texture and TV losses) and the discriminator (its cross-entropy on enhanced or target patches,
drawn at random per patch as in DPED) once each, with Adam, from the same forward pass.

Output, in ``out`` (default: the user's model folder ``NAME/``): ``NAME.index`` and
``NAME.data-00000-of-00001`` (a TF1 checkpoint with the generator's 40 variables) and
``model.json``. Every ``checkpoint_every`` steps the whole state goes to ``out/_train/state.npz``
so that ``resume=True`` continues a killed run from there; it is removed once the model is
written.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from nhance_batch.finetune.losses import LossWeights

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MODEL_JSON = "model.json"


class FinetuneError(ValueError):
    """A fine-tune that cannot start: bad settings, an existing model, a state that does not
    fit. (Bad data raises :class:`~nhance_batch.finetune.pairs.PairError`.)"""


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tune needs, validated once at the edge (CLI, actor).

    ``base`` is a registry model name or a checkpoint path; ``out`` a folder or fsspec URL
    (None: the user's model folder). ``checkpoint_every`` and ``eval_every`` are in steps
    (``eval_every`` 0: validation only before and after).
    """

    pairs: str
    name: str
    base: str = "iphone"
    steps: int = 1000
    batch: int = 50
    patch: int = 100
    lr: float = 1e-4
    content: str = "efficientnet-lite0"
    weights: LossWeights = field(default_factory=LossWeights)
    val_fraction: float = 0.1
    out: str | None = None
    resume: bool = False
    checkpoint_every: int = 200
    eval_every: int = 0
    seed: int = 0
    jit: bool = True
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        from nhance_batch.finetune.content import CONTENT_NETWORKS

        if not NAME_PATTERN.match(self.name):
            raise FinetuneError(f"--name {self.name!r}: use letters, digits, '_', '-', '.' "
                                "(at most 64, starting with a letter or digit)")
        from nhance_batch.model.registry import load_registry

        if self.name in load_registry()[1]:
            raise FinetuneError(f"--name {self.name!r} is a published model; choose another name")
        if self.steps < 0:
            raise FinetuneError("--steps must be >= 0")
        if self.batch < 1:
            raise FinetuneError("--batch must be >= 1")
        if self.patch < 16:
            raise FinetuneError("--patch must be >= 16")
        if not self.lr > 0:
            raise FinetuneError("--lr must be > 0")
        if self.content not in CONTENT_NETWORKS:
            raise FinetuneError(f"--content must be one of {', '.join(CONTENT_NETWORKS)}")
        if not 0 <= self.val_fraction < 1:
            raise FinetuneError("--val-fraction must be in [0, 1)")
        if self.checkpoint_every < 1:
            raise FinetuneError("--checkpoint-every must be >= 1")
        if self.eval_every < 0:
            raise FinetuneError("--eval-every must be >= 0")

    def out_url(self) -> str:
        if self.out:
            return str(self.out)
        from nhance_batch.model.registry import user_models_dir

        return str(user_models_dir() / self.name)

    def settings(self, fingerprint: str) -> dict[str, Any]:
        """What a resumed run must share with the saved state."""
        return {"base": self.base, "batch": self.batch, "patch": self.patch, "lr": self.lr,
                "content": self.content, "weights": asdict(self.weights),
                "val_fraction": self.val_fraction, "seed": self.seed, "data": fingerprint}


@dataclass
class Progress:
    """What the progress callback receives after every step."""

    step: int
    steps: int
    start_step: int
    losses: dict[str, float]
    steps_per_s: float
    seconds: float
    checkpointed: bool = False
    validation: dict[str, float] | None = None


def _resolve_base(base: str):
    from pathlib import Path

    from nhance_batch.checksum import file_sha256
    from nhance_batch.model.dped import DPEDWeights
    from nhance_batch.model.registry import resolve

    from nhance_batch.model.registry import list_user_models, load_registry

    is_name = base in load_registry()[1] or base in list_user_models()
    if not is_name and not Path(base).exists() and "/" not in base:
        known = sorted(load_registry()[1]) + list_user_models()
        raise FinetuneError(f"--base {base!r} is neither a model ({', '.join(known)}) nor a "
                            "checkpoint path")
    found = resolve(base, None) if is_name else resolve(None, Path(base))
    files = {}
    for suffix in (".index", ".data-00000-of-00001"):
        path = found.prefix.with_name(found.prefix.name + suffix)
        if path.is_file():
            files[path.name] = file_sha256(path)
    return DPEDWeights.load(found.prefix), {"name": base, "prefix": str(found.prefix),
                                            "source": found.source, "sha256": files}


def make_step(weights: LossWeights, content_features: Callable | None, *, jit: bool,
              lr: float) -> Callable:
    """The compiled training iteration:
    ``(g, d, g_opt, d_opt, phone, target, swaps) -> (g, d, g_opt, d_opt, metrics)``."""
    from keras import ops

    from nhance_batch.finetune import backend as B
    from nhance_batch.finetune import discriminator as D
    from nhance_batch.finetune import losses as L
    from nhance_batch.model.dped import DPEDWeights, forward

    adversarial = weights.texture > 0

    def g_loss(g, d, phone, target):
        enhanced = forward(phone, DPEDWeights.from_arrays(g))
        color = L.color_loss(enhanced, target)
        tv = L.tv_loss(enhanced)
        total = weights.color * color + weights.tv * tv
        parts = {"color": color, "tv": tv}
        if content_features is not None and weights.content > 0:
            content = L.content_loss(content_features(enhanced),
                                     B.stop_gradient(content_features(target)))
            total = total + weights.content * content
            parts["content"] = content
        if adversarial:
            texture = L.texture_loss(D.forward(D.grayscale(enhanced), d))
            total = total + weights.texture * texture
            parts["texture"] = texture
        mse = ops.mean(ops.square(ops.clip(enhanced, 0.0, 1.0) - target))
        parts["psnr"] = 10.0 * ops.log(1.0 / ops.maximum(mse, 1e-10)) / np.log(10.0)
        parts["loss"] = total
        return total, (enhanced, parts)

    def d_loss(d, enhanced, target, swaps):
        s = swaps[:, None, None, None]
        shown = D.grayscale(enhanced) * (1.0 - s) + D.grayscale(target) * s
        probabilities = D.forward(shown, d)
        return L.discriminator_loss(probabilities, swaps), \
            L.discriminator_accuracy(probabilities, swaps)

    g_grad, d_grad = B.value_and_grad(g_loss), B.value_and_grad(d_loss)

    def step(g, d, g_opt, d_opt, phone, target, swaps):
        (_, (enhanced, parts)), grads = g_grad(g, d, phone, target)
        if adversarial:
            (d_value, accuracy), d_grads = d_grad(d, B.stop_gradient(enhanced), target, swaps)
            d, d_opt = B.adam_update(d, d_grads, d_opt, lr)
            parts = {**parts, "d_loss": d_value, "d_acc": accuracy}
        g, g_opt = B.adam_update(g, grads, g_opt, lr)
        return g, d, g_opt, d_opt, parts

    return B.compile_step(step, jit=jit)


def finetune(config: FinetuneConfig, progress: Callable[[Progress], None] | None = None,
             *, stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run the fine-tune described by ``config``; returns the written ``model.json`` as a dict.

    ``progress`` is called after every step; ``stop`` (polled every step) ends the run early
    after saving its state, for a later ``resume`` (then the result is ``{"stopped_at":
    step}``).

    Raises:
        PairError: bad training data (all problems listed), before any training.
        FinetuneError: bad settings, an existing model or state without ``resume``, or a
            saved state made with other settings or data.
        ModelError: the base model cannot be resolved.
    """
    from nhance_batch.finetune.content import load_content
    from nhance_batch.finetune.metrics import Evaluator
    from nhance_batch.finetune.pairs import load_pairs
    from nhance_batch.finetune.state import load_state

    opts = config.storage_options
    out = config.out_url()
    pairs = load_pairs(config.pairs, patch=config.patch, val_fraction=config.val_fraction,
                       seed=config.seed, storage_options=opts)
    settings = config.settings(pairs.fingerprint)
    saved = load_state(out, opts)
    _check_start(config, out, saved, settings)

    base_weights, base_info = _resolve_base(config.base)
    base_arrays = base_weights.arrays()
    content = load_content(config.content)
    evaluator = Evaluator(pairs.validation or pairs.train, opts, jit=config.jit)
    metrics = {"on": "validation" if pairs.validation else "training (too few pairs to split)"}
    state = saved if saved is not None else _new_state(config, base_arrays, settings)
    state.starts.append(state.step)
    metrics["identity"] = evaluator.identity()
    metrics["base"] = evaluator.evaluate(base_arrays)
    if not state.history:
        state.history.append({"step": 0, **metrics["base"]})

    final = _train(config, state, pairs, content, evaluator, out, progress, stop)
    if final is None:
        return {"stopped_at": state.step}
    metrics["finetuned"] = evaluator.evaluate(final)
    if not state.history or state.history[-1]["step"] != config.steps:
        state.history.append({"step": config.steps, **metrics["finetuned"]})
    return _export(config, out, final, _model_info(config, base_info, content.source, pairs,
                                                   metrics, state))


def _check_start(config: FinetuneConfig, out: str, saved: Any,
                 settings: dict[str, Any]) -> None:
    """Refuse to write over a finished model, to start afresh over an unfinished one, and to
    resume a state made with other settings or data or past ``steps``.

    Raises:
        FinetuneError: the reason, with what to do about it.
    """
    from nhance_batch import storage
    from nhance_batch.finetune.state import mismatches

    if saved is None and storage.exists(storage.join(out, MODEL_JSON), config.storage_options):
        finished = " (it is finished: there is nothing to resume)" if config.resume else ""
        raise FinetuneError(f"a model already exists in {storage.redact(out)}{finished}; "
                            "choose another --name or --out, or delete it")
    if saved is None:
        return
    if not config.resume:
        raise FinetuneError(f"{storage.redact(out)} holds an unfinished fine-tune (step "
                            f"{saved.step}); pass --resume to continue it, or delete "
                            f"{storage.redact(storage.join(out, '_train'))}")
    diff = mismatches(saved.settings, settings)
    if diff:
        raise FinetuneError("cannot resume: the saved state was made with other settings "
                            "or data:\n  " + "\n  ".join(diff))
    if saved.step > config.steps:
        raise FinetuneError(f"cannot resume: the saved state is at step {saved.step}, past "
                            f"--steps {config.steps}")


def _new_state(config: FinetuneConfig, base_arrays: list, settings: dict[str, Any]) -> Any:
    """The state at step 0: the base generator, a fresh discriminator, Adam at rest."""
    from nhance_batch.finetune import backend as B
    from nhance_batch.finetune import discriminator as D
    from nhance_batch.finetune.state import TrainState

    state = TrainState(0, [np.array(a) for a in base_arrays], D.init(config.patch, config.seed),
                       B.adam_init(base_arrays), None, settings, [])
    state.d_opt = B.adam_init(state.discriminator)
    return state


def _tensors(arrays: list) -> list:
    from keras import ops

    return [ops.convert_to_tensor(a) for a in arrays]


def _optimizer_tensors(opt: dict) -> dict:
    from keras import ops

    return {k: (ops.convert_to_tensor(v) if k == "t" else _tensors(v)) for k, v in opt.items()}


def _train(config: FinetuneConfig, state: Any, pairs: Any, content: Any, evaluator: Any,
           out: str, progress: Callable[[Progress], None] | None,
           stop: Callable[[], bool] | None) -> list[np.ndarray] | None:
    """Train from ``state.step`` to ``config.steps``, validating every ``eval_every`` steps and
    saving the state every ``checkpoint_every`` steps and when ``stop`` says so; returns the
    final generator's arrays, or None when stopped (its state saved)."""
    from nhance_batch.finetune import backend as B
    from nhance_batch.finetune.patches import ImageCache, PatchSampler
    from nhance_batch.finetune.state import save_state

    opts = config.storage_options
    sampler = PatchSampler(pairs.train, patch=config.patch, batch=config.batch, seed=config.seed,
                           cache=ImageCache(storage_options=opts))
    start_step, started = state.step, time.perf_counter()
    g, d = _tensors(state.generator), _tensors(state.discriminator)
    g_opt, d_opt = _optimizer_tensors(state.g_opt), _optimizer_tensors(state.d_opt)
    step_fn = make_step(config.weights, content.features, jit=config.jit, lr=config.lr) \
        if config.steps > state.step else None
    try:
        for step in range(state.step, config.steps):
            phone, target, swaps = sampler.batch(step)
            g, d, g_opt, d_opt, parts = step_fn(g, d, g_opt, d_opt, phone, target, swaps)
            done = step + 1
            losses = {k: float(np.asarray(v)) for k, v in parts.items()}
            validation = None
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                validation = evaluator.evaluate(B.to_numpy(g))
                state.history.append({"step": done, **validation})
            checkpointed = done % config.checkpoint_every == 0 and done < config.steps
            interrupted = stop is not None and stop()
            if checkpointed or interrupted:
                state.step = done
                state.generator, state.discriminator = B.to_numpy(g), B.to_numpy(d)
                state.g_opt, state.d_opt = B.to_numpy(g_opt), B.to_numpy(d_opt)
                save_state(out, state, opts)
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(Progress(done, config.steps, start_step, losses,
                                  (done - start_step) / elapsed if elapsed > 0 else 0.0,
                                  elapsed, checkpointed or interrupted, validation))
            if interrupted:
                return None
    finally:
        sampler.close()
    return B.to_numpy(g)


def _model_info(config: FinetuneConfig, base_info: dict, content_source: Any, pairs: Any,
                metrics: dict, state: Any) -> dict[str, Any]:
    """``model.json`` without its ``files`` and ``created`` (:func:`_export` adds them)."""
    from nhance_batch import storage
    from nhance_batch.finetune import backend as B

    return {
        "name": config.name,
        "kind": "dped-generator",
        "checkpoint": config.name,
        "base": base_info,
        "steps": config.steps,
        "batch": config.batch,
        "patch": config.patch,
        "lr": config.lr,
        "seed": config.seed,
        "loss_weights": asdict(config.weights),
        "content": {"network": config.content, "weights": content_source},
        "data": {"pairs": storage.redact(config.pairs), "fingerprint": pairs.fingerprint,
                 "phone_dir": pairs.phone_dir, "target_dir": pairs.target_dir,
                 "train_pairs": len(pairs.train), "validation_pairs": len(pairs.validation),
                 "validation_names": [p.name for p in pairs.validation]},
        "metrics": metrics,
        "history": state.history,
        "run_starts": state.starts,
        "backend": B.backend(),
    }


def _export(config: FinetuneConfig, out: str, final: list[np.ndarray],
            info: dict[str, Any]) -> dict[str, Any]:
    """Write the checkpoint's two files, then ``model.json`` (the model is complete once it
    is there), and remove the training state; returns ``model.json`` as written."""
    import hashlib

    from nhance_batch import storage
    from nhance_batch.finetune.export import checkpoint_bytes, data_file_name, index_file_name
    from nhance_batch.finetune.state import remove_state
    from nhance_batch.model.dped import DPEDWeights

    opts = config.storage_options
    variables = DPEDWeights.from_arrays([np.asarray(a, np.float32) for a in final]).to_variables()
    index, data = checkpoint_bytes(variables)
    files = {index_file_name(config.name): index, data_file_name(config.name): data}
    info = {**info,
            "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name, blob in files.items():
        storage.write_bytes(storage.join(out, name), blob, opts)
    info = _finite(info)
    storage.write_bytes(storage.join(out, MODEL_JSON), json.dumps(info, indent=2).encode(), opts)
    remove_state(out, opts)
    return info


def _finite(value):
    """JSON has no inf/nan: PSNR of identical images (inf) and missing metrics become None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
