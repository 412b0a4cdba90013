"""charlm: the standard-library corpus, the vocabulary, a tiny run end to end, and sampling from it."""

import json
import math
import shutil

import jax
import numpy as np
import pytest
from test_cli import assert_run_files, run_cli

from jaxrnn.tasks import RunConfig, TaskData, build_model, charlm

CONFIG = RunConfig("charlm", "lstm", None, 16, 1, False, 1, None, 8, 1e-3, 1.0, "auto", 0, length=16)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("charlm")
    argv = ["train", "--task", "charlm", "--steps", 2, "--hidden", 16, "--length", 16, "--batch-size", 8]
    return out, run_cli([*argv, "--out", out])


def test_corpus_is_a_fixed_slice_of_standard_library_source():
    text = charlm.corpus()
    assert len(text) == charlm.CORPUS_CHARS
    assert text == charlm.corpus()
    assert "def " in text and "import " in text


def test_encoding_round_trips_and_maps_unknown_characters_to_a_question_mark():
    assert charlm.decode(charlm.encode("def f(x):\n    return x ~ 1")) == "def f(x):\n    return x ~ 1"
    assert charlm.decode(charlm.encode("é\t")) == "??"
    assert len(charlm.VOCABULARY) == 96


def test_targets_are_the_inputs_shifted_by_one():
    ids = charlm.encode("abcdefghij")
    data = charlm.windows(ids, np.eye(len(charlm.VOCABULARY), dtype=np.float32)[ids], 4)
    assert data["x"].shape == (2, 4, 96)
    assert charlm.decode(data["x"].argmax(-1).ravel()) == "abcdefgh"
    assert charlm.decode(data["y"].ravel()) == "bcdefghi"


def test_train_reports_bits_per_character_and_a_sample(run):
    out, stdout = run
    record = assert_run_files(out, "bpc_by_position.png")
    metrics = record["metrics"]
    assert metrics["test_bpc"] == pytest.approx(metrics["test_loss"] / math.log(2))
    assert 1.0 < metrics["test_bpc"] < 8.0
    assert record["history"]["val_bpc"][-1] == pytest.approx(metrics["test_bpc"], rel=1e-5)
    assert "sample (temperature 0.8):" in stdout


def test_evaluate_of_a_run_on_another_corpus_names_the_standard_library(run, tmp_path):
    """charlm's corpus is this Python's stdlib source: a run trained under another Python cannot be
    reproduced, and evaluate says why (exit 1)."""
    out = tmp_path / "copy"
    shutil.copytree(run[0], out)
    record = json.loads((out / "metrics.json").read_text())
    record["data_sha256"] = "f" * 64
    (out / "metrics.json").write_text(json.dumps(record))
    stdout = run_cli(["evaluate", "--out", out], code=1)
    assert (
        "charlm data loaded now differ from those the run was trained and tested on (it reads this " in stdout
    )


def test_generate_continues_the_prompt_reproducibly(run):
    out, _ = run
    argv = ["generate", "--out", out, "--prompt", "def f", "--length", 40, "--temperature", 1.5, "--seed", 7]
    text = run_cli(argv)
    assert text.startswith("def f") and len(text) == len("def f") + 40 + 1
    assert set(text[:-1]) <= set(charlm.VOCABULARY)
    assert run_cli(argv) == text
    assert run_cli([*argv[:-1], 8]) != text


def test_a_tiny_temperature_samples_the_most_likely_character():
    """``logits / 1e-40`` overflows float32; sampling must still pick the largest logit (greedy decoding)."""
    m = build_model(charlm.TASK, CONFIG, TaskData({}, {}, 96, 96))
    params = m.init(jax.random.key(int(np.random.default_rng().integers(1 << 30))), 96)
    greedy = charlm.generate(m, params, "def ", 12, 1e-30, jax.random.key(0))
    for temperature in (1e-39, 1e-45, 1e-300):
        assert charlm.generate(m, params, "def ", 12, temperature, jax.random.key(1)) == greedy


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_generate_refuses_a_temperature_that_is_not_positive_and_finite(temperature):
    """0 or below sampled greedily through the clamp, NaN gave NaN scores."""
    m = build_model(charlm.TASK, CONFIG, TaskData({}, {}, 96, 96))
    params = m.init(jax.random.key(0), 96)
    with pytest.raises(ValueError, match=r"temperature: got .*, expected a positive finite number"):
        charlm.generate(m, params, "def ", 3, temperature, jax.random.key(1))
