"""The wheel: every file the package reads at run time is in it, nothing else is, and an
installed copy (no clone, no ../shared beside it) runs `tokenloom doctor` and `tokenloom demo`.

The wheel is built from a copy of pyproject.toml, README.md and src/ in a temporary folder, so
that neither a stale build/ folder of the clone nor this build leaves anything behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tokenloom"
# What a build leaves in a source tree and a wheel must never carry.
STRAY = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info)(/|$)|\.(pyc|pyo|so|o|dll|dylib)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def source_files() -> set[str]:
    """Every file of the package as its path in a wheel (tokenloom/...), build artefacts left out."""
    names = {"tokenloom/" + p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.is_file()}
    return {name for name in names if not STRAY.search(name)}


def build_wheel(folder: Path) -> Path:
    tree = folder / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(folder / "dist")], cwd=tree, env=clean_env(), check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (folder / "dist").glob("tokenloom-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_the_wheel_holds_every_file_of_the_package(wheel_names):
    missing = source_files() - wheel_names
    assert not missing, f"in src/tokenloom but not in the wheel (add them to package-data): {sorted(missing)}"


def test_every_quoted_include_of_the_c_kernels_is_in_the_wheel_beside_its_source(wheel_names):
    sources = sorted(PACKAGE.rglob("*.[ch]"))
    assert any(p.name == "exp2.h" for p in sources)
    for path in sources:
        folder = "tokenloom/" + path.parent.relative_to(PACKAGE).as_posix()
        for header in INCLUDE.findall(path.read_text()):
            assert f"{folder}/{header}" in wheel_names, f"{path.name} includes {header!r}, which the wheel lacks"


def test_every_package_data_glob_matches_a_file():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tokenloom"]
    empty = [pattern for pattern in globs if not any(p.is_file() for p in PACKAGE.glob(pattern))]
    assert not empty, f"package-data globs that match no file under src/tokenloom: {empty}"


def test_the_wheel_holds_nothing_but_the_package_and_its_metadata(wheel_names):
    stray = sorted(n for n in wheel_names if STRAY.search(n) or n.startswith(("tests/", "benchmarks/", "docs/")))
    assert not stray, f"build artefacts or files from outside the package in the wheel: {stray}"
    metadata = {n for n in wheel_names if n.split("/", 1)[0].endswith(".dist-info")}
    assert len({n.split("/", 1)[0] for n in metadata}) == 1
    package = wheel_names - metadata
    extra, missing = sorted(package - source_files()), sorted(source_files() - package)
    assert not extra and not missing, f"in the wheel only: {extra}; in src/tokenloom only: {missing}"


def clean_env() -> dict[str, str]:
    """This process's environment without what would point a child at the clone or this venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "TOKENLOOM_NATIVE_KERNELS", "TOKENLOOM_CPU_KERNEL")
    return {k: v for k, v in os.environ.items() if k not in drop}


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel, borrowing this environment's dependencies.

    A path line in a .pth file puts this site-packages on sys.path without running its own
    .pth files, so an editable tokenloom there (a path line to a clone's src/) stays out.
    """
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300, env=clean_env(), cwd=folder)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "borrowed-dependencies.pth").write_text("".join(f"{p}\n" for p in borrowed))
    return venv


def installed_files(package: Path) -> set[str]:
    return {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}


@pytest.mark.slow  # a venv, an install, two CLI runs that build the C kernels afresh, the docs examples
def test_the_installed_wheel_runs_doctor_demo_and_the_docs_examples(wheel, tmp_path):
    venv = fresh_venv(tmp_path, wheel)
    work, cache = tmp_path / "elsewhere", tmp_path / "cache"
    work.mkdir()
    env = clean_env()
    env.update(XDG_CACHE_HOME=str(cache), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200", PATH=f"{venv / 'bin'}:{env['PATH']}")

    def run(*args: str) -> str:
        done = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = run(str(venv / "bin" / "python"), "-c", "import tokenloom; print(tokenloom.__file__)").strip()
    package = Path(where).parent
    assert package.is_relative_to(venv), f"tokenloom was imported from {where}, not from the fresh venv"
    before = installed_files(package)

    doctor = run(str(venv / "bin" / "tokenloom"), "doctor")
    assert re.search(r"^tokenloom\s+0\.", doctor, re.MULTILINE) and "C compiler" in doctor, doctor
    from tokenloom.model.native import c_compiler

    if c_compiler() is not None:  # the kernels were built from the installed sources into the cache
        assert re.search(r"GGUF block kernels\s+\w+ \(built\)", doctor), doctor
        assert list(cache.glob("tokenloom/*.so")), f"no kernel library in {cache}"
    demo = run(str(venv / "bin" / "tokenloom"), "demo", "--max-tokens", "4", "--out", str(work / "demo.png"))
    assert "greedy" in demo and "top-p" in demo and "P(l=10)" in demo, demo
    assert (work / "demo.png").stat().st_size > 1000
    assert installed_files(package) == before, "running tokenloom wrote into its installed package folder"
    # Every example of the docs, run by the installed package: the docs' own tests, in a child
    # that imports tokenloom from the fresh venv before pytest can find anything else.
    check = (f"import sys, tokenloom, pytest; assert tokenloom.__file__.startswith({str(venv)!r}), tokenloom.__file__; "
             f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--rootdir', {str(ROOT)!r}, "
             f"{str(ROOT / 'tests' / 'docs' / 'test_examples.py')!r}]))")
    examples = run(str(venv / "bin" / "python"), "-c", check)
    assert re.search(r"\d+ passed", examples) and "failed" not in examples, examples
