"""The ``jaxrnn`` command line: help texts, one-line usage errors with exit code 2, missing optional
dependencies. The tasks' end-to-end runs are in test_tasks_*.py, which use the helpers defined here."""

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxrnn import cli
from jaxrnn.tasks import TASKS
from jaxrnn.tasks.base import RunConfig, TaskData, fingerprint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(argv: list[str], code: int = 0) -> str:
    """Runs ``jaxrnn argv`` in-process; returns its stdout (it must exit with ``code``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([str(arg) for arg in argv]) == code
    return out.getvalue()


def assert_png(path: Path) -> None:
    """``path`` is a PNG file with a drawing in it (a blank figure compresses to a few kB)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 8_000, (path, len(data))


def assert_run_files(out: Path, plot_name: str, *, gradient_flow: bool = True) -> dict:
    """The files every train run writes; returns the metrics record."""
    record = json.loads((out / cli.METRICS_FILE).read_text())
    names = ["learning_curves.png", plot_name] + (["gradient_flow.png"] if gradient_flow else [])
    for name in names:
        assert_png(out / name)
    assert (out / "gradient_flow.png").exists() == gradient_flow
    assert record["files"] == ["metrics.json", "checkpoint", *names]
    assert any((out / "checkpoint").iterdir())
    return record


def help_text(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_python_m_jaxrnn_help_lists_the_commands_and_tasks():
    result = subprocess.run(
        [sys.executable, "-m", "jaxrnn", "--help"], capture_output=True, text=True, check=True
    )
    for word in ("train", "evaluate", "generate", *TASKS):
        assert word in result.stdout


@pytest.mark.parametrize(
    "command, options",
    [
        (
            "train",
            [
                "--task",
                "--cell",
                "--activation",
                "--hidden",
                "--proj-size",
                "--layers",
                "--bidirectional",
                "--readout",
                "--epochs",
                "--steps",
                "--batch-size",
                "--lr",
                "--clip-norm",
                "--backend",
                "--seed",
                "--out",
                "--variant",
                "--length",
                "--horizon",
            ],
        ),
        ("evaluate", ["--out"]),
        ("generate", ["--out", "--prompt", "--length", "--temperature", "--seed"]),
    ],
)
def test_every_option_is_listed_with_its_default(capsys, command, options):
    text = help_text(capsys, [command, "--help"])
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    described = {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks if block.strip()}
    assert set(described) == {"-h", *options}
    for option in options:
        assert "(default: " in described[option], described[option]


def test_per_task_defaults_are_spelled_out(capsys):
    text = " ".join(help_text(capsys, ["train", "--help"]).split())
    assert "digits gru" in text and "charlm lstm" in text
    assert "(default: digits)" in text


@pytest.mark.parametrize(
    "argv, option",
    [
        (["train", "--hidden", "-3"], "--hidden"),
        (["train", "--hidden", "x"], "--hidden"),
        (["train", "--task", "mnist"], "--task"),
        (["train", "--cell", "rnn"], "--cell"),
        (["train", "--backend", "cuda"], "--backend"),
        (["train", "--lr", "0"], "--lr"),
        (["train", "--clip-norm", "-1"], "--clip-norm"),
        (["train", "--epochs", "3", "--steps", "3"], "--steps"),
        (["train", "--task", "adding", "--variant", "pixel"], "--variant"),
        (["train", "--horizon", "3"], "--horizon"),
        (["train", "--cell", "lstm", "--activation", "relu"], "--activation"),
        (["train", "--proj-size", "4"], "--proj-size"),
        (["train", "--cell", "lstm", "--hidden", "8", "--proj-size", "8"], "--proj-size"),
        (["train", "--cell", "lstm", "--proj-size", "0"], "--proj-size"),
        (["train", "--task", "charlm", "--bidirectional"], "--bidirectional"),
        (["train", "--readout", "first"], "--readout"),
        (["train", "--task", "copy", "--readout", "mean"], "--readout"),
        (["train", "--task", "adding", "--length", "1"], "--length"),
        (["train", "--task", "sunspots", "--length", "250"], "--length"),
        (["train", "--task", "sunspots", "--horizon", "60"], "--horizon"),
        (["train", "--task", "charlm", "--length", "33334"], "--length"),
        (["train", "--seed", str(2**63)], "--seed"),
        (["generate", "--seed", str(2**63)], "--seed"),
        (["train", "--batch-size", "5000"], "--batch-size"),
        (["train", "--no-such-option"], "--no-such-option"),
        (["generate", "--temperature", "0"], "--temperature"),
        (["evaluate", "--out", "no/such/run"], "--out"),
        (["fly"], "fly"),
    ],
)
def test_bad_options_exit_2_with_one_line_naming_the_option(capsys, tmp_path, argv, option):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, *(["--out", str(tmp_path)] if argv[0] == "train" else [])])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("jaxrnn"), captured.err
    assert option in captured.err and "error" in captured.err


def test_an_out_that_is_a_file_exits_2(capsys, tmp_path):
    path = tmp_path / "run"
    path.write_text("not a run")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--out", str(path)])
    assert exit_info.value.code == 2
    assert f"argument --out: {path} is a file, expected a directory" in capsys.readouterr().err
    assert path.read_text() == "not a run"


def run_record(task: str) -> dict:
    """A metrics.json record of a ``task`` run with that task's defaults (no checkpoint beside it)."""
    args = cli.build_parser().parse_args(["train", "--task", task])
    config = cli.resolve_config(args, TASKS[task], cli.build_parser())
    return {"config": dataclasses.asdict(config), "sizes": {"input": 8, "output": 10}, "metrics": {"m": 0.5}}


def error_on_a_recorded_run(capsys, out, command: str) -> str:
    """Runs ``command`` on ``out`` holding only a digits run's metrics.json; it must exit 2: its stderr."""
    (out / "metrics.json").write_text(json.dumps(run_record("digits")))
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--out", str(out)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_generate_rejects_a_run_of_another_task(capsys, tmp_path):
    assert "holds a digits run, expected a charlm run" in error_on_a_recorded_run(
        capsys, tmp_path, "generate"
    )


@pytest.mark.parametrize(
    "task, module, distribution",
    [
        ("digits", "sklearn", "scikit-learn"),
        ("sunspots", "statsmodels", "statsmodels"),
        ("adding", "matplotlib", "matplotlib"),
    ],
)
def test_a_missing_optional_dependency_names_the_extra(
    capsys, monkeypatch, tmp_path, task, module, distribution
):
    monkeypatch.setitem(sys.modules, module, None)
    assert cli.main(["train", "--task", task, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"the {task} task needs {distribution}" in err and "pip install 'jaxrnn[examples]'" in err
    assert not any(tmp_path.iterdir())


def test_a_batch_size_the_devices_do_not_divide_exits_2_and_keeps_the_old_run(capsys, monkeypatch, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    monkeypatch.setattr(cli.jax, "device_count", lambda: 2)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--batch-size", "25", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size: got 25, expected a multiple of the 2 devices" in err
    assert (tmp_path / "metrics.json").read_text() == "{}"


@pytest.mark.parametrize(
    "text", ["{}", "not json", '{"config": {"task": "digits"}}'], ids=["empty", "text", "partial"]
)
@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_a_metrics_file_that_is_not_a_run_record_exits_2(capsys, tmp_path, text, command):
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.json is not the record of a jaxrnn run" in err


def test_evaluate_of_a_run_without_checkpoint_exits_2_and_writes_nothing(capsys, tmp_path):
    assert "has metrics.json but no checkpoint" in error_on_a_recorded_run(capsys, tmp_path, "evaluate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("leftover", ["checkpoint/model.pt", "metrics.json", "confusion.png"])
def test_train_refuses_an_out_with_files_of_no_jaxrnn_run_and_keeps_them(capsys, tmp_path, leftover):
    path = tmp_path / leftover
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("someone else's")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--steps", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument --out: {tmp_path} holds ['{leftover.split('/')[0]}'], which no jaxrnn run wrote" in (
        capsys.readouterr().err
    )
    assert path.read_text() == "someone else's"


def test_train_replaces_the_checkpoint_of_an_interrupted_run(tmp_path):
    """No metrics.json yet, only orbax's step folders (one half written, one half deleted): a run's."""
    for step in ("3", "4.orbax-checkpoint-tmp-1700000000", "5.orbax-checkpoint-tmp"):
        (tmp_path / "checkpoint" / step).mkdir(parents=True)
    (tmp_path / "checkpoint" / "3" / "_CHECKPOINT_METADATA").write_text("{}")  # finished: orbax's marker
    (tmp_path / "checkpoint" / "2" / "config").mkdir(parents=True)  # half deleted: its markers went first
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["1"]


def test_train_replaces_a_run_stopped_after_its_plots_before_its_record(tmp_path):
    """metrics.json is written last: a finished checkpoint step marks the plots beside it as a run's."""
    (tmp_path / "checkpoint" / "3").mkdir(parents=True)
    (tmp_path / "checkpoint" / "3" / "commit_success.txt").write_text("")
    (tmp_path / "learning_curves.png").write_text("an earlier run's")
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("entry", ["7", "2023/notes.txt"], ids=["file", "folder_without_markers"])
def test_train_refuses_a_checkpoint_entry_named_like_a_step_that_orbax_did_not_write(capsys, tmp_path, entry):
    path = tmp_path / "checkpoint" / entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--steps", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds ['checkpoint'], which no jaxrnn run wrote" in capsys.readouterr().err
    assert path.read_text() == "precious"


def test_train_into_an_out_below_a_file_exits_2(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--steps", "1", "--out", str(tmp_path / "afile" / "run")])
    assert exit_info.value.code == 2
    assert "argument --out: cannot create" in capsys.readouterr().err


def test_an_integer_beyond_float_range_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--hidden", str(10**400)])
    assert exit_info.value.code == 2
    assert "argument --hidden: got" in capsys.readouterr().err


def test_a_diverging_run_ends_with_one_line_and_exit_1(capsys, monkeypatch, tmp_path):
    def diverge(*args, **kwargs):
        raise FloatingPointError("fit: non-finite update_norm=inf at step 0")

    monkeypatch.setattr(cli.train, "fit", diverge)
    assert cli.main(["train", "--steps", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "jaxrnn train: error: fit: non-finite update_norm=inf at step 0\n"


def test_a_default_batch_size_too_large_is_named_as_the_default(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--task", "sunspots", "--length", "240", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size: got 16 (the task's default), expected at most the 10" in err
    assert "training sequences of sunspots (with --length 240, --horizon " in err  # what made them few


def test_a_projected_lstm_trains_records_its_proj_size_and_evaluates_alike(tmp_path):
    argv = ["train", "--cell", "lstm", "--hidden", 8, "--proj-size", 3, "--steps", 2, "--batch-size", 256]
    stdout = run_cli([*argv, "--out", tmp_path])
    assert "lstm (projected to 3), 1 layer x 8" in stdout
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["config"]["cell"] == "lstm" and record["config"]["proj_size"] == 3
    assert f"matches the metrics saved in {tmp_path / 'metrics.json'}" in run_cli(
        ["evaluate", "--out", tmp_path]
    )


def test_pallas_with_an_option_its_kernel_lacks_exits_2_and_keeps_the_old_run(capsys, tmp_path):
    """fit would raise when it first traced a step, after the old run in --out was deleted."""
    (tmp_path / "metrics.json").write_text("{}")
    argv = ["train", "--backend", "pallas", "--cell", "lstm", "--hidden", "8", "--proj-size", "3"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "argument --backend: pallas cannot run this model: the fused LSTM kernel has no output projection"
        in err
    )
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_evaluate_of_a_checkpoint_that_does_not_fit_its_record_exits_2(capsys, tmp_path):
    """A record edited (or a checkpoint replaced) since training: one line and exit 2, not a traceback."""
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    record = json.loads((tmp_path / "metrics.json").read_text())
    record["config"]["hidden"] = 5
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"the checkpoint in {tmp_path} cannot be restored for its metrics.json (ValueError: template" in err
    )


def test_evaluate_exits_1_when_the_tasks_data_differ_from_the_runs(tmp_path):
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    path = tmp_path / "metrics.json"
    record = json.loads(path.read_text())
    assert record["data_sha256"] == fingerprint(TASKS["digits"].load(RunConfig(**record["config"])))
    assert "matches the metrics saved" in run_cli(["evaluate", "--out", tmp_path])
    record["data_sha256"] = "0" * 64  # as if the data had changed since (charlm: another Python's stdlib)
    path.write_text(json.dumps(record))
    stdout = run_cli(["evaluate", "--out", tmp_path], code=1)
    assert "the digits data loaded now differ from those the run was trained and tested on: its" in stdout


def test_fingerprint_changes_with_any_value_name_or_shape():
    rng = np.random.default_rng(0)
    train = {"x": rng.standard_normal((4, 3, 2)).astype(np.float32), "y": np.arange(4)}
    data = TaskData(train, {"x": train["x"][:2], "y": train["y"][:2]}, 2, 4)
    digest = fingerprint(data)
    assert digest == fingerprint(data._replace(train={k: v.copy() for k, v in train.items()}))
    changed_value = {**train, "x": train["x"].copy()}
    changed_value["x"][3, 2, 1] += 1e-6
    for other in (
        data._replace(train=changed_value),
        data._replace(train={**train, "y": train["y"].reshape(2, 2)}),
        data._replace(train={"x": train["x"], "z": train["y"]}),
        data._replace(train={**train, "y": train["y"].astype(np.int32)}),
        data._replace(train=data.test, test=data.train),
    ):
        assert fingerprint(other) != digest


def test_fingerprint_tells_apart_dtypes_of_one_size_and_refuses_objects():
    import ml_dtypes

    def digest(array):
        return fingerprint(TaskData({"x": array}, {}, 1, 1))

    assert digest(np.zeros(3, ml_dtypes.float8_e4m3fn)) != digest(np.zeros(3, ml_dtypes.float8_e4m3fnuz))
    with pytest.raises(TypeError, match=r"data.train\['x'\]: got dtype object, expected numbers"):
        digest(np.array([1, "a"], object))


def test_evaluate_of_a_run_whose_metric_is_nan_reproduces_it(tmp_path, monkeypatch):
    """NaN is not close to NaN: a diverged run reproduced exactly read as "differs" (exit 1)."""
    task = TASKS["digits"]
    nan_metrics = lambda *args: {name: float("nan") for name in ("test_loss", "test_accuracy")}  # noqa: E731
    monkeypatch.setitem(TASKS, "digits", dataclasses.replace(task, evaluate=nan_metrics))
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    assert "matches the metrics saved" in run_cli(["evaluate", "--out", tmp_path])


def test_a_record_without_metrics_is_not_a_run_record(capsys, tmp_path):
    record = run_record("digits")
    del record["metrics"]
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "metrics.json is not the record of a jaxrnn run" in capsys.readouterr().err


def test_pallas_for_weights_beyond_the_kernels_budget_exits_2_and_keeps_the_old_run(
    capsys, monkeypatch, tmp_path
):
    """The budget check (a GPU's is 128 KiB: the default charlm LSTM exceeds it) runs before --out goes."""
    from jaxrnn.kernels import layout

    monkeypatch.setitem(layout.WEIGHT_BUDGET_BYTES, "cpu", 1024)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--backend", "pallas", "--hidden", "16", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "pallas cannot run this model: W_h of hidden size 16 takes" in capsys.readouterr().err
    assert (tmp_path / "metrics.json").read_text() == "{}"


@pytest.mark.filterwarnings("ignore:backend='pallas' on CPU runs the fused kernel in Pallas interpret mode")
def test_pallas_for_a_model_its_kernels_run_passes_the_check_and_trains(tmp_path):
    run_cli(["train", "--backend", "pallas", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["backend"] == "pallas"


@pytest.mark.parametrize("name", [name for name, task in TASKS.items() if task.max_length is not None])
def test_a_length_beyond_a_tasks_bound_exits_2(capsys, name):
    """Without a bound a huge --length failed allocating the data (adding, copy: a MemoryError traceback)."""
    bound = TASKS[name].max_length
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--task", name, "--length", str(bound + 1)])
    assert exit_info.value.code == 2
    assert f"argument --length: got {bound + 1}, expected" in (err := capsys.readouterr().err)
    assert f"to {bound} for {name}" in err


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"cell": "foo"}, r"describes no run jaxrnn can rebuild \(cell: got 'foo', expected 'elman', 'lstm'"),
        ({"length": 400}, r"describes no run jaxrnn can rebuild \(length: got 400, expected 1 to 249"),
        ({"horizon": 5}, r"lacks the metrics \['persistence_rmse_5', 'rmse_5'\] of its run"),
    ],
    ids=["unknown_cell", "length_out_of_bounds", "other_horizon"],
)
def test_evaluate_of_a_record_edited_beyond_its_task_exits_2(capsys, tmp_path, edit, message):
    """An unknown cell built a GRU; an out-of-range length or another horizon raised inside the task."""
    run_cli(
        ["train", "--task", "sunspots", "--steps", "1", "--hidden", "4", "--horizon", "3", "--out", tmp_path]
    )
    record = json.loads((tmp_path / "metrics.json").read_text())
    record["config"].update(edit)
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.parametrize("inside", ["checkpoint", "checkpoint/sub"])
def test_an_out_inside_a_runs_checkpoint_exits_2(capsys, tmp_path, inside):
    """It was accepted, and its files then made train --out on the run itself refuse as foreign."""
    run_cli(["train", "--steps", "1", "--hidden", "4", "--out", tmp_path])
    out = tmp_path / inside
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--steps", "1", "--hidden", "4", "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"{out} is inside the checkpoint of the run in {tmp_path.resolve()}" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
