"""The README's training-step example runs, and a few steps of it lower the loss."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_training_step_example_trains():
    (code,) = re.findall(r"## A training step\n\n```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the README's own example
    xs = jax.random.normal(jax.random.key(2), (16, 12, 8))
    lengths = jnp.arange(16) % 12 + 1
    targets = jnp.sum(xs[..., 0], axis=1) / 4
    params, opt_state = namespace["params"], namespace["opt_state"]
    first = None
    for _ in range(30):
        params, opt_state, loss = namespace["train_step"](params, opt_state, xs, lengths, targets)
        first = loss if first is None else first
    assert loss < 0.5 * first


def test_readme_fit_example_trains_checkpoints_and_predicts(tmp_path, monkeypatch):
    (code,) = re.findall(r"## Training with `jaxrnn.train`\n\n```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(code.replace("epochs=20", "epochs=2"), namespace)  # noqa: S102 - the README's own example
    assert namespace["probs"].shape == (56, 2)
    assert namespace["result"].history["val_accuracy"].shape == (2,)
    assert any((tmp_path / "runs" / "clf").iterdir())
