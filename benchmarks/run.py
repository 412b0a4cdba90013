"""Side-by-side RNN benchmarks: jaxrnn's backends against PyTorch, Flax, Keras 3 and a hand-written lax.scan.

One command, one process, the same weights and inputs for every implementation::

    python benchmarks/run.py            # the full run (10-16 minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # one small config: checks that everything runs and writes its files
    python benchmarks/run.py --host-devices 2   # two CPU devices: auto splits small recurrences across them
    python benchmarks/run.py --cells lstmp      # the LSTM with proj_size = H / 2 (PyTorch the only peer)

Every implementation must agree with jaxrnn on the outputs, the loss, the input gradient and the weight
gradients before it is timed (the weight gradients in each library's own layout, through their inner
products with random directions mapped into that layout, eight per weight). Forward and forward+backward
(the gradient of ``0.5 * sum(ys**2)`` w.r.t. all params and the inputs) are compiled and warmed up, then
timed in rounds: each round times every implementation's forward, then every forward+backward, in an order
shuffled per round (seeded). The same rounds time each workload's matmuls alone (``floor_impl``), the least
an XLA program with jaxrnn's matmul shapes can cost. A peer whose library is missing is skipped with a note.
Results: a table on stdout and ``bench.json``, ``bench.md`` and ``bench.png`` under ``--out`` (default
``benchmarks/results``; ``benchmarks/results/partial`` for ``--quick``, ``--cells`` or ``--shape``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxrnn
from jaxrnn import dispatch
from jaxrnn.fast_recurrence import chunk_steps
from jaxrnn.interop import to_flax, to_keras, to_torch

#: (T, B, I, H) of the single-layer configs, run for every cell.
CONFIGS: list[tuple[int, int, int, int]] = [
    (128, 32, 64, 128),
    (512, 32, 64, 256),
    (128, 128, 128, 512),
    (1024, 8, 32, 64),
    (100, 1, 16, 32),
]
#: The 2-layer bidirectional LSTM config.
BI_CONFIG: tuple[int, int, int, int] = (256, 32, 64, 256)
GATES = {"elman": 1, "lstm": 4, "gru": 3}
#: "auto" with its batch split across host devices turned off (timed when the process has several).
AUTO_ONE_DEVICE = "jaxrnn auto (1 device)"
#: Names of the jaxrnn implementations; the rest are peers.
OURS = ("jaxrnn auto", "jaxrnn xla", "jaxrnn pallas", AUTO_ONE_DEVICE)
#: Name of the workload's matmuls timed alone (:func:`floor_impl`); not an implementation, not ranked.
FLOOR = "matmul floor"


@dataclass
class Workload:
    """One benchmark case: a cell kind at (T, B, I, H), one layer or a 2-layer bidirectional stack; an LSTM
    may have a ``proj_size`` (its outputs and recurrent input that wide)."""

    kind: str
    shape: tuple[int, int, int, int]
    layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0

    @property
    def label(self) -> str:
        prefix = f"{self.layers}-layer bi-" if self.bidirectional else ""
        suffix = f" proj {self.proj_size}" if self.proj_size else ""
        return f"{prefix}{self.kind} {self.shape}{suffix}"

    def flops(self) -> float:
        """Matmul FLOPs of one forward pass (forward+backward counts 3x)."""
        T, B, n_in, H = self.shape
        out = self.proj_size or H
        directions = 2 if self.bidirectional else 1
        total, width = 0.0, n_in
        for _ in range(self.layers):
            total += directions * 2.0 * T * B * ((width + out) * GATES[self.kind] * H + H * self.proj_size)
            width = directions * out
        return total


@dataclass
class Impl:
    """An implementation ready to time: ``forward() -> ys (B, T, H')``, ``backward() -> (loss, dxs,
    dparams)`` with the weight gradients in the implementation's own layout, and ``layout(net_params)``:
    the linear map from jaxrnn network params to that layout (its weights are ``layout`` of jaxrnn's)."""

    name: str
    forward: Callable[[], Any]
    backward: Callable[[], Any]
    layout: Callable[[Any], Any] = lambda params: params


@dataclass
class Result:
    """Timings of one implementation on one workload (milliseconds; compile times in seconds)."""

    name: str
    times: dict[str, list[float]] = field(default_factory=lambda: {"fwd": [], "fwd+bwd": []})
    compile_s: dict[str, float] = field(default_factory=dict)
    max_rel_err: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    """CPU model, cores, devices and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for lib in ("jaxrnn", "jax", "jaxlib", "numpy", "torch", "flax", "keras"):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return {
        "cpu": cpu,
        # (the cores this process may run on: a pinned or container-limited run has fewer than the machine)
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "accelerators": [d.device_kind for d in jax.devices() if d.platform != "cpu"],
        "versions": versions,
        "commit": _commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _commit() -> str | None:
    """The git commit of the harness's checkout (``+dirty`` with uncommitted changes), or None outside one."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@contextlib.contextmanager
def float32_matmuls() -> Iterator[str]:
    """Inside, every implementation multiplies float32 in full float32; yields how, for the result files.

    On GPUs, JAX's default matmul precision (also inside the Pallas kernels) and cuDNN's RNNs may round
    float32 operands to TF32 (a 10-bit mantissa): peers would then differ by more than float rounding and
    time unlike work. CPUs multiply float32 in float32 by default, so nothing is set there. The settings are
    restored on exit.
    """
    if jax.default_backend() == "cpu":
        yield "float32 (the CPU default)"
        return
    try:
        import torch
    except ImportError:
        torch = None
    flags = (
        None if torch is None else (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    )
    with jax.default_matmul_precision("highest"):
        try:
            if torch is not None:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            yield "float32, TF32 off (jax_default_matmul_precision='highest'; torch allow_tf32=False)"
        finally:
            if flags is not None:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


#: A timed sample lasts at least this long: shorter calls run back to back and the sample is their mean
#: (as ``timeit`` does), so sub-millisecond workloads are not one timer reading each.
MIN_SAMPLE_S = 0.005
MAX_CALLS_PER_SAMPLE = 100


def calls_per_sample(fn: Callable[[], Any], tries: int = 3) -> int:
    """Times ``tries`` calls of ``fn`` (warm-ups too) and returns how many calls of the fastest one's length
    make a sample of ``MIN_SAMPLE_S`` (one slow call would make every sample of ``fn`` too short)."""
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    once = max(min(times), 1e-7)
    return max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_S / once)))


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(n: int) -> dict[str, float]:
    """float32 GFLOP/s of an ``n x n x n`` matmul, in XLA and in numpy."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(jnp.matmul)
    xla = _median_time(lambda: f(a, a).block_until_ready(), 5)
    an = np.asarray(a)
    numpy = _median_time(lambda: an @ an, 5)
    return {"n": n, "xla_gflops": 2 * n**3 / xla / 1e9, "numpy_gflops": 2 * n**3 / numpy / 1e9}


def _loss(ys: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(ys**2)


def _jax_impl(
    name: str, apply: Callable, layout: Callable[[Any], Any], net_params: list, xs: jax.Array
) -> Impl:
    """An Impl from ``apply(variables, xs) -> ys`` (batch-major), jitted, with ``variables =
    layout(net_params)``."""
    variables = layout(net_params)
    fwd = jax.jit(apply)

    def loss(variables, xs):
        return _loss(apply(variables, xs))

    bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def backward():
        value, (dvariables, dxs) = jax.block_until_ready(bwd(variables, xs))
        return value, dxs, dvariables

    return Impl(name, lambda: jax.block_until_ready(fwd(variables, xs)), backward, layout)


def jaxrnn_impls(wl: Workload, net_params: list, xs: jax.Array) -> tuple[list[Impl], list[str]]:
    """jaxrnn's backends: auto (the default), xla (the reference), pallas (GPU/TPU only)."""
    H = wl.shape[3]
    impls, notes = [], []
    backends = ["auto", "xla"]
    if jax.default_backend() != "cpu":
        backends.append("pallas")
    else:
        notes.append("jaxrnn pallas: skipped on CPU (Pallas interpret mode is for checking, not speed)")
    for backend in backends:
        net = jaxrnn.rnn(
            _cell(wl.kind, H, wl.proj_size),
            num_layers=wl.layers,
            bidirectional=wl.bidirectional,
            backend=backend,
        )
        apply = functools.partial(_apply, net)
        impls.append(_jax_impl(f"jaxrnn {backend}", apply, _same, net_params, xs))
        if backend == "auto" and jax.default_backend() == "cpu" and jax.local_device_count() > 1:
            impls.append(
                _jax_impl(AUTO_ONE_DEVICE, functools.partial(_one_device, net), _same, net_params, xs)
            )
    return impls, notes


def _same(params: Any) -> Any:
    return params


def _apply(net: jaxrnn.Network, params: Any, xs: jax.Array) -> jax.Array:
    return net.apply(params, xs)[0]


def _one_device(net: jaxrnn.Network, params: Any, xs: jax.Array) -> jax.Array:
    with jaxrnn.host_split.disabled():
        return _apply(net, params, xs)


def _cell(kind: str, H: int, proj_size: int = 0) -> jaxrnn.Cell:
    if kind == "lstm":
        return jaxrnn.lstm(H, proj_size=proj_size)
    return {"elman": jaxrnn.elman, "gru": jaxrnn.gru}[kind](H)


def lax_scan_impl(wl: Workload, net_params: list, xs: jax.Array) -> Impl:
    """A hand-written, unhoisted ``lax.scan`` (``x_t W_x`` inside the loop), differentiated by autodiff."""
    kind = wl.kind

    def step(p, h, x):
        if kind == "elman":
            h = jnp.tanh(x @ p["w_x"] + h @ p["w_h"] + p["b"])
            return h, h
        if kind == "lstm":
            h, c = h
            i, f, g, o = jnp.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            if "w_hr" in p:
                h = h @ p["w_hr"]
            return (h, c), h
        xr, xz, xn = jnp.split(x @ p["w_x"] + p["b_x"], 3, axis=-1)
        hr, hz, hn = jnp.split(h @ p["w_h"] + p["b_h"], 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h

    def direction(p, xs, reverse):
        B, (out, width) = xs.shape[0], p["w_h"].shape
        h0 = jnp.zeros((B, out), xs.dtype)
        carry = (h0, jnp.zeros((B, width // 4), xs.dtype)) if kind == "lstm" else h0
        scan = functools.partial(jax.lax.scan, reverse=reverse)
        _, hs = scan(lambda c, x: step(p, c, x), carry, jnp.swapaxes(xs, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    def apply(net_params, xs):
        """Each layer's forward (and backward, read from the last step down) direction, concatenated."""
        for layer in net_params:
            # (in a fixed order: under jit a dict comes back with its keys sorted)
            names = [name for name in ("forward", "backward") if name in layer]
            xs = jnp.concatenate([direction(layer[name], xs, name == "backward") for name in names], -1)
        return xs

    return _jax_impl("lax.scan", apply, lambda p: p, net_params, xs)


def flax_impl(wl: Workload, net_params: list, xs: jax.Array) -> Impl:
    """Flax linen ``nn.RNN`` over SimpleCell / OptimizedLSTMCell / GRUCell (``nn.Bidirectional`` stacks)."""
    import flax.linen as nn

    H = wl.shape[3]
    make = {"elman": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[wl.kind]
    cell = _cell(wl.kind, H)

    def flax_params(p):
        return to_flax(cell, p, make(H))[1]["params"]

    if not wl.bidirectional:
        model = nn.RNN(make(H))

        def layout(p):
            return {"params": {"cell": flax_params(p[0]["forward"])}}

    else:

        class Stack(nn.Module):
            @nn.compact
            def __call__(self, x):
                for _ in range(wl.layers):
                    x = nn.Bidirectional(nn.RNN(make(H)), nn.RNN(make(H)))(x)
                return x

        model = Stack()
        # cells made inside a compact module are named after it: <Cell>_0 (layer 0 forward), <Cell>_1, ...
        name = make.__name__

        def layout(p):
            variables = {"params": {}}
            for i, layer in enumerate(p):
                variables["params"][f"{name}_{2 * i}"] = flax_params(layer["forward"])
                variables["params"][f"{name}_{2 * i + 1}"] = flax_params(layer["backward"])
            return variables

    return _jax_impl("flax", model.apply, layout, net_params, xs)


def keras_impl(wl: Workload, net_params: list, xs: jax.Array) -> Impl:
    """Keras 3 SimpleRNN / LSTM / GRU (JAX backend), timed through its jitted ``stateless_call``."""
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"Keras runs on {keras.backend.backend()!r}, not JAX (set KERAS_BACKEND=jax)")
    T, B, n_in, H = wl.shape
    layer_cls = {"elman": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[wl.kind]
    one = jaxrnn.rnn(_cell(wl.kind, H), bidirectional=wl.bidirectional)
    layers = []
    for i in range(wl.layers):
        layer = layer_cls(H, return_sequences=True)
        if wl.bidirectional:
            layer = keras.layers.Bidirectional(layer)
        layer.build((B, T, n_in if i == 0 else 2 * H))
        layers.append(layer)
    model = keras.Sequential([keras.Input((T, n_in)), *layers])
    fixed = [v.value for v in model.non_trainable_variables]

    def layout(p):
        """The model's trainable values for jaxrnn params ``p`` (written into the layers, then read back)."""
        for layer, layer_params in zip(layers, p):
            to_keras(one, [layer_params], layer)
        return [v.value for v in model.trainable_variables]

    def apply(variables, xs):
        return model.stateless_call(variables, fixed, xs)[0]

    return _jax_impl("keras", apply, layout, net_params, xs)


def torch_impl(wl: Workload, net_params: list, xs: jax.Array) -> Impl:
    """PyTorch nn.RNN / nn.LSTM / nn.GRU on CPU (torch 2.13's CPU build runs the LSTM through oneDNN and
    RNN/GRU through ATen's own step loop), cuDNN when CUDA is available."""
    import torch

    T, B, n_in, H = wl.shape
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module_cls = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[wl.kind]
    options = {"proj_size": wl.proj_size} if wl.proj_size else {}
    module = module_cls(
        n_in, H, num_layers=wl.layers, bidirectional=wl.bidirectional, batch_first=True, **options
    )
    net = jaxrnn.rnn(_cell(wl.kind, H, wl.proj_size), num_layers=wl.layers, bidirectional=wl.bidirectional)

    def layout(p):
        """torch's params for jaxrnn's ``p``. jaxrnn's one bias ``b`` of an Elman or LSTM cell stands for
        ``bias_ih + bias_hh``: half of it goes to each here, so that both of torch's bias gradients are
        checked (the module itself is loaded with ``bias_hh = 0``: the same function)."""
        state = {name: tensor.numpy() for name, tensor in to_torch(net, p).items()}
        if wl.kind != "gru":
            for name in [n for n in state if n.startswith("bias_ih")]:
                state[name] = state[name.replace("bias_ih", "bias_hh")] = state[name] / 2
        return state

    module.load_state_dict(to_torch(net, net_params))
    module.to(device)
    x = torch.tensor(np.asarray(xs), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            ys = module(x)[0]
        sync()
        return ys

    def backward():  # tensors on the device: the agreement check copies them to the host, the timing does not
        module.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_(True)
        loss = 0.5 * (module(xg)[0] ** 2).sum()
        loss.backward()
        sync()
        return loss.detach(), xg.grad, {name: p.grad for name, p in module.named_parameters()}

    return Impl(f"torch ({device})", forward, backward, layout)


def floor_impl(wl: Workload) -> Impl:
    """The workload's matmuls alone, with jaxrnn's shapes, as XLA CPU runs them.

    Forward, per layer and direction: the projection ``(T·B, I) x (I, G·H)`` (chunked over time as
    jaxrnn's forward-only pass chunks a large one, :func:`jaxrnn.fast_recurrence.chunk_steps`: a large
    temporary costs page faults) and a loop of ``T`` dots ``(B, H) x (H, G·H)`` whose carry is the sum of the
    product's ``G`` gate blocks (the weights' blocks sum to an orthogonal matrix, so the carry keeps its
    norm). Forward+backward: the same, a loop of ``T`` dots ``(B, G·H) x (G·H, H)`` (the carry tiled back to
    ``G`` blocks) and the ``dW_x``, ``dx`` and ``dW_h`` matmuls over all ``T·B`` rows: three times the
    forward's FLOPs, as :meth:`Workload.flops` counts (the fast path's VJP projects the whole sequence; the
    floor takes the cheaper arrangement). No gate arithmetic and no stored sequences: an RNN whose every other
    operation were free. Where the per-step dots dominate this bounds any such program from below; at tiny
    sizes the fixed costs per call and per step dominate and it does not.

    With a ``proj_size`` ``P`` the per-step dots are ``(B, P) x (P, G·H)`` and the projection ``(B, H) x
    (H, P)`` (backward: ``(B, P) x (P, H)`` and ``(B, G·H) x (G·H, P)``), plus ``dW_hr`` over all rows.
    """
    T, B, n_in, H = wl.shape
    out = wl.proj_size or H
    gates = GATES[wl.kind]
    directions = 2 if wl.bidirectional else 1
    widths = [
        n_in if layer == 0 else directions * out for layer in range(wl.layers) for _ in range(directions)
    ]
    operands = []
    for k, width in enumerate(widths):
        keys = jax.random.split(jax.random.key(100 + k), 7)
        # the rows of an orthogonal matrix (all of them without a projection): h -> h q keeps the norm, and
        # with a projection w_hr = qᵀ maps it back
        q = jnp.linalg.qr(jax.random.normal(keys[0], (H, H)))[0][:out]
        rest = jax.random.normal(keys[1], (out, (gates - 1) * H)) / math.sqrt(H)
        first = q - rest.reshape(out, gates - 1, H).sum(1)
        operands.append(
            {
                "x": jax.random.normal(keys[2], (T, B, width)),
                "w_x": jax.random.normal(keys[3], (width, gates * H)) / math.sqrt(width),
                "w_h": jnp.concatenate([first, rest], axis=1),
                "h0": jnp.full((B, out), 1 / math.sqrt(out)),
                "d": jax.random.normal(keys[4], (T * B, gates * H)),
                "hs": jax.random.normal(keys[5], (T * B, out)),
            }
        )
        if wl.proj_size:
            operands[-1] |= {"w_hr": q.T, "ms": jax.random.normal(keys[6], (T * B, H))}
    forward_operands = [{k: a[k] for k in ("x", "w_x", "w_h", "h0", "w_hr") if k in a} for a in operands]

    def project(a, steps):
        """``x W_x`` over ``steps``-step chunks; returns the last whole chunk's and the leftover steps'."""
        x, w_x = a["x"], a["w_x"]
        if steps >= T:
            return x.reshape(T * B, -1) @ w_x, None
        whole = T // steps * steps

        def chunk(i, _):
            return lax.dynamic_slice_in_dim(x, i * steps, steps).reshape(steps * B, -1) @ w_x

        last = lax.fori_loop(0, T // steps, chunk, jnp.zeros((steps * B, w_x.shape[1]), w_x.dtype))
        return last, (x[whole:].reshape(-1, x.shape[-1]) @ w_x if whole < T else None)

    def recurrent_dots(a):
        def step(h, _):
            m = (h @ a["w_h"]).reshape(B, gates, H).sum(1)
            return (m @ a["w_hr"] if "w_hr" in a else m), None

        return lax.scan(step, a["h0"], None, length=T)[0]

    def forward(a):
        return project(a, chunk_steps(a["x"], a["w_x"])), recurrent_dots(a)

    def forward_backward(a):
        w_h_t = a["w_h"].T
        w_hr_t = a["w_hr"].T if "w_hr" in a else None

        def step(d, _):
            g = d @ w_h_t
            return jnp.tile(g if w_hr_t is None else g @ w_hr_t, (1, gates)), None

        start = a["h0"] if w_hr_t is None else a["h0"] @ w_hr_t
        loop = lax.scan(step, jnp.tile(start, (1, gates)), None, length=T)[0]
        x2 = a["x"].reshape(T * B, -1)
        grads = (x2.T @ a["d"], a["d"] @ a["w_x"].T, a["hs"].T @ a["d"])
        return (forward(a), loop, *grads, *(() if w_hr_t is None else (a["ms"].T @ a["hs"],)))

    fwd = jax.jit(lambda ops: [forward(a) for a in ops])
    fwd_bwd = jax.jit(lambda ops: [forward_backward(a) for a in ops])
    return Impl(
        FLOOR,
        lambda: jax.block_until_ready(fwd(forward_operands)),
        lambda: jax.block_until_ready(fwd_bwd(operands)),
    )


PEERS: list[tuple[str, Callable[..., Impl]]] = [
    ("torch", torch_impl),
    ("flax", flax_impl),
    ("keras", keras_impl),
]


def _random_biases(net_params: list, key: jax.Array) -> list:
    """``net_params`` with every bias drawn at random (an initial bias is zero, or one for the LSTM's
    forget gate, which would let a peer that mishandles biases agree)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(net_params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [
            0.1 * jax.random.normal(k, leaf.shape, leaf.dtype) if str(path[-1].key).startswith("b") else leaf
            for (path, leaf), k in zip(leaves, keys)
        ]
    )


def build(wl: Workload) -> tuple[list[Impl], list[str]]:
    """All implementations of ``wl`` with the same weights and inputs, and notes on skipped peers."""
    T, B, n_in, H = wl.shape
    net = jaxrnn.rnn(_cell(wl.kind, H, wl.proj_size), num_layers=wl.layers, bidirectional=wl.bidirectional)
    net_params = _random_biases(net.init(jax.random.key(0), n_in), jax.random.key(2))
    xs = jax.random.normal(jax.random.key(1), (B, T, n_in))
    impls, notes = jaxrnn_impls(wl, net_params, xs)
    impls.append(lax_scan_impl(wl, net_params, xs))
    for lib, make in PEERS:
        if wl.proj_size and lib != "torch":
            notes.append(f"{lib}: skipped (it has no LSTM with an output projection)")
            continue
        try:
            impls.append(make(wl, net_params, xs))
        except ImportError as error:
            notes.append(f"{lib}: skipped ({error})")
        except Exception as error:  # a peer that cannot run this workload must not stop the others
            notes.append(f"{lib}: failed to build ({type(error).__name__}: {error})")
    return impls, notes


def _host(value: Any) -> Any:
    """A result on the host as NumPy (a torch tensor copied off its device)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _dot(a: Any, b: Any) -> float:
    """The inner product of two pytrees of the same structure, in float64."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return sum(float(np.vdot(np.asarray(u, np.float64), np.asarray(v, np.float64))) for u, v in pairs)


#: Random directions per weight-gradient leaf in the agreement check (:func:`_weight_grad_err`).
PROBES = 8


def _weight_grad_err(impl: Impl, dparams: Any, reference: Any) -> float:
    """How far ``impl``'s weight gradients are from jaxrnn's ``reference`` (both pytrees; ``impl``'s in its
    own layout), without converting gradients between layouts.

    ``layout`` is linear and the implementations compute the same function of jaxrnn's params, so
    ``<dparams, layout(v)> = <reference, v>`` for every ``v`` when the gradients agree. Checked along the
    reference itself (the error relative to ``|g|^2``: a zero, scaled or sign-flipped gradient) and, for
    each leaf ``g_i`` of the reference, along :data:`PROBES` random directions nonzero only in that leaf:
    for a standard normal ``v`` the gap is a normal draw of standard deviation ``|e_i|`` (the leaf's
    error), so the root mean square over the probes estimates ``|e_i|``, reported relative to ``|g_i|``
    (one draw alone may come out near zero; eight underestimate tenfold with a chance of about 1e-7).
    """
    square = _dot(reference, reference)
    worst = abs(_dot(dparams, impl.layout(reference)) - square) / max(square, 1e-30)
    leaves, treedef = jax.tree_util.tree_flatten(reference)
    zeros = [np.zeros(np.shape(leaf), np.float32) for leaf in leaves]
    rng = np.random.default_rng(0)
    for i, leaf in enumerate(leaves):
        gaps = []
        for _ in range(PROBES):
            v = rng.standard_normal(np.shape(leaf)).astype(np.float32)
            probe = treedef.unflatten(zeros[:i] + [v] + zeros[i + 1 :])
            gaps.append(_dot(dparams, impl.layout(probe)) - _dot(leaf, v))
        norm = math.sqrt(_dot(leaf, leaf))
        worst = max(worst, math.sqrt(np.mean(np.square(gaps))) / max(norm, 1e-6 * math.sqrt(square), 1e-30))
    return worst


def run_workload(
    wl: Workload, repeats: int, budget_s: float | None, tol: float, progress: Any
) -> dict[str, Any]:
    """Checks agreement, compiles, then times ``wl``'s implementations in alternating rounds.

    Rounds stop after ``repeats``, or, with a ``budget_s``, once that many seconds of rounds have run (at
    least 3 rounds).
    """
    impls, notes = build(wl)
    results: dict[str, Result] = {}
    reference, reference_name = None, None
    for impl in impls:
        result = Result(impl.name)
        try:
            start = time.perf_counter()
            ys = _host(impl.forward())
            result.compile_s["fwd"] = time.perf_counter() - start
            start = time.perf_counter()
            loss, dxs, dparams = jax.tree_util.tree_map(_host, impl.backward())
            result.compile_s["fwd+bwd"] = time.perf_counter() - start
            if reference is None:
                if impl.name not in OURS:
                    raise RuntimeError("no jaxrnn implementation ran to check it against")
                leaves = jax.tree_util.tree_leaves(dparams)
                if not all(np.all(np.isfinite(a)) for a in (ys, loss, dxs, *leaves)):
                    raise FloatingPointError("non-finite outputs or gradients: no reference to check against")
                reference, reference_name = (ys, float(loss), dxs, dparams), impl.name
            errors = [
                _rel_err(ys, reference[0]),
                _rel_err(float(loss), reference[1]),
                _rel_err(dxs, reference[2]),
                _weight_grad_err(impl, dparams, reference[3]),
            ]
            result.max_rel_err = float(np.max(errors))  # (a NaN stays NaN)
        except Exception as error:  # as above: note it and go on
            notes.append(f"{impl.name}: failed ({type(error).__name__}: {error})")
            continue
        if not result.max_rel_err <= tol:  # (NaN fails too)
            notes.append(
                f"{impl.name}: DISAGREES with {reference_name} (error {result.max_rel_err:.1e}), not timed"
            )
        else:
            result.calls = {"fwd": calls_per_sample(impl.forward), "fwd+bwd": calls_per_sample(impl.backward)}
            results[impl.name] = result
    timed = [impl for impl in impls if impl.name in results]
    floor = floor_impl(wl)  # timed in the same rounds, never compared: it computes nothing of the RNN
    floor.forward(), floor.backward()  # compiled before calls_per_sample times one call
    calls = {"fwd": calls_per_sample(floor.forward), "fwd+bwd": calls_per_sample(floor.backward)}
    results[FLOOR] = Result(FLOOR, calls=calls)
    timed.append(floor)
    start_rounds = time.perf_counter()
    for done in range(repeats):
        if budget_s is not None and done >= 3 and time.perf_counter() - start_rounds > budget_s:
            progress.update(repeats - done)
            break
        # each round times every forward, then every forward+backward, in an order shuffled per round
        # (seeded): no implementation always runs right after the same one, whose freed memory or spinning
        # threads it would inherit
        order = random.Random(done).sample(timed, len(timed))
        for workload in ("fwd", "fwd+bwd"):
            for impl in order:
                fn = impl.forward if workload == "fwd" else impl.backward
                calls = results[impl.name].calls[workload]
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                results[impl.name].times[workload].append((time.perf_counter() - start) * 1e3 / calls)
        progress.update(1)
    return {"workload": wl, "results": list(results.values()), "notes": notes}


def summarize(run: dict[str, Any], peak_gflops: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of one workload (median/min/max ms, ratio to the best, GFLOP/s, % of peak, compile s) and its
    matmul floor against the best peer and ``jaxrnn auto``."""
    wl = run["workload"]
    rows = []
    ranked = [r for r in run["results"] if r.name != FLOOR]
    best = {w: min((statistics.median(r.times[w]) for r in ranked), default=None) for w in ("fwd", "fwd+bwd")}
    peers = [r for r in ranked if r.name not in OURS]
    best_peer = {w: min((statistics.median(r.times[w]) for r in peers), default=None) for w in best}
    for r in ranked:
        row: dict[str, Any] = {"workload": wl.label, "impl": r.name, "max_rel_err": r.max_rel_err}
        for w, factor in (("fwd", 1), ("fwd+bwd", 3)):
            median = statistics.median(r.times[w])
            gflops = factor * wl.flops() / (median / 1e3) / 1e9
            row[w] = {
                "median_ms": median,
                "min_ms": min(r.times[w]),
                "max_ms": max(r.times[w]),
                "ratio_to_best": median / best[w],
                "ratio_to_best_peer": median / best_peer[w] if best_peer[w] else None,
                "gflops": gflops,
                "pct_peak": 100 * gflops / peak_gflops,
                "compile_s": r.compile_s[w],
                "repeats": len(r.times[w]),
                "calls_per_sample": r.calls[w],
            }
        rows.append(row)
    floor = next(r for r in run["results"] if r.name == FLOOR)
    auto = next((row for row in rows if row["impl"] == "jaxrnn auto"), None)
    bound: dict[str, Any] = {"workload": wl.label}
    for w, factor in (("fwd", 1), ("fwd+bwd", 3)):
        median = statistics.median(floor.times[w])
        bound[w] = {
            "floor_ms": median,
            "floor_gflops": factor * wl.flops() / (median / 1e3) / 1e9,
            "best_peer_ms": best_peer[w],
            "auto_ms": auto[w]["median_ms"] if auto else None,
        }
    return rows, bound


def markdown(
    rows: list[dict[str, Any]],
    floors: list[dict[str, Any]],
    info: dict[str, Any],
    notes: list[str],
    memory: list[dict],
) -> str:
    """The results as a markdown document."""
    m = info["machine"]
    v = m["versions"]
    lines = [
        "# jaxrnn benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; devices {m['jax_devices']}"
        + (f" ({', '.join(m['accelerators'])})" if m.get("accelerators") else "")
        + "; "
        f"load average at start {m['load_average']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"jaxrnn commit: {m.get('commit') or 'unknown'}; options: "
        f"{' '.join(info.get('argv', [])) or 'none'}.",
        f"Matmul precision: {info['matmul_precision']}.",
        *(
            [
                f"{len(m['jax_devices'])} CPU devices (`--host-devices`): `jaxrnn auto` splits small "
                "recurrences' batches across them (`jaxrnn.host_split`); `jaxrnn auto (1 device)` is the "
                "same code kept on one device. The peers and the matmul floor run on one device."
            ]
            if len(m["jax_devices"]) > 1 and m.get("jax_backend", "cpu") == "cpu"
            else []
        ),
        f"Matmul peak (float32, {info['peak']['n']}³): XLA {info['peak']['xla_gflops']:.1f} GFLOP/s, "
        f"numpy {info['peak']['numpy_gflops']:.1f} GFLOP/s; % of peak below uses the larger.",
        f"Median of {info['repeats']} rounds"
        + ("" if info["budget_s"] is None else f" (fewer, at least 3, where {info['budget_s']:g} s ran out)")
        + f" (a sample: the mean of back-to-back calls filling {1e3 * MIN_SAMPLE_S:g} ms, at most "
        f"{MAX_CALLS_PER_SAMPLE})"
        + "; implementations alternate within a round, in a shuffled order; ms (min–max). "
        "Ratio: to the best implementation; vs peer: to the best non-jaxrnn one. Compile s: the first "
        "call's time (jit compile plus one run; for torch, which compiles nothing, its first call).",
        "",
        "| workload | impl | fwd ms | ratio | vs peer | GFLOP/s | % peak | fwd+bwd ms | ratio | vs peer | "
        "GFLOP/s | % peak | compile s (fwd / fwd+bwd) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["workload"], row["impl"]]
        for w in ("fwd", "fwd+bwd"):
            s = row[w]
            vs_peer = f"{s['ratio_to_best_peer']:.2f}" if s["ratio_to_best_peer"] else "–"
            cells += [
                f"{s['median_ms']:.2f} ({s['min_ms']:.2f}–{s['max_ms']:.2f})",
                f"{s['ratio_to_best']:.2f}",
                vs_peer,
                f"{s['gflops']:.1f}",
                f"{s['pct_peak']:.0f}",
            ]
        cells.append(f"{row['fwd']['compile_s']:.2f} / {row['fwd+bwd']['compile_s']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Matmul floor",
        "",
        "Each workload's matmuls alone (projection, per-step dots in `lax.scan` loops, the backward's dots "
        "and weight-gradient matmuls; no gate arithmetic, nothing stored), timed in the same rounds: what an "
        "XLA program built from jaxrnn's matmul shapes costs at least here. `floor / peer` above a target "
        "ratio means no such program meets it on this machine.",
        "",
        "| workload | floor fwd ms | GFLOP/s | floor / peer | auto / floor | floor fwd+bwd ms | GFLOP/s | "
        "floor / peer | auto / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for floor in floors:
        cells = [floor["workload"]]
        for w in ("fwd", "fwd+bwd"):
            f = floor[w]
            cells += [
                f"{f['floor_ms']:.2f}",
                f"{f['floor_gflops']:.1f}",
                f"{f['floor_ms'] / f['best_peer_ms']:.2f}" if f["best_peer_ms"] else "–",
                f"{f['auto_ms'] / f['floor_ms']:.2f}" if f["auto_ms"] else "–",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if memory:
        lines += [
            "",
            "## Peak memory of forward+backward (LSTM, B=8, I=64, H=256)",
            "",
            "From XLA's compiled memory analysis (`jit(grad).lower(...).compile().memory_analysis()`: "
            "arguments + outputs + temporaries), without running, of the program on one device (no "
            "host-device split, whose analysis would count one device's share).",
            "",
            "| T | remat | backend | temp MiB | total MiB |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {m['T']} | {m['remat']} | {m['backend']} | {m['temp_mib']:.1f} | {m['total_mib']:.1f} |"
            for m in memory
        ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


#: The memory table's programs: (remat, backend asked for). ``remat=True`` runs the reference whatever the
#: backend, so the reference without remat is the row that shows what remat itself saves.
_MEMORY_CASES = ((False, "auto"), (False, "xla"), (True, "auto"))

#: How the memory table names the path :func:`jaxrnn.dispatch.select` picks.
_PATH_NAMES = {"fast": "fast path", "xla": "reference", "pallas": "Pallas kernel"}


def memory_table(steps: list[int]) -> list[dict[str, Any]]:
    """Compiled peak-memory estimates of LSTM forward+backward on one device: the default path, the reference
    without remat and with remat (:data:`_MEMORY_CASES`).

    The split of ``--host-devices`` is disabled here: XLA's analysis of a split program counts one
    device's share, which would halve the fast path's rows against the (unsplit) reference rows.
    """
    B, n_in, H = 8, 64, 256
    cell = jaxrnn.lstm(H)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), n_in))
    rows = []
    labels = {}
    for remat, backend in _MEMORY_CASES:
        path, _ = dispatch.select(cell, params, backend=backend, remat=remat, platform=jax.default_backend())
        labels[remat, backend] = f"{backend}{' with remat' if remat else ''} ({_PATH_NAMES[path]})"
    for T in steps:
        xs = jax.ShapeDtypeStruct((B, T, n_in), jnp.float32)
        for remat, backend in _MEMORY_CASES:
            label = labels[remat, backend]

            def loss(p, x, remat=remat, backend=backend):
                return _loss(jaxrnn.scan(cell, p, x, remat=remat, backend=backend)[0])

            with jaxrnn.host_split.disabled():
                compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
            m = compiled.memory_analysis()
            total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
            total -= m.alias_size_in_bytes
            rows.append(
                {
                    "T": T,
                    "remat": remat,
                    "backend": label,
                    "temp_mib": m.temp_size_in_bytes / 2**20,
                    "total_mib": total / 2**20,
                }
            )
    return rows


def plot(rows: list[dict[str, Any]], info: dict[str, Any], path: Path) -> None:
    """Bar chart of the ratio to the best implementation, per workload, forward and forward+backward, titled
    with the machine and the library versions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.2 * len(workloads)), 8), sharex=True)
    width = 0.8 / len(impls)
    for ax, w in zip(axes, ("fwd", "fwd+bwd")):
        for k, impl in enumerate(impls):
            values = {r["workload"]: r[w]["ratio_to_best"] for r in rows if r["impl"] == impl}
            xs = [i + k * width for i, wl in enumerate(workloads) if wl in values]
            ax.bar(xs, [values[wl] for wl in workloads if wl in values], width, label=impl)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_ylabel(f"{w}: time / best")
        ax.set_yscale("log")
    axes[1].set_xticks(
        [i + 0.4 - width / 2 for i in range(len(workloads))], workloads, rotation=45, ha="right"
    )
    axes[0].legend(ncol=3, fontsize="small")
    box = info["machine"]
    versions = ", ".join(f"{lib} {version}" for lib, version in box["versions"].items())
    fig.suptitle(f"{box['cpu']}, {box['cores']} cores, {len(box['jax_devices'])} JAX device(s)\n{versions}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: Names accepted by ``--cells``: the three single-layer cells, the 2-layer bidirectional LSTM and "lstmp",
#: the LSTM with ``proj_size = H // 2``, which only ``--cells`` runs (PyTorch is its only peer).
CELL_NAMES = ("elman", "lstm", "gru", "bi-lstm", "lstmp")


def workloads(
    quick: bool, cells: list[str] | None = None, shapes: list[tuple] | None = None
) -> list[Workload]:
    """The configs of the full run (optionally only ``cells`` and ``shapes``), or the ``--quick`` one."""
    if quick:
        return [Workload("lstm", (16, 2, 8, 16))]
    cells = cells or [name for name in CELL_NAMES if name != "lstmp"]
    shapes = list(dict.fromkeys(shapes)) if shapes else None  # (a shape given twice runs once)
    single = [
        Workload("lstm", shape, proj_size=shape[3] // 2) if kind == "lstmp" else Workload(kind, shape)
        for shape in (shapes or CONFIGS)
        for kind in ("elman", "lstm", "gru", "lstmp")
        if kind in cells
    ]
    if "bi-lstm" in cells and (shapes is None or BI_CONFIG in shapes):
        single.append(Workload("lstm", BI_CONFIG, layers=2, bidirectional=True))
    return single


def _cell_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in CELL_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown cells {unknown}; expected a subset of {CELL_NAMES}")
    return names


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,I,H (four positive ints), got {text!r}")
    return shape


def _positive(parse: Callable[[str], Any], zero_allowed: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse(text)``, finite and above 0 (or equal to 0 with ``zero_allowed``)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value >= 0 if zero_allowed else value > 0)):
            expected = "a non-negative number" if zero_allowed else f"a positive {parse.__name__}"
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {expected}")
        return value

    return convert


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmarks, prints the table and writes the result files; returns the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small config, few repeats (a smoke test)")
    parser.add_argument(
        "--repeats",
        type=_positive(int),
        default=None,
        help="timed rounds per workload (default 10; --quick 3)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result folder (default: benchmarks/results for the full run, benchmarks/results/partial for "
        "--quick, --cells or --shape, so that these never replace the full run's files)",
    )
    parser.add_argument(
        "--budget",
        type=_positive(float),
        default=None,
        help="stop a workload's rounds after this many seconds (at least 3 rounds; default: no limit)",
    )
    parser.add_argument(
        "--tol", type=_positive(float, True), default=2e-4, help="max relative error vs jaxrnn to be timed"
    )
    parser.add_argument(
        "--cells", type=_cell_list, default=None, help=f"comma-separated subset of {','.join(CELL_NAMES)}"
    )
    parser.add_argument(
        "--shape",
        type=_shape,
        action="append",
        dest="shapes",
        help="T,B,I,H of a config to run (repeatable; default: all configs); the 2-layer bi-LSTM runs only "
        f"at its own config, {','.join(map(str, BI_CONFIG))}",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument(
        "--host-devices",
        type=_positive(int),
        default=1,
        help="CPU devices of this process (jax_num_cpu_devices; default 1): with more, jaxrnn auto splits "
        "small recurrences across them and 'jaxrnn auto (1 device)' is timed beside it",
    )
    args = parser.parse_args(argv)
    if args.quick and (args.cells or args.shapes):
        parser.error("--quick runs its one small config: leave out --cells and --shape")
    if args.host_devices > 1:
        try:
            jax.config.update("jax_num_cpu_devices", args.host_devices)
        except RuntimeError:
            parser.error("--host-devices: JAX's CPU backend was initialised before it could apply")
    repeats = args.repeats if args.repeats is not None else 3 if args.quick else 10
    if "lstmp" in (args.cells or []) and any(shape[3] < 2 for shape in args.shapes or []):
        parser.error("--cells lstmp: the projection (proj_size = H // 2) needs H >= 2")
    cases = workloads(args.quick, args.cells, args.shapes)
    if not cases:
        parser.error("--cells and --shape select no workload")
    if args.out is None:
        partial = args.quick or args.cells or args.shapes
        args.out = Path(__file__).parent / "results" / ("partial" if partial else "")
    try:  # (before the timing: an unwritable folder would otherwise fail after minutes of it)
        args.out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as error:
        parser.error(f"--out: cannot write into {str(args.out)!r} ({error})")
    info = {
        "machine": machine(),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "repeats": repeats,
        "budget_s": args.budget,
        "quick": args.quick,
    }
    with float32_matmuls() as precision:
        info["matmul_precision"] = precision
        return _run(args, cases, info)


def _run(args: argparse.Namespace, cases: list[Workload], info: dict[str, Any]) -> dict[str, Any]:
    """The benchmarks of ``cases`` with ``main``'s options: the table, the result files and the document."""
    repeats = info["repeats"]
    info["peak"] = matmul_peak(512 if args.quick else 2048)
    peak = max(info["peak"]["xla_gflops"], info["peak"]["numpy_gflops"])
    try:
        from tqdm import tqdm

        progress = tqdm(total=len(cases) * repeats, desc="benchmarks", file=sys.stderr)
    except ImportError:
        progress = type("NoProgress", (), {"update": lambda self, n: None, "close": lambda self: None})()
    rows, floors, notes = [], [], []
    for wl in cases:
        run = run_workload(wl, repeats, args.budget, args.tol, progress)
        workload_rows, floor = summarize(run, peak)
        rows += workload_rows
        floors.append(floor)
        notes += [f"{wl.label}: {n}" for n in run["notes"]]
    progress.close()
    memory = [] if args.no_memory else memory_table([100] if args.quick else [1000, 10_000, 100_000])
    document = {**info, "rows": rows, "floors": floors, "memory": memory, "notes": notes}
    (args.out / "bench.json").write_text(json.dumps(document, indent=1))
    text = markdown(rows, floors, info, list(dict.fromkeys(notes)), memory)
    (args.out / "bench.md").write_text(text)
    try:
        plot(rows, info, args.out / "bench.png")
    except ImportError:
        print("matplotlib not installed: no bench.png", file=sys.stderr)
    print(text)
    return document


if __name__ == "__main__":
    main()
