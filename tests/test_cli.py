"""The command line: help for every command, `new`, `plan`, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.cli import COMMANDS_HELP, _parser, main


def unmake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "generator.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin",
                               "HOME": str(Path.home())})


def test_every_command_has_help_text() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, choice in sub.choices.items():  # type: ignore[attr-defined]
        assert COMMANDS_HELP[name]
        assert choice.description == COMMANDS_HELP[name]
        for action in choice._actions:
            assert action.help, f"unmake {name} {action.dest} has no help"


def test_new_makes_a_zine_that_plans_without_loading_a_model(tmp_path: Path) -> None:
    target = tmp_path / "zine"
    assert main(["new", str(target)]) == 0
    assert (target / "mkdocs.yml").is_file()
    assert (target / ".gitignore").read_text().split() == ["site/", ".unmake/"]
    probe = ("import sys; from generator.cli import main; rc = main(['plan', '-v']); "
             "print('torch' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=target, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "unmake plan: 4 jobs: 0 cached, 4 to run" in done.stdout
    assert "generate.image [model default]: 0 cached, 4 to run" in done.stdout
    assert ("investigations/index.md:6: generate.image 'a photo of a teacher' seed 0, 4 steps, "
            "64×64") in done.stdout
    assert done.stdout.strip().endswith("False")  # torch was never imported


def test_new_refuses_a_folder_with_work_in_it(tmp_path: Path) -> None:
    (tmp_path / "essay.md").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        main(["new", str(tmp_path)])
    assert (tmp_path / "essay.md").read_text() == "mine"


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    done = unmake("build", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "unmake: mkdocs.yml not found (run in the zine's folder or " \
        "pass -f path/to/mkdocs.yml)"


def test_frozen_and_force_contradict(tmp_path: Path) -> None:
    main(["new", str(tmp_path / "z")])
    done = unmake("build", "--frozen", "--force", cwd=tmp_path / "z")
    assert done.returncode == 1
    assert "--frozen and --force contradict each other" in done.stderr


def test_bad_model_override_is_one_line(tmp_path: Path) -> None:
    main(["new", str(tmp_path / "z")])
    done = unmake("plan", "--model", "default", cwd=tmp_path / "z")
    assert done.returncode == 1
    assert done.stderr.strip() == "unmake: --model takes ALIAS=REF, got 'default'"
