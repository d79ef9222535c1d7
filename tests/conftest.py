"""Shared fixtures for end-to-end tests: a throwaway zine, and `unmake` run as a subprocess.

Every build here is real: diffusers with the built-in tiny model on the CPU, real mkdocs. The tiny
model is written once per test session into a shared cache folder (or the one UNMAKE_CACHE names).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

PY = sys.executable
# small and fast: every test image is 32x32 with two steps unless a test says otherwise
TINY = {"steps": 2, "size": 32}


@dataclass
class Run:
    """What one `unmake` (or python) subprocess did."""

    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(prefix)]


def generate(**body: Any) -> str:
    """A ```generate fence with `body` as its YAML (tiny defaults filled in)."""
    text = yaml.safe_dump({**TINY, **body}, sort_keys=False, allow_unicode=True, width=1000)
    return f"```generate\n{text}```\n"


class Zine:
    """A zine project in a temp folder: mkdocs.yml, docs/*.md, the store in .unmake/."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    # -- files ---------------------------------------------------------------------------------
    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def store(self) -> Path:
        return self.root / ".unmake"

    def write(self, page: str, text: str) -> Path:
        path = self.docs / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        return path

    def read(self, page: str) -> str:
        return (self.docs / page).read_text("utf-8")

    def line_of(self, page: str, needle: str, nth: int = 0) -> int:
        """1-based line of the nth line of a page that contains `needle`."""
        hits = [i + 1 for i, line in enumerate(self.read(page).splitlines()) if needle in line]
        return hits[nth]

    def html_path(self, page: str) -> Path:
        stem = page.removesuffix(".md")
        return self.site / ("index.html" if stem == "index" else f"{stem}/index.html")

    def html(self, page: str = "index.md") -> str:
        return self.html_path(page).read_text("utf-8")

    def site_file(self, page: str, url: str) -> Path:
        """The file a relative URL in a built page points at."""
        return (self.html_path(page).parent / url).resolve()

    def copy(self, dest: Path) -> Zine:
        """An independent copy (store included, mtimes kept) to change without side effects."""
        shutil.copytree(self.root, dest, symlinks=True)
        return Zine(dest, dict(self.env))

    # -- the store -----------------------------------------------------------------------------
    def records(self) -> dict[str, Path]:
        """key -> record file, for every record in the store."""
        return {p.stem: p for p in sorted((self.store / "records").glob("*/*.json"))}

    def stamps(self) -> dict[str, int]:
        """key -> record file mtime (ns): a rewritten record gets a new one."""
        return {key: path.stat().st_mtime_ns for key, path in self.records().items()}

    def record(self, key: str) -> dict[str, Any]:
        return json.loads(self.records()[key].read_text("utf-8"))

    def blob(self, record: dict[str, Any], name: str = "image") -> Path:
        art = record["files"][name]
        return self.store / "blobs" / art["sha256"][:2] / f"{art['sha256']}.{art['ext']}"

    # -- running -------------------------------------------------------------------------------
    def unmake(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        """`unmake ARGS` in the zine's folder."""
        return self.python("-m", "generator.cli", *args, env=env, timeout=timeout)

    def python(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        """`python ARGS` in the zine's folder, with the test environment."""
        proc = subprocess.run([PY, *args], cwd=self.root, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`unmake ARGS` started in the background (output discarded)."""
        return subprocess.Popen([PY, "-m", "generator.cli", *args], cwd=self.root, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

    def unmake_noting_torch(self, *args: str, env: dict[str, str] | None = None) -> Run:
        """Run `generator.cli.main(args)` in a fresh python and report whether torch got imported.

        The last line of stdout is `TORCH True|False`.
        """
        code = ("import sys\nfrom generator.cli import main\nrc = main(sys.argv[1:])\n"
                "print('TORCH', 'torch' in sys.modules)\nsys.exit(rc)\n")
        return self.python("-c", code, *args, env=env)


def _made_by_scripts(folder: str, names: list[str]) -> list[str]:
    """What example_zine does not copy: caches, and the datasets and model the scripts make
    (models/organism is committed, so it is copied)."""
    made = {"data": ("sample", "organism"), "models": ("sample-sd", ".organism-train")}
    return [n for n in names
            if n == "__pycache__" or n in made.get(Path(folder).name, ())]


def example_zine(root: Path, env: dict[str, str]) -> Zine:
    """A copy of the repository's example zine in `root`, readied as README command 1 readies
    it: the sample dataset and model made by their scripts, the dataset indexed."""
    repo = Path(__file__).resolve().parents[1]
    root.mkdir(parents=True)
    shutil.copy(repo / "mkdocs.yml", root)
    for folder in ("investigations", "templates", "scripts", "models", "data"):
        if (repo / folder).is_dir():  # what the scripts make is made again, not copied
            shutil.copytree(repo / folder, root / folder, ignore=_made_by_scripts)
    zine = Zine(root, env)
    for script in ("make_sample_dataset.py", "make_sample_dataset.py --world organism",
                   "make_sample_model.py"):
        made = zine.python(f"scripts/{script.split()[0]}", *script.split()[1:], timeout=600)
        assert made.rc == 0, made.output
    made = zine.unmake("index", "sample", "organism", timeout=600)
    assert made.rc == 0, made.output
    return zine


def make_zine(root: Path, pages: dict[str, str], env: dict[str, str], *,
              models: dict[str, str] | None = None, plugin: dict[str, Any] | None = None,
              nav: list[Any] | None = None) -> Zine:
    """Write a zine: mkdocs.yml (material, no web fonts, search, glightbox, unmake) and pages."""
    config: dict[str, Any] = {
        "site_name": "test zine",
        "theme": {"name": "material", "font": False},
        "plugins": [
            "search",
            {"glightbox": {"skip_classes": ["off-glb"]}},
            {"unmake": {"store": ".unmake", "models": {"default": "tiny", **(models or {})},
                        **(plugin or {})}},
        ],
    }
    if nav is not None:
        config["nav"] = nav
    root.mkdir(parents=True, exist_ok=True)
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    zine = Zine(root, env)
    for page, text in pages.items():
        zine.write(page, text)
    return zine


@pytest.fixture(scope="session")
def unmake_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every subprocess: offline, no inherited unmake settings."""
    cache = os.environ.get("UNMAKE_CACHE") or str(tmp_path_factory.mktemp("unmake-cache"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UNMAKE_MODEL_", "UNMAKE_MODE"))}
    env.update(NO_MKDOCS_2_WARNING="1", UNMAKE_CACHE=cache, HF_HUB_OFFLINE="1",
               HF_HUB_CACHE=str(tmp_path_factory.mktemp("hf-hub")))
    return env


@pytest.fixture
def zine(tmp_path: Path, unmake_env: dict[str, str]) -> Any:
    """Factory: zine(pages, models=..., plugin=...) -> a Zine in a fresh temp folder."""
    count = 0

    def make(pages: dict[str, str], **kwargs: Any) -> Zine:
        nonlocal count
        count += 1
        return make_zine(tmp_path / f"zine{count}", pages, unmake_env, **kwargs)

    return make


# The shared zine: built once per session, never changed by a test (copy it to change it).
# index.md: a 2 x 2 grid; hostile.md: prompts that try to inject HTML; again.md: the grid of
# index.md once more (identical jobs run once). Six images in all.
GRID_PROMPT = "a photo of a {red|blue} fox"
GRID_SEEDS = [3, 5]
HOSTILE = ["<script>alert(1)</script> a cat", '"><img src=x onerror=alert(1)> a dog']
GRID = generate(id="foxes", prompt=GRID_PROMPT, seeds=GRID_SEEDS,
                caption="Two foxes, two seeds: only the colour changes.")
BUILT_PAGES = {
    "index.md": "# Fox grid\n\nA grid of foxes.\n\n" + GRID + "\nAfter the grid.\n",
    "hostile.md": "# Hostile\n\n" + generate(id="hostile-prompts", prompt=HOSTILE,
                                             caption="Prompts are data, not markup.") + "\n",
    "again.md": "# Again\n\nThe same grid on another page.\n\n" + GRID.replace(
        "id: foxes", "id: foxes-again"),
}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Zine:
    """The shared zine, built once (this also writes the tiny model into the session cache)."""
    zine = make_zine(tmp_path_factory.mktemp("built") / "zine", BUILT_PAGES, unmake_env,
                     nav=["index.md", "hostile.md", "again.md"])
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    return zine


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Elements(HTMLParser):
    """The start tags and the text of a page, parsed the way a browser tokenises it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.texts).append(data)

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        """Attributes of every `tag` element (with class `cls`), in page order."""
        return [attrs for t, attrs in self.tags
                if t == tag and (cls is None or cls in attrs.get("class", "").split())]

    def text(self) -> str:
        """The page's text as a reader sees it (tags dropped, entities decoded)."""
        return "".join(self.texts)
