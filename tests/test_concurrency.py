"""Builds that share a store at the same time, and builds killed with SIGKILL at random moments.

Builds run as processes of their own (each its own pid, locks and store writes). To keep rounds
of two builds and twenty kills within seconds, the builds are forked from a driver process that
has imported torch and diffusers once (5 s a process otherwise); each fork then runs
`unmake build` exactly as the command line does (`generator.cli.main`).

By hand: UNMAKE_TEST_SPAWN=exec starts every build as a fresh `python -m generator.cli build`;
UNMAKE_TEST_CONCURRENT_RUNS=N races N rounds of each layout (default: 10 of one site, 3 of two);
UNMAKE_TEST_ZINE=example races two builds of the example zine (investigations/, with its dataset
and model made) instead of the small test zine (minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Zine, example_zine, generate, make_zine, sha256

from generator.store import Store

REPO = Path(__file__).resolve().parents[1]
# rounds of two builds: ten of one site built twice; fewer of two sites (the same code path)
RUNS = {"one site": 10, "two sites": 3}
if "UNMAKE_TEST_CONCURRENT_RUNS" in os.environ:
    RUNS = dict.fromkeys(RUNS, int(os.environ["UNMAKE_TEST_CONCURRENT_RUNS"]))
SPAWN = os.environ.get("UNMAKE_TEST_SPAWN", "fork")
ZINE = os.environ.get("UNMAKE_TEST_ZINE", "small")
GAP = 0.5  # s between the two builds' starts

# Starts builds (forked from this process, or as fresh processes), kills them as told, and says
# how each ended. Input and output are JSON: {"spawn", "runs": [[build, ...], ...]} ->
# [[{"rc", "log", "records"}, ...], ...], where a build is {"cwd", "log", "env", "after",
# "kill"}: "after", seconds after its run's start to start it; "kill", null, or {"delay": s}
# (SIGKILL that long after its start), or {"after_record": s} (that long after the store holds
# one record more than at its start); "records", how many the store held once it ended.
DRIVER = r'''
import json, os, signal, subprocess, sys, time, traceback
from pathlib import Path

spec = json.loads(sys.stdin.read())
if spec["spawn"] == "fork":
    import diffusers, torch  # the slow imports, once, before any fork (no torch op runs here)
    from diffusers import AutoPipelineForText2Image
    import generator.backends.diffusion, generator.cli, generator.plugin, mkdocs.commands.build


def start(build):
    with open(build["log"], "wb") as out:
        if spec["spawn"] == "exec":
            return subprocess.Popen([sys.executable, "-m", "generator.cli", "build"],
                                    cwd=build["cwd"], stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **build["env"]}).pid
        pid = os.fork()
        if pid:
            return pid
        rc = 1
        try:
            os.chdir(build["cwd"])
            os.environ.update(build["env"])
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            rc = generator.cli.main(["build"])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)


def records(cwd):
    return len(list(Path(cwd, ".unmake", "records").glob("*/*.json")))


results = []
for run in spec["runs"]:
    t0 = time.monotonic()
    pids = []
    for build in run:
        time.sleep(max(0.0, t0 + build["after"] - time.monotonic()))
        before = records(build["cwd"])
        pids.append(start(build))
        kill = build.get("kill")
        if kill and "delay" in kill:
            time.sleep(kill["delay"])
        elif kill:
            while records(build["cwd"]) <= before and not os.waitpid(pids[-1], os.WNOHANG)[0]:
                time.sleep(0.005)
            time.sleep(kill["after_record"])
        if kill:
            try:
                os.kill(pids[-1], signal.SIGKILL)
            except ProcessLookupError:
                pass
    ended = []
    for pid, build in zip(pids, run):
        try:
            _, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped above: it had ended before its kill
            rc = 0
        ended.append({"rc": rc, "log": Path(build["log"]).read_text("utf-8", "replace"),
                      "records": records(build["cwd"])})
    results.append(ended)
print(json.dumps(results))
'''


def drive(runs: list[list[dict[str, Any]]], env: dict[str, str],
          timeout: float = 900) -> list[list[dict[str, Any]]]:
    """Run the driver over `runs`; each build: {"cwd", "log", "env"?, "after"?, "kill"?}."""
    spec = {"spawn": SPAWN, "runs": [[{"env": {}, "after": 0.0, **b} for b in run]
                                     for run in runs]}
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(spec), env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def ran(log: str) -> int:
    """How many jobs a build ran itself, from its last log line."""
    found = re.findall(r"unmake: ran (\d+) job\(s\)", log)
    if found:
        return int(found[-1])
    assert "unmake: nothing to run" in log, log
    return 0


# -- the zines ---------------------------------------------------------------------------------
# 32 images, 32 px, 2 steps, in two figures on two pages: enough that the first build is still
# making them when the second has planned (about 1 s in; the first needs about 1.5 s)
SMALL = {
    "index.md": "# One\n\n" + generate(id="houses", prompt="a {small|large} house at "
                                       "{dawn|night}", seeds=[1, 2, 3, 4]) + "\n",
    "more.md": "# Two\n\n" + generate(id="boats", prompt="a {red|blue} boat on a {lake|sea}",
                                      seeds=[3, 4, 5, 6]) + "\n",
}


def small_zines(root: Path, env: dict[str, str], layout: str) -> list[Zine]:
    """One site built twice, or two sites (pages overlapping by one figure) on one store."""
    first = make_zine(root / "a", SMALL, env)
    if layout == "one site":
        return [first, first]
    other = {"index.md": SMALL["more.md"], "third.md": "# Three\n\n" + generate(
        id="trees", prompt="a {pine|palm} tree", seeds=[5, 6]) + "\n"}
    second = make_zine(root / "b", other, env, plugin={"store": "../a/.unmake"})
    return [first, second]


def example_zines(root: Path, env: dict[str, str], layout: str) -> list[Zine]:
    """The example zine in the repository, with its sample dataset and model made."""
    first = root / "a"
    zine = example_zine(first, env)
    if layout == "one site":
        return [zine, zine]
    second = root / "b"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".unmake", "site"))
    config = second / "mkdocs.yml"
    config.write_text(config.read_text("utf-8").replace("store: .unmake",
                                                        "store: ../a/.unmake"), "utf-8")
    return [zine, Zine(second, env)]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one site", "two sites"])
def test_two_builds_at_once_share_the_work(built: Zine, tmp_path: Path, layout: str) -> None:
    # (`built` has written the tiny model, so both builds race over images, not over that)
    make = example_zines if ZINE == "example" else small_zines
    runs = [make(tmp_path / f"run{i}", built.env, layout) for i in range(RUNS[layout])]
    results = drive([[{"cwd": str(z.root), "log": str(z.root / f"build{n}.log"), "after": n * GAP}
                      for n, z in enumerate(zines)] for zines in runs], built.env,
                    timeout=900 * (len(runs) if ZINE == "example" else 1))
    waited = 0
    for i, (zines, ended) in enumerate(zip(runs, results, strict=True)):
        for build in ended:
            assert build["rc"] == 0, f"run {i}:\n{build['log']}"
            assert "Traceback" not in build["log"], build["log"]
        records = zines[0].records()
        if ZINE == "small":
            assert len(records) == {"one site": 32, "two sites": 36}[layout]
        # every job was run by exactly one of the two builds: none twice, none lost
        assert sum(ran(b["log"]) for b in ended) == len(records), [b["log"] for b in ended]
        assert Store(zines[0].store).verify() == []
        assert not list((zines[0].store / "locks").glob("*.lock"))
        for zine in dict.fromkeys(zines):
            assert (zine.site / "index.html").is_file()
        waited += sum("made meanwhile by another build" in b["log"] for b in ended)
    for zine in dict.fromkeys(runs[0]):  # nothing is missing
        plan = zine.unmake_noting_torch("plan")
        assert plan.rc == 0 and re.search(r"(\d+) jobs: \1 cached, 0 to run", plan.stdout), (
            plan.output)
    verify = runs[0][0].unmake("verify")
    assert verify.rc == 0 and ", 0 problem(s)" in verify.output, verify.output
    # the builds did overlap: in some run, a build found jobs the other was running
    assert waited, "the two builds never overlapped; the test tested nothing"


# -- kill -9 -----------------------------------------------------------------------------------
KILLS = 20
KILL_SEED = 7


@pytest.mark.slow
def test_twenty_kills_then_one_build_is_complete_and_replays_exactly(
        built: Zine, zine) -> None:
    import random

    # 128 images (32 px, 2 steps, batches of 4): more than twenty kills let through
    z = zine({"index.md": "# Kills\n\n" + generate(
        prompt="a {red|green|blue|grey} {cat|dog|owl|eel} {asleep|awake}", seeds=list(range(4)))})
    rng = random.Random(KILL_SEED)
    moments: list[dict[str, Any]] = []
    for i in range(KILLS):
        how = ("hook", "startup", "generating")[i % 3] if i < 18 else "hook"
        if how == "hook":  # right after the n-th stored result (execute.py's test hook)
            moments.append({"env": {"UNMAKE_TEST_KILL_AFTER": str(rng.randint(1, 5))}})
        elif how == "startup":  # while mkdocs loads, plans, or the model loads
            moments.append({"kill": {"delay": rng.uniform(0.02, 0.6)}})
        else:  # while images are made and written
            moments.append({"kill": {"after_record": rng.uniform(0.0, 0.08)}})
    rng.shuffle(moments)
    results = drive([[{"cwd": str(z.root), "log": str(z.root / f"kill{i}.log"), **moment}]
                     for i, moment in enumerate(moments)], z.env)
    codes = [ended[0]["rc"] for ended in results]
    assert codes == [-signal.SIGKILL] * KILLS, [e[0]["log"][-2000:] for e in results]
    stored = [ended[0]["records"] for ended in results]
    print("records stored after each kill:", stored)
    done = len(z.records())
    assert 0 < done < 128, f"{done} of 128 stored before the last build: nothing left to test"
    for blob in (z.store / "blobs").glob("*/*.png"):  # whatever was written is whole
        assert sha256(blob) == blob.stem

    run = z.unmake("build")
    assert run.rc == 0, run.output
    assert f"128 jobs: {done} cached, {128 - done} to run" in run.output
    assert f"ran {128 - done} job(s)" in run.output
    assert len(z.records()) == 128
    assert not list((z.store / "locks").glob("*.lock"))  # stale locks of the killed: gone
    verify = z.unmake("verify", "--replay", "0.1")
    assert verify.rc == 0, verify.output
    assert "replayed 13 of 128 stored image(s) (10%, seed 0): 13 bit-exact" in verify.output
    assert "128 records, 0 problem(s)" in verify.output
