"""Packaging: ``kernels/`` ships as ``jaxrnn.kernels`` (never as a top-level ``kernels``), both in the
editable install the tests run in and in a regular wheel install."""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import jaxrnn.kernels

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_maps_the_kernels_subpackage(tmp_path):
    assert Path(jaxrnn.kernels.__file__).resolve() == ROOT / "kernels" / "__init__.py"
    probe = "import importlib.util, jaxrnn.kernels; print(importlib.util.find_spec('kernels'))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def test_wheel_ships_kernels_inside_jaxrnn(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("jaxrnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("jaxrnn", "jaxrnn/interop", "jaxrnn/kernels", "jaxrnn/tasks", "jaxrnn/train"):
        assert f"{package}/__init__.py" in names
    assert not any(name.startswith("kernels/") for name in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    probe = "import jaxrnn.kernels; print(jaxrnn.kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()).resolve() == (target / "jaxrnn" / "kernels" / "__init__.py").resolve()
    assert importlib.util.find_spec("jaxrnn.kernels") is not None
