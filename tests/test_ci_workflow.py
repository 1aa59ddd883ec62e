"""The CI workflow users copy: parses, and runs the host tests, QEMU HIL and Renode robot."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job: dict) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def test_workflow_parses_with_three_jobs() -> None:
    wf = _load()
    # YAML 1.1 reads the key `on` as True
    assert "push" in (wf.get("on") or wf.get(True))
    assert set(wf["jobs"]) == {"test", "hil-qemu", "hil-renode"}
    for name, job in wf["jobs"].items():
        assert job["runs-on"].startswith("ubuntu"), name
        assert job["steps"][0]["uses"].startswith("actions/checkout@"), name
        assert all(("run" in s) != ("uses" in s) for s in job["steps"]), name


def test_host_and_qemu_jobs() -> None:
    jobs = _load()["jobs"]
    assert "make test" in _runs(jobs["test"])
    assert any("pytest" in r and "hil_tests --env qemu-m4 --env qemu-m7" in r
               for r in _runs(jobs["hil-qemu"]))


def test_renode_job_builds_then_runs_the_robot_test() -> None:
    steps = _load()["jobs"]["hil-renode"]["steps"]
    build = next(i for i, s in enumerate(steps) if "pio run -e renode-f407" in s.get("run", ""))
    action = next(i for i, s in enumerate(steps)
                  if s.get("uses", "").startswith("antmicro/renode-test-action@"))
    assert build < action
    act = steps[action]
    assert re.fullmatch(r"antmicro/renode-test-action@[0-9a-f]{40}", act["uses"])  # pinned
    assert act["with"]["renode-revision"].startswith("v")  # a release, not master
    robot = act["with"]["tests-to-run"]
    assert robot == "firmware/renode/hello.robot" and (ROOT / robot).is_file()
    assert ".pio/build/renode-f407/program.elf" in act["with"]["renode-arguments"]


def test_make_targets_the_workflow_uses_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^bootstrap:", makefile, re.M)
    assert "[env:renode-f407]" in (ROOT / "platformio.ini").read_text()
