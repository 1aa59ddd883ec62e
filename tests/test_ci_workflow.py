"""The CI template users copy, and the Makefile's apt step it relies on.

GitHub Actions cannot run here, so this checks what can be checked: the workflow runs `make`
targets that exist inside the Debian 12 image the Makefile's package list is written for, every
package it names exists in Debian 12, and the apt step behaves on archives that lack a package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
IMAGE = "debian:12"


def _load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _make_var(name: str) -> list[str]:
    """A variable of the Makefile, as make itself expands it."""
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "--eval",
                          f"print-var: ; @echo $({name})", "print-var"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def _prerequisite_packages(run: str) -> list[str]:
    """Packages of the workflow's `apt-get install` step (options dropped)."""
    words = run.split("apt-get install", 1)[1].split()
    return [w for w in words if not w.startswith("-")]


def test_every_job_runs_make_in_the_debian_image() -> None:
    wf = _load()
    # YAML 1.1 reads the key `on` as True
    assert "push" in (wf.get("on") or wf.get(True))
    assert wf["jobs"]
    targets = _make_targets()
    for name, job in wf["jobs"].items():
        assert job["container"] == IMAGE, name
        steps = job["steps"]
        assert all(("run" in s) != ("uses" in s) for s in steps), name
        # Python is Debian's, through the Makefile's venv: no runner toolchains
        assert not any("setup-python" in s.get("uses", "") for s in steps), name
        checkout = next(i for i, s in enumerate(steps)
                        if s.get("uses", "").startswith("actions/checkout@"))
        runs = [(i, s["run"].strip()) for i, s in enumerate(steps) if "run" in s]
        prereq = [(i, r) for i, r in runs if "apt-get install" in r]
        assert len(prereq) == 1 and prereq[0][0] < checkout, name  # git before the clone
        for _, run in runs:
            if run == prereq[0][1]:
                continue
            words = run.split()
            assert words[0] == "make" and len(words) > 1, f"{name}: {run!r} is not a make call"
            unknown = [t for t in words[1:] if "=" not in t and t not in targets]
            assert not unknown, f"{name}: make targets {unknown} not in the Makefile"
    assert any(r.strip() == "make test" for j in wf["jobs"].values()
               for r in (s.get("run", "") for s in j["steps"])), "the README's test command"


def test_workflow_installs_only_what_make_cannot() -> None:
    """The package list is the Makefile's; the workflow adds only make itself and git."""
    makefile = set(_make_var("APT_PKGS")) | set(_make_var("APT_OPTIONAL"))
    for name, job in _load()["jobs"].items():
        run = next(s["run"] for s in job["steps"] if "apt-get install" in s.get("run", ""))
        pkgs = _prerequisite_packages(run)
        assert "make" in pkgs and "git" in pkgs, name
        assert set(pkgs) & makefile <= {"make"}, f"{name}: installs the Makefile's packages"


def test_every_package_exists_in_debian_12() -> None:
    osr = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    if 'VERSION_ID="12"' not in osr or "ID=debian" not in osr:
        pytest.skip("not a Debian 12 host: cannot ask its archive")
    if not list(Path("/var/lib/apt/lists").glob("*_Packages*")):
        pytest.skip("no apt package lists on this host (apt-get update has not run)")
    prereq = [p for job in _load()["jobs"].values() for s in job["steps"]
              if "apt-get install" in s.get("run", "") for p in _prerequisite_packages(s["run"])]
    names = _make_var("APT_PKGS") + _make_var("APT_OPTIONAL") + prereq
    out = subprocess.run(["apt-cache", "policy", *names], capture_output=True, text=True).stdout
    # one section per known package: "NAME:" at column 0, then its Candidate line
    found = dict(re.findall(r"^([\w.+-]+):\n(?:  .*\n)*?  Candidate: (\S+)", out, re.M))
    for p in names:
        assert found.get(p, "(none)") != "(none)", f"{p} is not in Debian 12's archive"


# ----------------------------------------------------------- the apt step against fake archives

FAKES = {
    # dpkg-query -W -f=... PKG: installed when PKG is in $FAKE_INSTALLED
    "dpkg-query": 'for p in $FAKE_INSTALLED; do [ "$p" = "$3" ] && '
                  '{ printf "install ok installed"; exit 0; }; done; exit 1',
    # apt-cache policy PKG: a candidate when PKG is in $FAKE_ARCHIVE, nothing otherwise (as apt)
    "apt-cache": 'for p in $FAKE_ARCHIVE; do [ "$p" = "$2" ] && '
                 '{ echo "$2:"; echo "  Candidate: 1.0"; }; done; exit 0',
    # apt-get: logged; install fails like apt when a package is unknown
    "apt-get": 'echo "apt-get $*" >> "$FAKE_LOG"; [ "$1" = update ] && exit 0; '
               'for a in "$@"; do case "$a" in -*|install) continue;; esac; '
               'case " $FAKE_ARCHIVE " in *" $a "*) ;; '
               '*) echo "E: Unable to locate package $a" >&2; exit 100;; esac; done',
    "sudo": 'exec "$@"',
}


def _apt_step(tmp: Path, installed: list[str], archive: list[str], lists: bool):
    """Run `make apt` with fake dpkg/apt tools; returns (process, apt-get calls)."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    fake = tmp / "bin"
    fake.mkdir()
    for name, body in FAKES.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    apt_lists = tmp / "lists"
    apt_lists.mkdir()
    if lists:
        (apt_lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").touch()
    log = tmp / "apt.log"
    log.touch()
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", FAKE_LOG=str(log),
               FAKE_INSTALLED=" ".join(installed), FAKE_ARCHIVE=" ".join(archive))
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "apt", f"APT_LISTS={apt_lists}"],
                          capture_output=True, text=True, env=env, timeout=60)
    return proc, log.read_text().splitlines()


def test_apt_step_skips_an_optional_package_the_archive_lacks(tmp_path) -> None:
    required, optional = _make_var("APT_PKGS"), _make_var("APT_OPTIONAL")
    # an archive without the optional runtime (Ubuntu 22.04 ships it in another package)
    proc, calls = _apt_step(tmp_path, installed=[], archive=required, lists=True)
    assert proc.returncode == 0, proc.stderr
    for p in optional:
        assert f"note: optional package {p} is not in this distribution's archive" in proc.stdout
    assert calls[0] == "apt-get update -q" and len(calls) == 2
    assert calls[1].split()[-len(required):] == required


def test_apt_step_installs_the_optional_package_where_it_exists(tmp_path) -> None:
    required, optional = _make_var("APT_PKGS"), _make_var("APT_OPTIONAL")
    # a fresh Debian 12 image: no package lists yet, so it updates once before asking
    proc, calls = _apt_step(tmp_path, installed=[], archive=required + optional, lists=False)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stdout
    assert calls == ["apt-get update -q",
                     "apt-get install -y -q " + " ".join(required + optional)]


def test_apt_step_the_second_time_needs_no_root(tmp_path) -> None:
    required = _make_var("APT_PKGS")
    proc, calls = _apt_step(tmp_path, installed=required, archive=required, lists=True)
    assert proc.returncode == 0, proc.stderr
    assert calls == [] and "note: optional package" in proc.stdout


def test_apt_step_fails_on_an_unknown_required_package(tmp_path) -> None:
    required = _make_var("APT_PKGS")
    proc, _ = _apt_step(tmp_path, installed=[], archive=required[1:], lists=True)
    assert proc.returncode != 0 and f"Unable to locate package {required[0]}" in proc.stderr
