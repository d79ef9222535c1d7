"""Citations: the `[@key]` syntax (unit table: escapes, e-mail addresses, code and links are not
citations), author–date formatting by citeproc-py against a BibTeX file, escaping of hostile
entries, located errors, and a built page with its references list (snapshot)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import Elements

from generator import citations
from generator.errors import ConfigError, DirectiveError

SNAPSHOTS = Path(__file__).parent / "snapshots"

BIB = r"""
@article{rombach2022,
  author = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, Patrick
            and Ommer, Bj{\"o}rn},
  title = {High-Resolution Image Synthesis with Latent Diffusion Models},
  journal = {Proceedings of CVPR},
  year = {2022},
  url = {https://arxiv.org/abs/2112.10752}
}
@misc{card2022,
  author = {{CompVis}},
  title = {Stable Diffusion v1-4 Model Card},
  year = {2022},
  url = {https://huggingface.co/CompVis/stable-diffusion-v1-4}
}
@misc{hostile,
  author = {Mallory, Eve},
  title = {<script>alert(1)</script> and "quotes" & ampersands},
  year = {2020}
}
"""


@pytest.fixture
def bib(tmp_path: Path) -> citations.Bibliography:
    (tmp_path / "refs.bib").write_text(BIB, "utf-8")
    return citations.load({"bibliography": "refs.bib"}, tmp_path, {})  # type: ignore[return-value]


# -- the syntax ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("as shown [@rombach2022].", [[("rombach2022", None)]]),
    ("[@rombach2022, p. 12]", [[("rombach2022", ("page", "12"))]]),
    ("[@rombach2022, pp. 3-4]", [[("rombach2022", ("page", "3-4"))]]),
    ("[@rombach2022, 7]", [[("rombach2022", ("page", "7"))]]),
    ("[@a, ch. 2; @b, sec. 4]", [[("a", ("chapter", "2")), ("b", ("section", "4"))]]),
    ("[@a; @b]", [[("a", None), ("b", None)]]),
    ("two [@a] and [@b:c.d]", [[("a", None)], [("b:c.d", None)]]),
    ("ends a sentence [@a.]", [[("a", None)]]),
    # not citations
    (r"escaped \[@a] stays text", []),
    ("mail me@example.org", []),
    ("[write to me@example.org]", []),
    ("[@me@example.org]", []),
    ("`[@a]` in code", []),
    ("``code [@a] with ` inside``", []),
    ("```\n[@a]\n```", []),
    ("~~~~\n```\n[@a]\n~~~~\n[@b]", [[("b", None)]]),
    ("[@user](https://example.org/user)", []),
    ("[@a]: https://example.org/a", []),
    ("[@ spaced]", []),
    ("[see @a]", []),
])
def test_citation_syntax(text: str, expected: list[list[tuple[str, Any]]]) -> None:
    found = citations.find(text)
    assert [[(i.key, i.locator) for i in g.items] for g in found] == expected


def test_lines_and_offsets_are_those_of_the_page() -> None:
    text = "# T\n\nFirst [@a] then\n\nsecond `x` [@b, p. 2].\n"
    found = citations.find(text)
    assert [(g.line, text.splitlines()[g.line - 1][g.start:g.end]) for g in found] == [
        (3, "[@a]"), (5, "[@b, p. 2]")]


def test_a_bad_locator_is_a_located_error() -> None:
    with pytest.raises(DirectiveError, match=r"^p\.md:3: citation: \[@a, somewhere\]: the "
                                             r"locator must be"):
        citations.find("x\n\nsee [@a, somewhere]\n", "p.md")


def test_an_unknown_key_names_page_line_and_the_nearest_key(
        bib: citations.Bibliography) -> None:
    with pytest.raises(DirectiveError) as info:
        citations.check_page("x\n\n[@rombach2022]\n\nbut [@rombach2021, p. 3]\n", "docs/p.md",
                             bib)
    assert str(info.value) == ("docs/p.md:5: citation: cites '@rombach2021', which is not in "
                               "refs.bib; did you mean '@rombach2022'?")
    with pytest.raises(DirectiveError, match="no bibliography is declared"):
        citations.check_page("[@a]", "docs/p.md", None)
    assert citations.check_page(r"\[@nope] and me@example.org", "docs/p.md", None) == []


def test_a_broken_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bibliography: no file 'nope\.bib'"):
        citations.load({"bibliography": "nope.bib"}, tmp_path, {})
    (tmp_path / "r.bib").write_text(BIB, "utf-8")
    with pytest.raises(ConfigError, match=r"citation_style: no CSL style 'apa-9'"):
        citations.load({"bibliography": "r.bib", "citation_style": "apa-9"}, tmp_path, {})


# -- formatting ---------------------------------------------------------------------------------
def test_author_date_citations_link_to_their_references(bib: citations.Bibliography) -> None:
    page = bib.page()
    text = "A [@rombach2022, p. 12] and [@card2022; @rombach2022]."
    marked = citations.substitute(text, citations.find(text), page)
    assert "[@" not in marked
    html, references = page.resolve()
    out = citations.fill(marked, html)
    assert out == (
        'A <span class="unmake-cite">(<a href="#ref-rombach2022">Rombach <i>et al.</i>, 2022, '
        'p. 12</a>)</span> and <span class="unmake-cite">(<a href="#ref-card2022">CompVis, '
        '2022</a>; <a href="#ref-rombach2022">Rombach <i>et al.</i>, 2022</a>)</span>.')
    # one entry per work cited, sorted by author, each with the anchor its citations link to
    ids = [a["id"] for a in Elements(references).all("p", "unmake-reference")]
    assert ids == ["ref-card2022", "ref-rombach2022"]
    assert "Ommer" not in references and "Rombach, R. <i>et al.</i> (2022)" in references
    assert "https://arxiv.org/abs/2112.10752" in references


def test_hostile_entries_are_escaped(bib: citations.Bibliography) -> None:
    page = bib.page()
    page.cite((citations.Item("hostile", None),))
    _, references = page.resolve()
    parsed = Elements(references)
    assert not parsed.all("script")
    assert '<script>alert(1)</script> and "quotes" & ampersands' in parsed.text()


def test_a_page_without_citations_gets_no_list(bib: citations.Bibliography) -> None:
    assert bib.page().resolve() == ([], "")


# -- end to end ---------------------------------------------------------------------------------
ACTORS = """\
actors:
  - {name: CompVis, kind: organisation}
  - {name: Stable Diffusion, kind: model, date: 2022-08}
relations:
  - {from: CompVis, type: released, to: Stable Diffusion, date: 2022-08, sources: ["@card2022"]}
"""


@pytest.mark.e2e
def test_a_built_page_cites_and_lists_its_references(zine: Any) -> None:
    page = ("# Essay\n\nLatent diffusion [@rombach2022, p. 3]; see `[@code]` and "
            "\\[@escaped].\n\n```actors\nid: who\ndata: map.yml\nshow: [table]\n```\n")
    z = zine({"index.md": page}, plugin={"bibliography": "refs.bib"})
    (z.root / "refs.bib").write_text(BIB, "utf-8")
    (z.docs / "map.yml").write_text(ACTORS, "utf-8")
    run = z.unmake("build")
    assert run.rc == 0, run.output
    html = z.html()
    assert "[@escaped]" in html and "<code>[@code]</code>" in html
    cites = re.findall(r'<span class="unmake-cite">.*?</span>', html)
    assert cites == [
        '<span class="unmake-cite">(<a href="#ref-rombach2022">Rombach <i>et al.</i>, 2022, '
        'p. 3</a>)</span>',
        '<span class="unmake-cite">(<a href="#ref-card2022">CompVis, 2022</a>)</span>']
    refs = html[html.index('<div class="unmake-references">'):]
    refs = refs[: refs.index("</div>") + len("</div>")]
    snapshot = SNAPSHOTS / "references.html"
    if os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(refs + "\n", "utf-8")
    assert refs + "\n" == snapshot.read_text("utf-8")
    assert 'id="references"' in html  # the heading, in the page's table of contents

    # an unknown key in the page, then in the actors file: one located line each, exit != 0
    z.write("index.md", page.replace("rombach2022, p. 3", "rombach2023, p. 3"))
    run = z.unmake("build")
    assert run.rc != 0
    assert ("docs/index.md:3: citation: cites '@rombach2023', which is not in refs.bib; did "
            "you mean '@rombach2022'?") in run.output
    z.write("index.md", page)
    (z.docs / "map.yml").write_text(ACTORS.replace("@card2022", "@card2021"), "utf-8")
    run = z.unmake("build")
    assert run.rc != 0
    assert ("docs/map.yml:5: actors data: 'relations[0].sources' cites '@card2021', which is "
            "not in refs.bib; did you mean '@card2022'?") in run.output


# -- figure captions and the print zine ---------------------------------------------------------
def test_a_caption_cites_on_its_page_and_stays_escaped(bib: citations.Bibliography) -> None:
    page = bib.page()
    caption = "Noise <b>&</b> [@rombach2022, p. 3], not \\[@this]"
    shown = citations.in_caption(caption, page)
    html, references = page.resolve()
    out = citations.fill(str(shown), html)
    assert citations.caption_text(caption, bib) == ("Noise <b>&</b> (Rombach et al., 2022, "
                                                    "p. 3), not [@this]")
    assert out == ('Noise &lt;b&gt;&amp;&lt;/b&gt; <span class="unmake-cite">(<a '
                   'href="#ref-rombach2022">Rombach <i>et al.</i>, 2022, p. 3</a>)</span>, not '
                   '[@this]')
    assert [a["id"] for a in Elements(references).all("p", "unmake-reference")] == [
        "ref-rombach2022"]


def test_an_unknown_key_in_a_caption_names_the_caption_line(bib: citations.Bibliography) -> None:
    with pytest.raises(DirectiveError) as caught:
        citations.check_caption("Two lines,\nciting [@rombach2021]", "docs/a.md", 7, bib)
    assert str(caught.value) == ("docs/a.md:8: caption: 'caption' cites '@rombach2021', which "
                                 "is not in refs.bib; did you mean '@rombach2022'?")


def test_one_list_for_the_citations_of_many_pages(bib: citations.Bibliography) -> None:
    groups = [(citations.Item("rombach2022", ("page", "3")),),
              (citations.Item("card2022", None), citations.Item("rombach2022", None))]
    ids = [a["id"] for a in Elements(citations.references(bib, groups)).all(
        "p", "unmake-reference")]
    assert ids == ["ref-card2022", "ref-rombach2022"]  # each work once, sorted by author


@pytest.mark.e2e
def test_captions_cite_and_the_zine_lists_every_reference_once_at_its_end(zine: Any) -> None:
    from pypdf import PdfReader

    pages = {
        "index.md": "# First\n\nLatent diffusion [@rombach2022].\n",
        "who.md": ("# Second\n\nNo citation in this text.\n\n```actors\nid: who\ndata: map.yml\n"
                   "show: [table, graph]\ncaption: \"Who released it, after the card [@card2022, "
                   "p. 2].\"\n```\n"),
    }
    z = zine(pages, plugin={"bibliography": "refs.bib"}, nav=["index.md", "who.md"])
    (z.root / "refs.bib").write_text(BIB, "utf-8")
    (z.docs / "map.yml").write_text(ACTORS.replace(', sources: ["@card2022"]', ""), "utf-8")
    run = z.unmake("build")
    assert run.rc == 0, run.output
    # the site: the caption's citation is a link, and counts toward the page's own list
    html = z.html("who.md")
    caption = html[html.index("<figcaption"):html.index("</figcaption>")]
    assert ('<span class="unmake-cite">(<a href="#ref-card2022">CompVis, 2022, p. 2</a>)'
            '</span>') in caption
    refs = Elements(html).all("p", "unmake-reference")
    assert [a["id"] for a in refs] == ["ref-card2022"]
    # the graph's SVG title holds no links: the citation as text
    assert ">Who released it, after the card (CompVis, 2022, p. 2).</title>" in html

    # the zine: no list after each chapter, one list of both works before the appendix
    run = z.unmake("zine")
    assert run.rc == 0, run.output
    text = [page.extract_text() for page in PdfReader(z.root / "zine.pdf").pages]
    titled = [i for i, t in enumerate(text) if t.lstrip().startswith("References")]
    assert len(titled) == 1, text
    at = titled[0]
    whole = "\n".join(text)
    assert whole.count("Rombach, R.") == 1 and whole.count("CompVis (2022)") == 1
    assert "Rombach, R." in text[at] and "CompVis (2022)" in text[at]
    assert "Latent diffusion" in "".join(text[:at]) and "Who released it" in "".join(text[:at])
    appendix = "".join(text[at + 1:])
    assert "Provenance of the figures" in appendix
    assert "(CompVis, 2022, p. 2)" in appendix and "[@" not in appendix  # as in its chapter

    # an unknown key in a caption: one located line, exit != 0
    z.write("who.md", pages["who.md"].replace("card2022", "card2021"))
    run = z.unmake("build")
    assert run.rc != 0
    assert ("docs/who.md:9: caption: 'caption' cites '@card2021', which is not in refs.bib; "
            "did you mean '@card2022'?") in run.output
