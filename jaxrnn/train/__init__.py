"""jaxrnn.train: losses, an optax optimizer, pure train/eval steps, ``fit``, truncated BPTT, gradient-flow
diagnostics, orbax checkpoints and data parallelism for jaxrnn models.

Composable pieces for your own loop::

  model = jaxrnn.train.model(jaxrnn.rnn(jaxrnn.lstm(64)), jaxrnn.dense(10), output="last")
  params = model.init(jax.random.key(0), input_size=8)
  opt = jaxrnn.train.optimizer(1e-3, clip_norm=1.0)
  train_step = jaxrnn.train.make_train_step(model, "cross_entropy", opt, metrics=["accuracy"])
  batch = {"x": xs, "y": labels}  # optionally "lengths" (B,) and "weights" (B,)
  params, opt_state, metrics = train_step(params, opt.init(params), batch, key)

or the ready loop::

  result = jaxrnn.train.fit(model, params, (xs, labels), loss="cross_entropy", optimizer=opt, epochs=10,
                            batch_size=32, key=jax.random.key(1), validation=(val_xs, val_labels))

Checkpoints need orbax-checkpoint, the progress bar tqdm and plots matplotlib: ``pip install jaxrnn[train]``.
"""

from jaxrnn.train import losses, parallel
from jaxrnn.train.checkpoint import Checkpointer, TrainState
from jaxrnn.train.data import batches, dataset, pad_sequences
from jaxrnn.train.diagnostics import gradient_flow, plot_gradient_flow
from jaxrnn.train.loop import FitResult, fit
from jaxrnn.train.losses import (
    accuracy,
    binary_accuracy,
    binary_cross_entropy,
    mae,
    masked_mean,
    mse,
    perplexity,
    softmax_cross_entropy,
)
from jaxrnn.train.models import Model, model
from jaxrnn.train.optim import optimizer
from jaxrnn.train.steps import evaluate, make_eval_step, make_train_step, predict
from jaxrnn.train.tbptt import make_tbptt_step, make_tbptt_train_step, truncate

__all__ = [
    "Checkpointer",
    "FitResult",
    "Model",
    "TrainState",
    "accuracy",
    "batches",
    "binary_accuracy",
    "binary_cross_entropy",
    "dataset",
    "evaluate",
    "fit",
    "gradient_flow",
    "losses",
    "mae",
    "make_eval_step",
    "make_tbptt_step",
    "make_tbptt_train_step",
    "make_train_step",
    "masked_mean",
    "model",
    "mse",
    "optimizer",
    "pad_sequences",
    "parallel",
    "perplexity",
    "plot_gradient_flow",
    "predict",
    "softmax_cross_entropy",
    "truncate",
]
