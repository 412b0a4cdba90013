"""Truncated backpropagation through time (TBPTT) for long streams: stateful training in chunks of ``k``
steps.

A stream ``x (B, T, I)`` is cut into chunks ``x[:, jk : (j+1)k]``. Chunk ``j`` starts from the final carry of
chunk ``j-1`` passed through ``stop_gradient``, so the forward pass sees the whole history while the gradient
of chunk ``j``'s loss flows back at most ``k`` steps:

``h_{jk} = sg(h_{jk})``,  ``g_j = ∇_θ L_j(θ; x[jk : (j+1)k], h_{jk})``,  one optimizer update per chunk.

The carry is reset to zeros where a new sequence begins (``reset``), so state never leaks from one sequence to
the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxrnn import validate
from jaxrnn.train import losses
from jaxrnn.train.models import Model, check_model
from jaxrnn.train.steps import Batch, TrainStep, check_batch, objective, update

Array = jax.Array
TBPTTStep = Callable[[Any, Any, Any, Batch, Array], tuple[Any, Any, Any, dict[str, Array]]]


def _check_model(model: Model) -> None:
    check_model(model)
    if model.output != "sequence":
        raise ValueError(
            f"model: got output={model.output!r}, expected 'sequence' (TBPTT needs per-step targets)"
        )
    if model.network.bidirectional:
        raise ValueError("model: got a bidirectional network, expected a unidirectional one for TBPTT")


def _check_reset(reset: Any, batch_size: int, argument: str, rows: str) -> None:
    validate.array(reset, argument)
    if np.shape(reset) != (batch_size,) or np.dtype(reset.dtype) != np.bool_:
        raise ValueError(
            f"{argument}: got {reset.dtype} of shape {np.shape(reset)}, expected bool of shape "
            f"({batch_size},) (one flag per row of {rows})"
        )


def truncate(carries: Any, reset: Array | None = None) -> Any:
    """``stop_gradient`` of every carry leaf ``(B, H)``, zeroed for the rows where ``reset (B,)`` is True."""
    carries = lax.stop_gradient(carries)
    if reset is None:
        return carries
    leaves = jax.tree_util.tree_leaves(carries)
    shapes = sorted({np.shape(c) for c in leaves})
    if not leaves or any(len(s) != 2 or s[0] != shapes[0][0] for s in shapes):
        raise ValueError(f"carries: got leaves of shapes {shapes}, expected (B, H) leaves with one B")
    _check_reset(reset, shapes[0][0], "reset", "the carries")
    return jax.tree_util.tree_map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carries)


def _carry_dtype(params: Any, x: Array) -> Any:
    """The dtype of the zero carries: the params' promoted with the inputs' (what the cells compute in)."""
    return jnp.result_type(x, *jax.tree_util.tree_leaves(params))


def make_tbptt_step(
    model: Model,
    loss: str | losses.LossFn,
    optimizer: optax.GradientTransformation,
    *,
    metrics: Any = (),
    jit: bool = True,
) -> TBPTTStep:
    """Builds ``step(params, opt_state, carries, batch, key) -> (params, opt_state, carries, metrics)`` for
    one chunk, for hand-written stateful loops.

    ``batch`` holds one chunk: ``"x" (B, k, I)``, ``"y" (B, k, ...)``, optionally ``"lengths" (B,)`` (valid
    steps within the chunk), ``"weights" (B,)``, and ``"reset" (B,)`` bool: the rows that begin a new sequence
    with this chunk (their carry restarts from zeros). ``carries`` is the previous chunk's returned carries
    (None at the start: zeros); the gradient never flows into it. A chunk with no valid step (its loss weight
    0) makes no update: the params and the optimizer state come back as they were, the carries advanced.
    Metrics are those of :func:`~jaxrnn.train.make_train_step`.
    """
    _check_model(model)
    fn = objective(model, loss, metrics)

    def step(params, opt_state, carries, batch, key):
        check_batch(batch, extra=("reset",))
        batch_size = batch["x"].shape[0]
        if "reset" in batch:
            _check_reset(batch["reset"], batch_size, "batch['reset']", "batch['x']")
        if carries is None:
            carries = model.initial_carries(batch_size, _carry_dtype(params, batch["x"]))
        rows = sorted({np.shape(c)[:1] for c in jax.tree_util.tree_leaves(carries)})
        if rows != [(batch_size,)]:
            raise ValueError(
                f"carries: got leaves with leading axes {rows}, expected ({batch_size},) (the rows of "
                f"batch['x'] of shape {batch['x'].shape})"
            )
        carries = truncate(carries, batch.get("reset"))
        chunk = {k: v for k, v in batch.items() if k != "reset"}
        grad_fn = jax.value_and_grad(fn, has_aux=True)
        (value, (aux, carries)), grads = grad_fn(params, chunk, key, True, carries)
        params, opt_state, stats = update(optimizer, params, opt_state, grads, aux["count"])
        return params, opt_state, carries, {"loss": value, **stats, **aux}

    return jax.jit(step) if jit else step


def make_tbptt_train_step(
    model: Model,
    loss: str | losses.LossFn,
    optimizer: optax.GradientTransformation,
    chunk: int,
    *,
    metrics: Any = (),
) -> TrainStep:
    """A jitted ``train_step(params, opt_state, batch, key) -> (params, opt_state, metrics)`` (the signature
    :func:`~jaxrnn.train.fit` uses) that trains on a batch of whole sequences ``x (B, T, I)`` by TBPTT with
    chunks of ``chunk`` steps: ``ceil(T / chunk)`` optimizer updates, the carry reset at the start of the
    batch (each row is one sequence) and carried across its chunks. A chunk with no valid step makes no
    update.

    Metrics: ``"loss"`` and named metrics are averaged over chunks weighted by their valid steps (exactly the
    mean over all valid steps for mse/mae/cross-entropy/accuracy); ``"grad_norm"``/``"update_norm"`` are the
    largest over chunks; ``"count"`` is the total.

    Dropout: each chunk draws its own masks from its own key (as a stateful Keras layer does per batch), so
    a sequence's recurrent-dropout mask changes at chunk boundaries rather than staying fixed for its
    whole length.
    """
    validate.positive_int(chunk, "chunk")
    step = make_tbptt_step(model, loss, optimizer, metrics=metrics, jit=False)
    perplexity_names = {n for n, f in losses.get_metrics(metrics, loss).items() if f is losses.perplexity}

    def train_step(params, opt_state, batch, key):
        check_batch(batch)
        x = batch["x"]
        size, steps = x.shape[:2]
        if batch["y"].ndim < 2 or batch["y"].shape[1] != steps:
            raise ValueError(
                f"batch['y']: got shape {batch['y'].shape}, expected (B, T, ...) with T={steps} as "
                f"batch['x'] of shape {x.shape} (TBPTT cuts targets into chunks along T)"
            )
        n_chunks = -(-steps // chunk)
        pad = n_chunks * chunk - steps
        lengths = batch.get("lengths")
        lengths = (
            jnp.full((size,), steps, jnp.int32)
            if lengths is None
            else validate.clipped_lengths(lengths, steps)
        )

        def split(a):  # (B, T, ...) -> (n_chunks, B, chunk, ...)
            a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
            return jnp.swapaxes(a.reshape(size, n_chunks, chunk, *a.shape[2:]), 0, 1)

        starts = jnp.arange(n_chunks) * chunk
        chunk_lengths = jnp.clip(lengths[None, :] - starts[:, None], 0, chunk).astype(jnp.int32)
        reset = jnp.zeros((n_chunks, size), bool).at[0].set(True)
        xs = (split(x), split(batch["y"]), chunk_lengths, reset, jax.random.split(key, n_chunks))
        weights = batch.get("weights", jnp.ones((size,), jnp.float32))

        def body(state, inputs):
            params, opt_state, carries = state
            x_c, y_c, len_c, reset_c, key_c = inputs
            chunk_batch = {"x": x_c, "y": y_c, "lengths": len_c, "weights": weights, "reset": reset_c}
            params, opt_state, carries, metrics = step(params, opt_state, carries, chunk_batch, key_c)
            return (params, opt_state, carries), metrics

        carries = model.initial_carries(size, _carry_dtype(params, x))
        (params, opt_state, _), per_chunk = lax.scan(body, (params, opt_state, carries), xs)
        counts = per_chunk["count"]
        total = jnp.sum(counts)
        total = jnp.where(total > 0, total, 1.0)  # (the sums below are 0 when nothing was valid)
        out = {}
        for name, values in per_chunk.items():
            if name in ("grad_norm", "update_norm"):
                out[name] = jnp.max(values)
            elif name == "count":
                out[name] = jnp.sum(values)
            elif name in perplexity_names:
                out[name] = jnp.exp(jnp.sum(jnp.log(values) * counts) / total)
            else:
                out[name] = jnp.sum(values * counts) / total
        return params, opt_state, out

    return jax.jit(train_step)
