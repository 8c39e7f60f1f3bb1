"""A wheel of pamcorr works on its own: the sample week, templates and SQL ship inside it.

The wheel is built from a copy of the source tree (pip, build isolation) and installed by pip,
without dependencies, into a fresh venv that borrows this venv's site-packages for duckdb, pandas, ...
through a .pth line (which does not run this venv's editable-install hook, so `correlate` can
only come from the wheel; the test checks that it does). Every command then runs from an empty
folder, as after `pipx install pamcorr`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("correlate", "connectors", "reports")
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "*.duckdb", "*.wal",
                                "__pycache__", ".pytest_cache", "dist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp / "dist"), f"{src}{os.sep}"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0 and "setuptools" in res.stderr and "No matching distribution" in res.stderr:
        pytest.skip("cannot build a wheel: setuptools is not reachable from the package index")
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("pamcorr-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAMCORR_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(venv / "bin" / "pamcorr"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


def test_wheel_holds_every_data_file_of_the_packages(wheel):
    """Every tracked non-Python file under the packages (SQL, templates, rules) is in the wheel,
    and so is the sample week."""
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert wanted, "no data files found under the packages"
    assert [w for w in wanted if w not in names] == []
    for name in ("activity.jsonl", "approvals.csv", "tickets.csv", "ticket_history.csv"):
        assert f"correlate/sample_data/{name}" in names


def test_installed_wheel_runs_demo_report_scope_export_from_an_empty_folder(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import correlate; print(correlate.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed)), f"correlate imported from {where}, not the wheel"
    empty = tmp_path / "empty"
    empty.mkdir()
    demo = _run(installed, empty, "demo")
    assert demo.returncode == 0, demo.stderr[-2000:]
    report = Path(demo.stdout.strip().splitlines()[-1])
    assert report.parent == empty.resolve() and "pamcorr gap report" in report.read_text()
    db = ["--db", "pamcorr-demo.duckdb"]
    gaps = _run(installed, empty, "report", "gaps", "-o", "gaps.html", *db)
    assert gaps.returncode == 0, gaps.stderr[-2000:]
    assert "pamcorr gap report" in (empty / "gaps.html").read_text()
    scope = _run(installed, empty, "scope", "svc-deploy", "-o", "scope.html", *db)
    assert scope.returncode == 0, scope.stderr[-2000:]
    assert "svc-deploy" in (empty / "scope.html").read_text()
    export = _run(installed, empty, "export", "-o", "bundle", *db)
    assert export.returncode == 0, export.stderr[-2000:]
    verify = _run(installed, empty, "verify", "bundle")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (empty / "bundle" / "manifest.json").is_file()
