"""The little that differs between Keras backends in a training step: gradients and
compilation. Everything else (the networks, the losses, Adam) is written once in ``keras.ops``
as pure functions of arrays, so the same step runs on TensorFlow (``tf.GradientTape`` under
``tf.function``) and on JAX (``jax.value_and_grad`` under ``jax.jit``)."""

from __future__ import annotations

from typing import Any, Callable


def backend() -> str:
    """The Keras backend's name; the first call loads it (:func:`ensure_backend`: the
    installed one, its start-up noise hidden)."""
    from nhance_batch.model.backend import ensure_backend

    return ensure_backend()


def value_and_grad(fn: Callable) -> Callable:
    """``fn(params, *args) -> (loss, aux)`` becomes ``(params, *args) -> ((loss, aux), grads)``
    with ``grads`` the gradient of ``loss`` with respect to the list ``params``."""
    name = backend()
    if name == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)
    if name == "tensorflow":
        import tensorflow as tf

        def wrapped(params, *args):
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss, aux = fn(params, *args)
            return (loss, aux), tape.gradient(loss, params)

        return wrapped
    raise RuntimeError(f"fine-tuning runs on the tensorflow or jax backend, not {name!r} "
                       "(set KERAS_BACKEND)")


def stop_gradient(x):
    from keras import ops

    return ops.stop_gradient(x)


def compile_step(fn: Callable, *, jit: bool = True) -> Callable:
    """``fn`` compiled for the backend; arguments and results are nested lists of arrays."""
    name = backend()
    if name == "jax":
        import jax

        return jax.jit(fn) if jit else fn
    import tensorflow as tf

    # autograph off: the step has no tensor-dependent Python control flow, and autograph's
    # per-code-object cache would mix up closures that share code (the two value_and_grad
    # wrappers) when not compiling with XLA.
    return tf.function(fn, jit_compile=jit, reduce_retracing=True, autograph=False)


def to_numpy(tree: Any) -> Any:
    import numpy as np

    if isinstance(tree, (list, tuple)):
        return type(tree)(to_numpy(t) for t in tree)
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def adam_init(params) -> dict[str, Any]:
    """Adam's state for ``params``: step count, first and second moments (zeros)."""
    import numpy as np

    return {"t": np.zeros((), np.float32), "m": [np.zeros_like(np.asarray(p)) for p in params],
            "v": [np.zeros_like(np.asarray(p)) for p in params]}


def adam_update(params, grads, state, lr, beta1: float = 0.9, beta2: float = 0.999,
                eps: float = 1e-8):
    """One Adam step, as TensorFlow 1's ``AdamOptimizer`` (the paper's) computes it:
    ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``, ``p -= lr_t * m / (sqrt(v) + eps)``."""
    from keras import ops

    t = state["t"] + 1.0
    lr_t = lr * ops.sqrt(1.0 - ops.power(beta2, t)) / (1.0 - ops.power(beta1, t))
    new_params, new_m, new_v = [], [], []
    for p, g, m, v in zip(params, grads, state["m"], state["v"]):
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * ops.square(g)
        new_params.append(p - lr_t * m / (ops.sqrt(v) + eps))
        new_m.append(m)
        new_v.append(v)
    return new_params, {"t": t, "m": new_m, "v": new_v}
