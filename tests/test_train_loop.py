"""fit: learning, history, early stopping, progress bar, bit-exact resume, NaN handling and bad input."""

import re

import chex
import jax
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.train import Checkpointer, TrainState, evaluate, fit, losses, model, optimizer

rng = np.random.default_rng()
N, T = 48, 6


def sign_task(n=N):
    """Classify whether the sum over the valid steps of a variable-length sequence is positive."""
    lengths = rng.integers(2, T + 1, n).astype(np.int32)
    x = rng.normal(size=(n, T, 1)).astype(np.float32)
    x[np.arange(T)[None] >= lengths[:, None]] = 0.0
    return x, (x.sum((1, 2)) > 0).astype(np.int32), lengths


def classifier(recurrent_dropout=0.0):
    m = model(
        jaxrnn.rnn(jaxrnn.elman(8), recurrent_dropout=recurrent_dropout), jaxrnn.dense(2), output="last"
    )
    return m, m.init(jax.random.key(int(rng.integers(1 << 30))), 1)


def test_fit_learns_reports_history_and_shows_progress(capsys):
    m, params = classifier()
    train, val = sign_task(), sign_task(64)
    untrained = evaluate(m, params, val, loss="cross_entropy")["loss"]
    untrained_train = evaluate(m, params, train, loss="cross_entropy")["loss"]
    result = fit(
        m,
        params,
        train,
        loss="cross_entropy",
        optimizer=optimizer(0.05),
        epochs=8,
        batch_size=16,
        key=jax.random.key(1),
        validation=val,
        metrics=["accuracy"],
    )
    h = result.history
    assert {"loss", "accuracy", "grad_norm", "update_norm", "seq_per_s", "val_loss", "val_accuracy"} <= set(h)
    assert all(v.shape == (8,) and np.all(np.isfinite(v)) for v in h.values())
    # The task is mostly learnt within the first epoch (whose mean training loss can already be low), so
    # compare with the untrained network's losses, not with epoch 1's (the validation one: in 160 random runs
    # a ratio of 0.75 at most).
    assert h["loss"][-1] < 0.7 * untrained_train and h["val_loss"].min() < 0.9 * untrained
    assert result.step == 8 * 3 and not result.stopped_early
    final = evaluate(m, result.params, val, loss="cross_entropy", metrics=["accuracy"])
    np.testing.assert_allclose(final["loss"], h["val_loss"][-1], rtol=1e-5)
    err = capsys.readouterr().err
    assert "epoch 8/8" in err and "loss=" in err and "grad_norm=" in err and "seq_s=" in err


def _stalled(**kwargs):
    """fit's settings for a run that early stopping ends after 3 epochs (patience 2)."""
    frozen = optimizer(0.1, schedule=lambda step: 0.0)  # nothing changes, so nothing improves
    settings = dict(
        loss="cross_entropy",
        optimizer=frozen,
        epochs=20,
        batch_size=24,
        key=jax.random.key(2),
        validation=sign_task(8),
        patience=2,
        progress=False,
    )
    return settings | kwargs


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    m, params = classifier()
    result = fit(m, params, sign_task(), **_stalled())
    assert result.stopped_early and len(result.history["val_loss"]) == 3 and result.best_epoch == 0


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path):
    m, params = classifier(recurrent_dropout=0.2)  # dropout keys must be replayed too
    train = sign_task()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False)
    key = jax.random.key(int(rng.integers(1 << 30)))
    whole = fit(m, params, train, epochs=2, key=key, **kwargs)
    fit(m, params, train, epochs=1, key=key, checkpoint_dir=tmp_path / "b", **kwargs)
    resumed = fit(m, params, train, epochs=2, key=jax.random.key(0), checkpoint_dir=tmp_path / "b", **kwargs)
    assert resumed.step == whole.step
    chex.assert_trees_all_equal(whole.params, resumed.params)
    chex.assert_trees_all_equal(whole.opt_state, resumed.opt_state)
    for name in whole.history:
        if name != "seq_per_s":
            np.testing.assert_array_equal(whole.history[name], resumed.history[name])


def test_nan_loss_stops_fit_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    m, params = classifier()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False)
    train = sign_task()
    good = fit(m, params, train, epochs=1, key=jax.random.key(3), checkpoint_dir=tmp_path, **kwargs)
    poisoned = (train[0].copy(), train[1], train[2])
    poisoned[0][int(rng.integers(N)), 0, 0] = np.nan
    with pytest.raises(
        FloatingPointError, match=r"non-finite loss=nan.* at step \d+ \(epoch 2, batch \d of 3\)"
    ) as err:
        fit(m, params, poisoned, epochs=3, key=jax.random.key(3), checkpoint_dir=tmp_path, **kwargs)
    step, batch = (int(n) for n in re.search(r"at step (\d+) \(epoch 2, batch (\d)", str(err.value)).groups())
    assert step == 3 + batch  # the failing update is the (3 + batch)-th: three were taken in epoch 1
    assert "last good checkpoint (step 3)" in str(err.value)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 3
        opt_state = optimizer(0.05).init(params)
        restored, _ = ckpt.restore(TrainState(params, opt_state, 0, jax.random.key(0), params))
    chex.assert_trees_all_equal(good.params, restored.params)


def test_fit_with_tbptt_trains_a_per_step_model():
    m = model(jaxrnn.rnn(jaxrnn.elman(6)), jaxrnn.dense(1), output="sequence")
    params = m.init(jax.random.key(0), 1)
    x = rng.normal(size=(16, 9, 1)).astype(np.float32)
    y = np.cumsum(x, axis=1) * 0.3  # a per-step target that needs memory
    result = fit(
        m,
        params,
        (x, y),
        loss="mse",
        optimizer=optimizer(0.02),
        epochs=4,
        batch_size=8,
        key=jax.random.key(4),
        tbptt=4,
        progress=False,
    )
    assert result.step == 4 * 2  # epochs x batches
    assert int(result.opt_state[1].count) == 4 * 2 * 3  # one update per chunk
    assert result.history["loss"][-1] < result.history["loss"][0]


def _fit_bad(**overrides):
    """fit on the sign task with one setting replaced by ``overrides``."""
    m, params = classifier()
    settings = dict(
        train=sign_task(),
        loss="cross_entropy",
        optimizer=optimizer(0.1),
        epochs=1,
        batch_size=4,
        key=jax.random.key(0),
        progress=False,
    )
    settings.update(overrides)
    return fit(m, params, settings.pop("train"), **settings)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (
            {"train": (np.zeros((0, T, 1), np.float32), np.zeros(0, int))},
            ValueError,
            r"train: got an empty dataset \(0 sequences\)",
        ),
        ({"batch_size": 64}, ValueError, "batch_size: got 64, expected at most the 48 training sequences"),
        ({"epochs": 0}, ValueError, "epochs: got 0, expected a positive int"),
        ({"key": 0}, TypeError, r"key: got 0, expected a PRNG key \(jax.random.key\(seed\)"),
        ({"key": np.zeros(2, np.int32)}, TypeError, "key: got int32 of shape \\(2,\\), expected a PRNG key"),
        ({"min_delta": -0.1}, ValueError, "min_delta: got -0.1, expected a non-negative number"),
        ({"max_to_keep": 0}, ValueError, "max_to_keep: got 0, expected a positive int"),
        ({"tbptt": 0}, ValueError, "tbptt: got 0, expected a positive int"),
        ({"shuffle": "no"}, TypeError, "shuffle: got 'no', expected True or False"),
        ({"restore_best": None}, TypeError, "restore_best: got None, expected True or False"),
        ({"progress": 1}, TypeError, "progress: got 1, expected True or False"),
        ({"devices": []}, ValueError, r"devices: got an empty list, expected at least one device"),
        ({"devices": ["cpu"]}, TypeError, r"devices: got 'cpu' in the list, expected jax.Device objects"),
        (
            {"optimizer": "adam"},
            TypeError,
            r"optimizer: got 'adam', expected an optax GradientTransformation",
        ),
        (
            {"train": (np.zeros((8, T, 1), np.float32), np.array([0, 1, 2, 0, 1, 0, 1, -1]))},
            ValueError,
            r"train\['y'\]: got values in \[-1, 2\], expected class indices in \[0, 2\) \(the model's output",
        ),
        (
            {"validation": (np.zeros((8, T, 1), np.float32), np.full(8, 2))},
            ValueError,
            r"validation\['y'\]: got values in \[2, 2\], expected class indices in \[0, 2\)",
        ),
        (
            {
                "train": (np.zeros((8, T, 1), np.float32), np.eye(2, dtype=np.float32)[np.arange(8) % 2] * 3),
                "loss": "binary_cross_entropy",
            },
            ValueError,
            r"train\['y'\]: got values in \[0.0, 3.0\], expected values in \[0, 1\]",
        ),
        (
            {"train": (np.zeros((8, T, 1), np.float32), np.array([[0, 1]] * 7 + [[1, 1]]))},
            ValueError,
            r"train\['y'\] \(integer labels with a class axis\): got a row with 2 ones, expected one-hot",
        ),
    ],
    ids=[
        "empty",
        "batch_size",
        "epochs",
        "int_key",
        "int32_key",
        "min_delta",
        "max_to_keep",
        "tbptt",
        "shuffle",
        "restore_best",
        "progress",
        "devices",
        "device_names",
        "optimizer_name",
        "train_labels",
        "validation_labels",
        "binary_labels",
        "one_hot_rows",
    ],
)
def test_bad_settings_are_rejected(overrides, error, message):
    with pytest.raises(error, match=message):
        _fit_bad(**overrides)


def test_numpy_integer_settings_are_accepted(tmp_path):
    numpy_settings = dict(
        epochs=np.int64(1), batch_size=np.int32(16), patience=np.int64(2), shuffle=np.bool_(1)
    )
    result = _fit_bad(**numpy_settings, checkpoint_dir=tmp_path)  # (the checkpoint's JSON holds them)
    assert result.step == 3
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 3


def test_a_checkpoint_dir_that_is_a_file_is_rejected_before_training(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir: got .*afile', a file, expected a directory"):
        _fit_bad(checkpoint_dir=path)


@pytest.mark.parametrize(
    "first, then, message",
    [
        ({"metrics": ["accuracy"]}, {"metrics": []}, r"metrics: got \[\], expected \['accuracy'\] as in the"),
        (
            {"loss": "cross_entropy"},
            {"loss": lambda out, y, mask: losses.softmax_cross_entropy(out, y, mask) * 2},
            r"loss: got '<lambda>', expected 'cross_entropy' as in the",
        ),
    ],
    ids=["metrics", "loss"],
)
def test_resuming_with_other_metrics_or_loss_is_refused(tmp_path, first, then, message):
    """The history's columns and the monitored loss would no longer line up with the checkpoint's."""
    m, params = classifier()
    kwargs = dict(optimizer=optimizer(0.05), batch_size=16, progress=False, key=jax.random.key(0))
    kwargs.update(checkpoint_dir=tmp_path, loss="cross_entropy")
    fit(m, params, sign_task(), epochs=1, **{**kwargs, **first})
    with pytest.raises(ValueError, match=message):
        fit(m, params, sign_task(), epochs=2, **{**kwargs, **then})


def test_resuming_with_another_learning_rate_is_refused_and_with_an_equal_optimizer_accepted(tmp_path):
    """A changed learning rate went unnoticed: the optimizer state has the same shapes."""
    m, params = classifier()
    kwargs = dict(loss="cross_entropy", batch_size=16, progress=False, key=jax.random.key(0))
    fit(m, params, sign_task(), epochs=1, optimizer=optimizer(0.05), checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(
        ValueError,
        match=r"optimizer: got jaxrnn.train.optimizer with learning_rate=0.01, expected learning_rate=0.05 "
        r"as in the checkpoint",
    ):
        fit(m, params, sign_task(), epochs=2, optimizer=optimizer(0.01), checkpoint_dir=tmp_path, **kwargs)
    same = optimizer(0.05)  # another object with the same settings
    result = fit(m, params, sign_task(), epochs=2, optimizer=same, checkpoint_dir=tmp_path, **kwargs)
    assert len(result.history["loss"]) == 2


def test_resuming_with_an_optimizer_of_unknown_settings_is_refused(tmp_path):
    m, params = classifier()
    kwargs = dict(loss="cross_entropy", batch_size=16, progress=False, key=jax.random.key(0))
    fit(m, params, sign_task(), epochs=1, optimizer=optimizer(0.05), checkpoint_dir=tmp_path, **kwargs)
    lookalike = optax.chain(  # the same state structure, so only the recorded settings can tell
        optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale_by_learning_rate(0.5)
    )
    with pytest.raises(
        ValueError,
        match=r"optimizer: got an optax transformation jaxrnn.train.optimizer did not make, expected "
        r"jaxrnn.train.optimizer\(name='adam', learning_rate=0.05",
    ):
        fit(m, params, sign_task(), epochs=2, optimizer=lookalike, checkpoint_dir=tmp_path, **kwargs)


def test_resuming_with_fewer_epochs_than_the_checkpoint_holds_is_refused(tmp_path):
    """epochs counts every epoch: 2 after 3 done returned the 3-epoch run without a word."""
    m, params = classifier()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False)
    fit(m, params, sign_task(), epochs=3, key=jax.random.key(0), checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(
        ValueError, match=r"epochs: got 2, expected at least the 3 epochs done in the checkpoint"
    ):
        fit(m, params, sign_task(), epochs=2, key=jax.random.key(0), checkpoint_dir=tmp_path, **kwargs)


def test_patience_0_stops_as_patience_1_as_in_keras():
    m, params = classifier()
    zero, one = (fit(m, params, sign_task(), **_stalled(patience=p)) for p in (0, 1))
    assert zero.stopped_early and len(zero.history["val_loss"]) == len(one.history["val_loss"]) == 2
    with pytest.raises(ValueError, match=r"patience: got -1, expected a non-negative int"):
        fit(m, params, sign_task(), **_stalled(patience=-1))


@pytest.mark.parametrize("where", ["train", "validation", "evaluate", "predict"])
def test_inputs_of_another_feature_count_are_named_with_their_dataset(where):
    """The step's error named its batch's xs and shape, not the dataset the user passed."""
    m, params = classifier()  # input size 1
    x, y, lengths = sign_task(8)
    wide = np.concatenate([x, x], -1)
    calls = {
        "train": lambda: fit(m, params, (wide, y), **_stalled(batch_size=8)),
        "validation": lambda: fit(m, params, (x, y), **_stalled(batch_size=8, validation=(wide, y))),
        "evaluate": lambda: evaluate(m, params, (wide, y), loss="cross_entropy"),
        "predict": lambda: jaxrnn.train.predict(m, params, wide),
    }
    name = {"train": r"train\['x'\]", "validation": r"validation\['x'\]", "evaluate": r"data\['x'\]"}
    with pytest.raises(
        ValueError,
        match=rf"{name.get(where, 'xs')}: got 2 features \(shape \(8, 6, 2\)\), expected 1 \(the input size "
        r"of params\['rnn'\]\[0\]\['forward'\]\['w_x'\]\)",
    ):
        calls[where]()


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_a_network_given_as_the_model_is_named(call):
    net = jaxrnn.rnn(jaxrnn.gru(4))
    params = net.init(jax.random.key(0), 1)
    x, y, _ = sign_task(8)
    calls = {
        "fit": lambda: fit(net, params, (x, y), **_stalled()),
        "evaluate": lambda: evaluate(net, params, (x, y), loss="mse"),
        "predict": lambda: jaxrnn.train.predict(net, params, x),
    }
    with pytest.raises(TypeError, match=r"model: got Network, expected a jaxrnn.train.Model"):
        calls[call]()


def test_resuming_with_the_loss_function_a_name_stands_for_is_accepted(tmp_path):
    m, params = classifier()
    kwargs = dict(optimizer=optimizer(0.05), batch_size=16, progress=False, key=jax.random.key(0))
    fit(m, params, sign_task(), epochs=1, loss="cross_entropy", checkpoint_dir=tmp_path, **kwargs)
    result = fit(
        m, params, sign_task(), epochs=2, loss=losses.softmax_cross_entropy, checkpoint_dir=tmp_path, **kwargs
    )
    assert len(result.history["loss"]) == 2


def test_a_nan_validation_loss_stops_fit(tmp_path):
    m, params = classifier()
    validation = sign_task(8)
    validation[0][0, 0, 0] = np.nan  # a valid step (every length is at least 2)
    with pytest.raises(
        FloatingPointError, match=r"fit: non-finite val_loss=nan after epoch 1 .* no checkpoint"
    ):
        _fit_bad(validation=validation, patience=2, checkpoint_dir=tmp_path)


def test_resuming_from_a_checkpoint_fit_did_not_write_is_refused(tmp_path):
    m, params = classifier()
    opt = optimizer(0.1)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(TrainState(params, opt.init(params), 1, jax.random.key(0)))
    with pytest.raises(ValueError, match=r"checkpoint_dir: got .*, whose checkpoint fit did not write"):
        _fit_bad(checkpoint_dir=tmp_path)


def test_a_config_json_cannot_hold_is_rejected_before_training(tmp_path):
    with pytest.raises(TypeError, match="config: got a value JSON cannot hold"):
        _fit_bad(checkpoint_dir=tmp_path, config={"activation": np.tanh})
    assert not any(tmp_path.iterdir())


def test_resuming_an_early_stopped_run_trains_no_further(tmp_path):
    """The checkpoint of a run that early stopping ended holds ``wait >= patience``: fit on it again returns
    the stopped run (before, it trained one more epoch)."""
    m, params = classifier()
    kwargs = _stalled(checkpoint_dir=tmp_path)
    train = sign_task()
    first = fit(m, params, train, **kwargs)
    again = fit(m, params, train, **kwargs)
    assert first.stopped_early and again.stopped_early and again.step == first.step
    assert len(again.history["val_loss"]) == len(first.history["val_loss"]) == 3


def test_resuming_a_checkpoint_of_another_model_names_the_directory(tmp_path):
    train = sign_task()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False, epochs=1)
    kwargs["key"] = jax.random.key(0)
    m, params = classifier()
    fit(m, params, train, checkpoint_dir=tmp_path, **kwargs)
    wider = model(jaxrnn.rnn(jaxrnn.elman(9)), jaxrnn.dense(2), output="last")
    with pytest.raises(
        ValueError, match=r"checkpoint_dir: .* holds a run whose params or optimizer state do not"
    ):
        fit(
            wider, wider.init(jax.random.key(0), 1), train, checkpoint_dir=tmp_path, **{**kwargs, "epochs": 2}
        )


def test_resuming_without_the_validation_data_the_run_monitored_is_refused(tmp_path):
    train = sign_task()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False)
    kwargs.update(key=jax.random.key(0), checkpoint_dir=tmp_path)
    m, params = classifier()
    fit(m, params, train, epochs=1, validation=sign_task(), **kwargs)
    with pytest.raises(
        ValueError, match=r"validation: got None, expected validation data as in the checkpoint"
    ):
        fit(m, params, train, epochs=2, **kwargs)


def test_resuming_with_validation_data_the_run_did_not_monitor_is_refused(tmp_path):
    train = sign_task()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, progress=False)
    kwargs.update(key=jax.random.key(0), checkpoint_dir=tmp_path)
    m, params = classifier()
    fit(m, params, train, epochs=1, **kwargs)
    with pytest.raises(ValueError, match=r"validation: got data, expected None as in the checkpoint"):
        fit(m, params, train, epochs=2, validation=sign_task(), **kwargs)


def test_resuming_says_so_with_the_progress_bar_on(tmp_path, capsys):
    train = sign_task()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.05), batch_size=16, checkpoint_dir=tmp_path)
    kwargs["key"] = jax.random.key(0)
    m, params = classifier()
    fit(m, params, train, epochs=1, progress=False, **kwargs)
    fit(m, params, train, epochs=2, progress=True, **kwargs)
    assert f"fit: resumed from {tmp_path}, at epoch 1 (step 3)" in capsys.readouterr().out
