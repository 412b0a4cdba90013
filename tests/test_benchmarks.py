"""The benchmark harness runs in --quick mode and writes its files (never how fast anything is)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import jaxrnn

_RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _harness():
    spec = importlib.util.spec_from_file_location("benchmarks_run", _RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_checks_agreement_and_writes_json_markdown_and_chart(tmp_path, capsys, monkeypatch):
    harness = _harness()
    monkeypatch.setattr(harness, "__file__", str(tmp_path / "run.py"))  # (the default --out is beside it)
    document = harness.main(["--quick"])

    assert not (tmp_path / "results" / "bench.json").exists()  # a quick run never replaces the full run's
    tmp_path = tmp_path / "results" / "partial"
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["quick"] is True and saved["argv"] == ["--quick"]
    assert saved["machine"]["cores"] == len(os.sched_getaffinity(0))
    assert saved["machine"]["jax_backend"] == "cpu" and saved["machine"]["accelerators"] == []
    assert {"jaxrnn", "jax", "torch", "flax", "keras"} <= set(saved["machine"]["versions"])
    assert saved["machine"]["versions"]["jaxrnn"] == jaxrnn.__version__
    impls = {row["impl"] for row in saved["rows"]}
    assert {"jaxrnn auto", "jaxrnn xla", "lax.scan", "torch (cpu)", "flax", "keras"} <= impls
    assert len(saved["rows"]) == len(document["rows"])
    for row in saved["rows"]:
        assert row["max_rel_err"] < 2e-4  # every timed implementation agreed with jaxrnn
        for workload in ("fwd", "fwd+bwd"):
            stats = row[workload]
            assert stats["repeats"] == 3
            assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
            assert stats["ratio_to_best"] >= 1.0
            assert 1 <= stats["calls_per_sample"] <= 100
    assert min(row["fwd+bwd"]["ratio_to_best"] for row in saved["rows"]) == 1.0
    [floor] = saved["floors"]
    assert floor["workload"] == "lstm (16, 2, 8, 16)"
    for workload in ("fwd", "fwd+bwd"):
        assert floor[workload]["floor_ms"] > 0 and floor[workload]["floor_gflops"] > 0
        assert floor[workload]["auto_ms"] == next(
            row[workload]["median_ms"] for row in saved["rows"] if row["impl"] == "jaxrnn auto"
        )
    memory = saved["memory"]
    assert [(m["T"], m["remat"]) for m in memory] == [(100, False), (100, False), (100, True)]
    labels = ["auto (fast path)", "xla (reference)", "auto with remat (reference)"]
    assert [m["backend"] for m in memory] == labels
    assert all(m["total_mib"] > 0 for m in memory)
    # the two no-remat rows are different programs (the fast path saves its own residuals)
    assert memory[0]["temp_mib"] != memory[1]["temp_mib"]

    text = (tmp_path / "bench.md").read_text()
    assert saved["machine"]["cpu"] in text
    assert "; options: --quick." in text
    assert saved["matmul_precision"] == "float32 (the CPU default)"
    assert "Matmul precision: float32 (the CPU default)." in text
    assert "| lstm (16, 2, 8, 16) | jaxrnn auto |" in text
    assert (
        "## Matmul floor" in text and "| lstm (16, 2, 8, 16) | " + f"{floor['fwd']['floor_ms']:.2f} |" in text
    )
    assert text in capsys.readouterr().out  # the same table on stdout
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_peer_is_skipped_with_a_note(tmp_path, monkeypatch):
    harness = _harness()

    def missing(*args, **kwargs):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(harness, "PEERS", [("torch", missing)])
    monkeypatch.setattr(harness, "memory_table", lambda steps: [])
    harness.main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert not any(row["impl"].startswith("torch") for row in saved["rows"])
    assert any("torch: skipped" in note for note in saved["notes"])
    assert "torch: skipped" in (tmp_path / "bench.md").read_text()


def test_an_implementation_with_wrong_weight_gradients_is_not_timed(tmp_path, monkeypatch):
    """A peer whose outputs, loss and input gradient are right but whose weight gradients are not (here
    zero, or those of the gates in the wrong order) disagrees and is left out."""
    harness = _harness()

    def frozen(wl, net_params, xs):
        net = jaxrnn.rnn(harness._cell(wl.kind, wl.shape[3]))

        def apply(variables, x):
            return harness._apply(net, jax.lax.stop_gradient(variables), x)

        return harness._jax_impl("frozen", apply, harness._same, net_params, xs)

    def swapped(wl, net_params, xs):
        impl = harness.torch_impl(wl, net_params, xs)
        backward = impl.backward

        def swapped_backward():
            loss, dxs, dparams = backward()
            dparams["weight_hh_l0"] = np.roll(dparams["weight_hh_l0"], wl.shape[3], axis=0)  # i <-> f, ...
            return loss, dxs, dparams

        return harness.Impl("swapped", impl.forward, swapped_backward, impl.layout)

    monkeypatch.setattr(
        harness, "PEERS", [("frozen", frozen), ("swapped", swapped), ("torch", harness.torch_impl)]
    )
    monkeypatch.setattr(harness, "memory_table", lambda steps: [])
    harness.main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench.json").read_text())
    timed = {row["impl"] for row in saved["rows"]}
    assert "torch (cpu)" in timed and not {"frozen", "swapped"} & timed
    for name in ("frozen", "swapped"):
        assert any(f"{name}: DISAGREES with jaxrnn auto" in note for note in saved["notes"]), name


def test_non_finite_gradients_and_a_wrong_bias_hh_gradient_are_not_timed(tmp_path, monkeypatch):
    """A NaN in one gradient must not vanish in the error's max (nor pass ``err > tol``), and torch's
    ``bias_hh`` gradient, which jaxrnn's single LSTM bias does not map to, is checked too."""
    harness = _harness()

    def broken(name, change):
        def make(wl, net_params, xs):
            impl = harness.torch_impl(wl, net_params, xs)
            backward = impl.backward

            def changed():
                loss, dxs, dparams = backward()
                return change(loss, dxs, {k: v.numpy().copy() for k, v in dparams.items()})

            return harness.Impl(name, impl.forward, changed, impl.layout)

        return make

    def nan_dx(loss, dxs, dparams):
        dxs = dxs.numpy().copy()
        dxs[0, 0, 0] = np.nan
        return loss, dxs, dparams

    def nan_dw(loss, dxs, dparams):
        dparams["weight_ih_l0"][0, 0] = np.nan
        return loss, dxs, dparams

    def bias_hh(loss, dxs, dparams):
        dparams["bias_hh_l0"] = dparams["bias_hh_l0"] + 1e3
        return loss, dxs, dparams

    peers = [(n, broken(n, f)) for n, f in (("nan_dx", nan_dx), ("nan_dw", nan_dw), ("bias_hh", bias_hh))]
    monkeypatch.setattr(harness, "PEERS", [*peers, ("torch", harness.torch_impl)])
    monkeypatch.setattr(harness, "memory_table", lambda steps: [])
    harness.main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench.json").read_text())
    timed = {row["impl"] for row in saved["rows"]}
    assert "torch (cpu)" in timed and not {"nan_dx", "nan_dw", "bias_hh"} & timed
    for name in ("nan_dx", "nan_dw", "bias_hh"):
        assert any(f"{name}: DISAGREES with jaxrnn auto" in note for note in saved["notes"]), name


@pytest.mark.parametrize(
    ("kind", "layers", "bidirectional"),
    [("elman", 1, False), ("gru", 1, False), ("lstm", 2, True)],
    ids=["elman", "gru", "bi-lstm"],
)
def test_every_peer_agrees_on_every_workload_kind(kind, layers, bidirectional):
    """The quick run covers the LSTM; the other cells' and the bidirectional stack's peer mappings too."""
    harness = _harness()
    workload = harness.Workload(kind, (5, 2, 3, 4), layers, bidirectional)
    result = harness.run_workload(workload, 1, None, 2e-4, SimpleNamespace(update=id))
    timed = {r.name for r in result["results"]}
    assert {"jaxrnn auto", "jaxrnn xla", "lax.scan", "torch (cpu)", "flax", "keras"} <= timed, result["notes"]


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)], ids=["one-layer", "bi-stack"])
def test_a_projected_lstm_is_timed_against_torch_and_the_lax_scan_loop(layers, bidirectional):
    harness = _harness()
    workload = harness.Workload("lstm", (5, 2, 3, 6), layers, bidirectional, proj_size=4)
    result = harness.run_workload(workload, 1, None, 2e-4, SimpleNamespace(update=id))
    timed = {r.name for r in result["results"]}
    assert {"jaxrnn auto", "jaxrnn xla", "lax.scan", "torch (cpu)"} <= timed, result["notes"]
    for peer in ("flax", "keras"):
        assert f"{peer}: skipped (it has no LSTM with an output projection)" in result["notes"]
    directions = 1 + bidirectional
    # per layer and direction: 2 T B ((width + P) 4H + H P); width 3, then the 2P-wide concatenation
    widths = [3, directions * 4][:layers]
    assert workload.flops() == sum(directions * 2 * 5 * 2 * ((w + 4) * 24 + 6 * 4) for w in widths)
    assert workload.label.endswith("(5, 2, 3, 6) proj 4")


def test_the_matmul_floor_of_a_projected_lstm_keeps_the_norm_through_the_projection():
    harness = _harness()
    T, B, n_in, H, P = 40, 3, 5, 7, 4
    floor = harness.floor_impl(harness.Workload("lstm", (T, B, n_in, H), proj_size=P))
    [((xp, _), h)] = floor.forward()
    [(_, d, dw_x, dx, dw_h, dw_hr)] = floor.backward()
    assert (xp.shape, h.shape, d.shape) == ((T * B, 4 * H), (B, P), (B, 4 * H))
    assert (dw_x.shape, dx.shape, dw_h.shape, dw_hr.shape) == (
        (n_in, 4 * H),
        (T * B, n_in),
        (P, 4 * H),
        (H, P),
    )
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 2.0, rtol=1e-4)


def test_the_reference_must_be_finite(monkeypatch):
    harness = _harness()
    nan = harness.Impl(
        "jaxrnn auto", lambda: np.full((1, 2, 3), np.nan), lambda: (1.0, np.ones((1, 2, 4)), [np.ones(5)])
    )
    monkeypatch.setattr(harness, "build", lambda wl: ([nan], []))
    monkeypatch.setattr(harness, "floor_impl", lambda wl: harness.Impl(harness.FLOOR, lambda: 0, lambda: 0))
    workload = harness.Workload("elman", (2, 1, 4, 3))
    result = harness.run_workload(workload, 1, None, 1e-4, SimpleNamespace(update=id))
    assert any("jaxrnn auto: failed (FloatingPointError: non-finite" in note for note in result["notes"])


def test_on_an_accelerator_every_implementation_is_pinned_to_full_float32_matmuls(monkeypatch):
    import torch

    harness = _harness()
    monkeypatch.setattr(harness.jax, "default_backend", lambda: "gpu")
    before = (jax.config.jax_default_matmul_precision, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with harness.float32_matmuls() as precision:
            assert "TF32 off" in precision
            assert jax.config.jax_default_matmul_precision == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        # and restored afterwards
        assert jax.config.jax_default_matmul_precision == before[0]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before[1]
        torch.backends.cudnn.allow_tf32 = True  # torch's default


def test_rounds_time_all_forwards_first_in_an_order_that_varies(monkeypatch):
    harness = _harness()
    log = []

    def impl(name):
        ys, dxs, dparams = np.ones((1, 2, 3)), np.ones((1, 2, 4)), [np.ones(5)]
        forward = lambda: log.append((name, "fwd")) or ys  # noqa: E731
        backward = lambda: log.append((name, "fwd+bwd")) or (1.0, dxs, dparams)  # noqa: E731
        return harness.Impl(name, forward, backward)

    impls, repeats = ["jaxrnn auto", "b", "c", "d"], 6
    names = sorted([*impls, harness.FLOOR])  # the matmul floor is timed in the same rounds
    monkeypatch.setattr(harness, "build", lambda wl: ([impl(n) for n in impls], []))
    monkeypatch.setattr(harness, "floor_impl", lambda wl: impl(harness.FLOOR))
    monkeypatch.setattr(harness, "calls_per_sample", lambda fn: 1)
    workload = harness.Workload("elman", (2, 1, 4, 3))
    result = harness.run_workload(workload, repeats, None, 1e-4, SimpleNamespace(update=id))
    assert sorted(r.name for r in result["results"]) == names
    assert [len(r.times["fwd"]) for r in result["results"]] == [repeats] * len(names)
    timed = log[2 * len(names) :]  # after each one's agreement check or compile (one fwd, one fwd+bwd)
    rounds = [timed[i : i + 2 * len(names)] for i in range(0, len(timed), 2 * len(names))]
    predecessors = {n: set() for n in names}
    for calls in rounds:
        order = [n for n, _ in calls[: len(names)]]
        assert sorted(order) == names  # every implementation once per round, forwards first, same order
        assert calls == [(n, "fwd") for n in order] + [(n, "fwd+bwd") for n in order]
        for before, after in zip(order, order[1:]):
            predecessors[after].add(before)
    assert len({calls[0][0] for calls in rounds}) > 1  # not always the same one first
    assert all(len(p) > 1 for p in predecessors.values())  # nobody always follows the same one


@pytest.mark.parametrize(("once_s", "calls"), [(1e-3, 5), (0.02, 1), (1e-6, 100)], ids=["ms", "slow", "fast"])
def test_short_calls_are_grouped_into_samples_of_min_sample_s(monkeypatch, once_s, calls):
    harness = _harness()
    # a fake timer: of three calls of fn, the fastest (the second) takes once_s, the first is a slow outlier
    clock = iter([0.0, 50 * once_s, 0.0, once_s, 0.0, 2 * once_s])
    monkeypatch.setattr(harness.time, "perf_counter", lambda: next(clock))
    ran = []
    assert harness.calls_per_sample(lambda: ran.append(1)) == calls
    assert ran == [1, 1, 1]


@pytest.mark.parametrize(
    ("kind", "layers", "bidirectional"),
    [("elman", 1, False), ("lstm", 1, False), ("gru", 1, False), ("lstm", 2, True)],
    ids=["elman", "lstm", "gru", "bi-lstm"],
)
def test_the_matmul_floor_runs_the_workloads_matmuls_with_a_carry_that_keeps_its_norm(
    kind, layers, bidirectional
):
    harness = _harness()
    T, B, n_in, H = 40, 3, 5, 7
    gates = harness.GATES[kind]
    floor = harness.floor_impl(harness.Workload(kind, (T, B, n_in, H), layers, bidirectional))
    forward, both = floor.forward(), floor.backward()
    widths = [n_in] * (1 + bidirectional) + [2 * H] * (2 * (layers - 1))
    assert len(forward) == len(both) == len(widths)
    for width, ((xp, rest), h), (((xp_again, _), h_again), d, dw_x, dx, dw_h) in zip(widths, forward, both):
        assert xp.shape == xp_again.shape == (T * B, gates * H) and rest is None  # not chunked: small
        assert (dw_x.shape, dx.shape, dw_h.shape, d.shape) == (
            (width, gates * H),
            (T * B, width),
            (H, gates * H),
            (B, gates * H),
        )
        # after T steps every row still has its initial norm: no overflow, no denormals to slow the timing
        np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, rtol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), np.sqrt(gates), rtol=1e-4)
        np.testing.assert_array_equal(h, h_again)


def test_the_matmul_floor_projects_a_large_sequence_in_chunks_as_the_fast_path_does(monkeypatch):
    from jaxrnn import fast_recurrence

    harness = _harness()
    T, B, n_in, H = 41, 3, 5, 7  # 41 steps: no divisor near the chunk size, so a leftover chunk
    floor = harness.floor_impl(harness.Workload("lstm", (T, B, n_in, H)))
    [(((whole, no_rest), _), *_)] = floor.backward()  # traced with the default chunk size: one chunk
    assert whole.shape == (T * B, 4 * H) and no_rest is None
    monkeypatch.setattr(fast_recurrence, "CHUNK_BYTES", 6 * B * 4 * H * 4)  # six steps of projection
    [((last, rest), _)] = floor.forward()  # traced now: chunks of 6 steps, 5 left over
    assert last.shape == (6 * B, 4 * H) and rest.shape == (5 * B, 4 * H)
    np.testing.assert_allclose(last, whole[30 * B : 36 * B], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rest, whole[36 * B :], rtol=1e-5, atol=1e-5)


def test_cells_and_shapes_select_the_workloads():
    harness = _harness()
    chosen = harness.workloads(False, ["gru", "bi-lstm"], [(128, 32, 64, 128)])
    assert [(w.kind, w.shape, w.bidirectional) for w in chosen] == [("gru", (128, 32, 64, 128), False)]
    everything = harness.workloads(False)
    assert len(everything) == 3 * len(harness.CONFIGS) + 1 and everything[-1].bidirectional
    assert not any(w.proj_size for w in everything)  # the projected LSTM only when asked for
    [projected] = harness.workloads(False, ["lstmp"], [(128, 32, 64, 128)])
    assert (projected.kind, projected.shape, projected.proj_size) == ("lstm", (128, 32, 64, 128), 64)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shape", "128,32,64"], "expected T,B,I,H (four positive ints), got '128,32,64'"),
        (["--cells", "lstm,rnn"], "unknown cells ['rnn']"),
        (["--host-devices", "0"], "--host-devices: got '0', expected a positive int"),
        (["--repeats", "0"], "--repeats: got '0', expected a positive int"),
        (["--tol", "-1"], "--tol: got '-1', expected a non-negative number"),
        (["--budget", "nan"], "--budget: got 'nan', expected a positive float"),
        (["--quick", "--cells", "gru"], "--quick runs its one small config: leave out --cells and --shape"),
        (
            ["--cells", "lstmp", "--shape", "4,2,3,1"],
            "--cells lstmp: the projection (proj_size = H // 2) needs",
        ),
        (["--host-devices", "2"], "--host-devices: JAX's CPU backend was initialised before it could apply"),
    ],
    ids=[
        "shape",
        "cells",
        "host_devices_zero",
        "repeats",
        "tol",
        "budget",
        "quick_cells",
        "lstmp_h1",
        "host_devices_after_init",
    ],
)
def test_a_malformed_shape_or_cell_is_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        _harness().main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_host_devices_times_auto_on_one_device_beside_the_split(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    argv = ["--quick", "--repeats", "1", "--host-devices", "2", "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(_RUN), *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads((tmp_path / "bench.json").read_text())
    assert document["machine"]["jax_devices"] == ["cpu:0", "cpu:1"]
    rows = {row["impl"]: row for row in document["rows"]}
    assert {"jaxrnn auto", "jaxrnn auto (1 device)"} <= set(rows)
    assert rows["jaxrnn auto (1 device)"]["max_rel_err"] < 1e-5
    assert "2 CPU devices (`--host-devices`)" in (tmp_path / "bench.md").read_text()
    # the memory rows are the one-device program's (this process has one device), not one device's share of
    # a split program (T=100 splits: ~2^28 recurrent multiply-adds)
    assert document["memory"] == _harness().memory_table([100])


def test_the_weight_gradient_check_catches_every_error_orthogonal_to_the_gradient():
    """One random direction let an error ten times the tolerance, orthogonal to the gradient, through about
    one time in fourteen; each weight's own probes catch every one, in any single weight."""
    harness = _harness()
    impl = harness.Impl("same layout", None, None, harness._same)
    rng = np.random.default_rng()
    reference = {"w_x": rng.normal(size=(3, 8)), "w_h": rng.normal(size=(2, 8)), "b": rng.normal(size=8)}
    norm = np.sqrt(harness._dot(reference, reference))
    assert harness._weight_grad_err(impl, reference, reference) < 1e-12
    for trial in range(20):
        name = list(reference)[trial % 3]
        error = rng.normal(size=reference[name].shape)
        error -= np.vdot(error, reference[name]) / np.vdot(reference[name], reference[name]) * reference[name]
        error *= 10 * 2e-4 * norm / np.linalg.norm(error)
        wrong = {**reference, name: reference[name] + error}
        assert harness._weight_grad_err(impl, wrong, reference) > 2e-4, (trial, name)


def test_an_unwritable_out_is_refused_before_any_timing(tmp_path, monkeypatch, capsys):
    harness = _harness()
    monkeypatch.setattr(harness, "run_workload", lambda *args: pytest.fail("timed before checking --out"))
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as exit:
        harness.main(["--quick", "--out", str(tmp_path / "afile" / "sub")])
    assert exit.value.code == 2
    assert "--out: cannot write into" in capsys.readouterr().err


def test_a_shape_given_twice_runs_once():
    workloads = _harness().workloads(False, ["elman", "gru"], [(4, 2, 3, 5), (4, 2, 3, 5)])
    assert [(wl.kind, wl.shape) for wl in workloads] == [("elman", (4, 2, 3, 5)), ("gru", (4, 2, 3, 5))]


def test_the_host_devices_sentence_is_only_for_cpu_devices():
    harness = _harness()
    machine = {**harness.machine(), "jax_devices": ["cuda:0", "cuda:1"], "jax_backend": "gpu"}
    machine["accelerators"] = ["NVIDIA H100", "NVIDIA H100"]
    info = {
        "machine": machine,
        "argv": [],
        "matmul_precision": "highest",
        "peak": {"n": 512, "xla_gflops": 1.0, "numpy_gflops": 1.0},
        "repeats": 10,
        "budget_s": None,
    }
    text = harness.markdown([], [], info, [], [])
    assert "(NVIDIA H100, NVIDIA H100)" in text and "CPU devices (`--host-devices`)" not in text
    cpu = harness.markdown([], [], {**info, "machine": {**machine, "jax_backend": "cpu"}}, [], [])
    assert "2 CPU devices (`--host-devices`)" in cpu
