"""Static SVG for actor maps: a network laid out at build time, and a timeline. No JavaScript.

Both are plain strings built here, every author-given text escaped (markupsafe), every
coordinate rounded to one decimal, so two builds give byte-identical SVG. The network is laid
out by networkx's Kamada–Kawai (deterministic: it starts from a circle over the nodes in sorted
order and minimises an energy with scipy; no random seed involved). Kinds of actor differ by
shape as well as colour (Okabe–Ito colours, which stay apart for colour-blind readers), so a
grey print still reads; a claim without a source is drawn dashed. Sizes are in CSS pixels of a
800-wide viewBox that scales to the column: 15 px text is about 7 pt across an A5 page.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

from markupsafe import escape

from .actors import KINDS, ActorMap, Relation

WIDTH = 800
FONT = 15
NODE_R = 15
MARGIN_X = 100  # room for a label centred under a node at the edge
MARGIN_Y = 40
LABEL_CHARS = 26  # a longer name wraps onto a second line, then is cut with an ellipsis
# Okabe–Ito, by kind
COLOURS = {"organisation": "#0072B2", "person": "#E69F00", "funder": "#009E73",
           "dataset": "#D55E00", "model": "#CC79A7", "licence": "#56B4E9",
           "platform": "#F0E442", "paper": "#999999", "other": "#FFFFFF"}
assert set(COLOURS) == set(KINDS)


def _f(x: float) -> str:
    """A coordinate as written: one decimal, no `-0.0`."""
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text


def shape(kind: str, x: float, y: float, r: float = NODE_R) -> str:
    """The SVG element of one node of `kind`, centred at (x, y)."""
    fill, stroke = COLOURS[kind], 'stroke="#222" stroke-width="1.5"'

    def poly(points: list[tuple[float, float]]) -> str:
        pts = " ".join(f"{_f(x + dx)},{_f(y + dy)}" for dx, dy in points)
        return f'<polygon points="{pts}" fill="{fill}" {stroke}/>'

    if kind == "person":
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(r)}" fill="{fill}" {stroke}/>'
    if kind == "organisation":
        return (f'<rect x="{_f(x - r)}" y="{_f(y - r * 0.8)}" width="{_f(2 * r)}" '
                f'height="{_f(1.6 * r)}" fill="{fill}" {stroke}/>')
    if kind == "funder":
        return poly([(0, -r * 1.2), (r * 1.2, 0), (0, r * 1.2), (-r * 1.2, 0)])
    if kind == "dataset":  # a cylinder: a database
        top, bottom = y - r * 0.8, y + r * 0.8
        return (f'<path d="M{_f(x - r)},{_f(top)} v{_f(bottom - top)} a{_f(r)},{_f(r * 0.35)} '
                f'0 0 0 {_f(2 * r)},0 v{_f(top - bottom)} a{_f(r)},{_f(r * 0.35)} 0 0 0 '
                f'{_f(-2 * r)},0 a{_f(r)},{_f(r * 0.35)} 0 0 0 {_f(2 * r)},0" fill="{fill}" '
                f'{stroke}/>')
    if kind == "model":  # a hexagon
        return poly([(r * math.cos(a), r * math.sin(a))
                     for a in (math.pi / 3 * k + math.pi / 6 for k in range(6))])
    if kind == "licence":  # a page with a folded corner
        w, h, c = r * 0.8, r, r * 0.45
        return poly([(-w, -h), (w - c, -h), (w, -h + c), (w, h), (-w, h)])
    if kind == "platform":  # a parallelogram
        return poly([(-r * 0.7, -r * 0.7), (r * 1.2, -r * 0.7), (r * 0.7, r * 0.7),
                     (-r * 1.2, r * 0.7)])
    if kind == "paper":  # a triangle
        return poly([(0, -r * 1.1), (r * 1.1, r * 0.8), (-r * 1.1, r * 0.8)])
    return poly([(r * math.cos(a), r * math.sin(a))  # other: an octagon
                 for a in (math.pi / 4 * k + math.pi / 8 for k in range(8))])


def wrap(text: str, chars: int = LABEL_CHARS) -> list[str]:
    """A label on at most two lines of about `chars` characters, broken at spaces or after a
    slash (`CompVis/` + `stable-diffusion-v1-4`); cut with … beyond."""
    if len(text) <= chars:
        return [text]
    # tokens keep what follows them: a space, or nothing after a slash
    tokens = re.findall(r"[^\s/]*/|[^\s/]+\s*", text)
    lines, line = [], ""
    for token in tokens:
        if line and len(line.rstrip()) + len(token.rstrip()) > chars:
            lines.append(line.rstrip())
            line = token
        else:
            line += token
    lines.append(line.rstrip())
    if len(lines) > 2 or any(len(x) > chars for x in lines):
        first = lines[0][:chars]
        rest = text[len(first):].strip()
        lines = [first, rest if len(rest) <= chars else rest[: chars - 1] + "…"]
    return lines


def _text(x: float, y: float, lines: list[str], size: int = FONT, anchor: str = "middle",
          cls: str = "label") -> str:
    """Text with a white halo (readable over lines), one tspan per line."""
    spans = "".join(f'<tspan x="{_f(x)}" dy="{"0" if i == 0 else "1.15em"}">{escape(line)}'
                    f"</tspan>" for i, line in enumerate(lines))
    at = f'x="{_f(x)}" y="{_f(y)}" font-size="{size}" text-anchor="{anchor}"'
    # the halo is a white-stroked copy underneath: `paint-order` would do it in one element,
    # but WeasyPrint (the print zine) does not read it
    return (f'<text class="halo" {at} stroke="#fff" stroke-width="4" stroke-linejoin="round" '
            f'fill="#fff" aria-hidden="true">{spans}</text>'
            f'<text class="{cls}" {at} fill="#111">{spans}</text>')


# -- layout -----------------------------------------------------------------------------------
def layout(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Positions in [0, 1]² for `nodes` (deterministic: sorted input, Kamada–Kawai, rounded).

    Kamada–Kawai needs a connected graph (unconnected parts collapse onto one point), so each
    connected part is laid out alone and the parts are packed in rows, largest first."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(sorted(nodes))
    graph.add_edges_from(sorted({tuple(sorted(e)) for e in edges if e[0] != e[1]}))
    parts = sorted((sorted(c) for c in nx.connected_components(graph)),
                   key=lambda c: (-len(c), c[0]))
    # 1. Each part in its own unit box, scaled by the square root of its size
    boxes: list[tuple[float, dict[str, tuple[float, float]]]] = []
    for part in parts:
        if len(part) == 1:
            local = {part[0]: (0.5, 0.5)}
        elif len(part) == 2:
            local = {part[0]: (0.0, 0.5), part[1]: (1.0, 0.5)}
        else:
            pos = nx.kamada_kawai_layout(graph.subgraph(part))
            xs = [float(pos[n][0]) for n in part]
            ys = [float(pos[n][1]) for n in part]
            sx, sy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
            local = {n: ((float(pos[n][0]) - min(xs)) / sx, (float(pos[n][1]) - min(ys)) / sy)
                     for n in part}
        boxes.append((math.sqrt(len(part)), local))
    # 2. Pack the boxes in rows about as wide as the whole would be if it were one part
    row_width = max(boxes[0][0], 1.5 * math.sqrt(len(nodes)))
    placed: dict[str, tuple[float, float]] = {}
    x = y = row_height = 0.0
    for size, local in boxes:
        if x > 0 and x + size > row_width + 1e-9:
            x, y, row_height = 0.0, y + row_height + 0.6, 0.0
        for n, (lx, ly) in local.items():
            placed[n] = (x + lx * size, y + ly * size)
        x += size + 0.6
        row_height = max(row_height, size)
    xs = [p[0] for p in placed.values()]
    ys = [p[1] for p in placed.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    fit = {n: ((px - min(xs)) / span_x if max(xs) > min(xs) else 0.5,
               (py - min(ys)) / span_y if max(ys) > min(ys) else 0.5)
           for n, (px, py) in placed.items()}
    return {n: (round(fit[n][0], 4), round(fit[n][1], 4)) for n in sorted(nodes)}


# a text's width per character per pixel of font size, generously (DejaVu Sans, WeasyPrint's
# fallback, is wider than most): boxes for keeping labels apart
TEXT_WIDTH = 0.58
# where along its edge a label may sit, in the order tried
LABEL_SPOTS = (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8)
Box = tuple[float, float, float, float]  # left, top, width, height


def _box(x: float, y: float, width: float, height: float) -> Box:
    """The box of that size centred on (x, y)."""
    return (x - width / 2, y - height / 2, width, height)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@dataclass(frozen=True)
class Drawn:
    svg: str
    nodes: int
    edges: int


def network(amap: ActorMap, names: list[str], relations: list[Relation], anchor: str,
            title: str) -> Drawn:
    """The network of `names` and `relations` as one static SVG (`anchor` makes its ids unique
    on the page)."""
    pos = layout(names, [(r.source, r.target) for r in relations])
    n = len(names)
    height = max(220, min(760, int(180 * math.sqrt(n))))
    inner_w, inner_h = WIDTH - 2 * MARGIN_X, height - 2 * MARGIN_Y - 20
    xy = {k: (MARGIN_X + x * inner_w, MARGIN_Y + y * inner_h) for k, (x, y) in pos.items()}
    marker = f"{anchor}-arrow"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="unmake-actors-graph" '
           f'viewBox="0 0 {WIDTH} {height + legend_height(amap, names)}" role="img" '
           f'aria-labelledby="{anchor}-graph-title">',
           f'<title id="{anchor}-graph-title">{escape(title)}</title>',
           f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" '
           f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           f'<path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>']
    # 1. Edges: a straight line, or arcs bowed apart when two actors share several relations
    pairs: dict[tuple[str, str], list[Relation]] = defaultdict(list)
    for rel in relations:
        pairs[min(rel.source, rel.target), max(rel.source, rel.target)].append(rel)
    # node labels and shapes first, as boxes, so edge labels can keep clear of them
    taken: list[Box] = []
    for name in sorted(names):
        x, y = xy[name]
        taken.append(_box(x, y, 2 * NODE_R + 4, 2 * NODE_R + 4))
        lines = wrap(name)
        taken.append(_box(x, y + NODE_R + 6 + len(lines) * FONT * 0.6,
                          max(len(line) for line in lines) * FONT * TEXT_WIDTH,
                          len(lines) * FONT * 1.15))
    labels = []
    for (a, _), rels in sorted(pairs.items()):
        for k, rel in enumerate(rels):
            (x1, y1), (x2, y2) = xy[rel.source], xy[rel.target]
            dx, dy = x2 - x1, y2 - y1
            length = math.hypot(dx, dy) or 1.0
            # stop short of the target's shape so the arrowhead shows
            ex, ey = x2 - dx / length * (NODE_R + 4), y2 - dy / length * (NODE_R + 4)
            bend = (k - (len(rels) - 1) / 2) * 46 * (1 if rel.source == a else -1)
            nx_, ny_ = -dy / length, dx / length
            cx, cy = (x1 + ex) / 2 + nx_ * bend, (y1 + ey) / 2 + ny_ * bend
            dash = "" if rel.sources else ' stroke-dasharray="5 4"'
            out.append(f'<path class="edge" d="M{_f(x1)},{_f(y1)} Q{_f(cx)},{_f(cy)} '
                       f'{_f(ex)},{_f(ey)}" fill="none" stroke="#444" stroke-width="1.4"'
                       f'{dash} marker-end="url(#{marker})"/>')
            # the label sits on the curve: at its middle, or slid along it, clear of what is
            # already placed (the first free spot of a fixed list, so the result is the same
            # on every build)
            words = rel.type + (f" {rel.when}" if rel.when else "")
            width, height_ = len(words) * (FONT - 2) * TEXT_WIDTH, (FONT - 2) * 1.2
            spots = []
            for t in LABEL_SPOTS:
                mx = (1 - t) ** 2 * x1 + 2 * (1 - t) * t * cx + t**2 * ex
                my = (1 - t) ** 2 * y1 + 2 * (1 - t) * t * cy + t**2 * ey
                spots.append(_box(mx, my, width, height_))
            # the first spot that touches nothing, else the one that touches least
            spot = min(spots, key=lambda b: sum(_overlap(b, o) for o in taken))
            taken.append(spot)
            labels.append(_text(spot[0] + width / 2, spot[1] + height_ / 2 + 4, [words],
                                size=FONT - 2, cls="edge-label"))
    # 2. Nodes, then every label last, so no line crosses a word
    for name in sorted(names):
        kind = amap.actor(name).kind
        x, y = xy[name]
        out.append(f'<g class="node {kind}">{shape(kind, x, y)}</g>')
        labels.append(_text(x, y + NODE_R + FONT + 2, wrap(name)))
    out.extend(labels)
    out.append(legend(amap, names, height, any(not r.sources for r in relations)))
    out.append("</svg>")
    return Drawn("\n".join(out), n, len(relations))


def legend_height(amap: ActorMap, names: list[str]) -> int:
    return 56


def legend(amap: ActorMap, names: list[str], top: float, unsourced: bool) -> str:
    """The kinds on show, each with its shape and colour, and what a dashed line means."""
    kinds = [k for k in KINDS if any(amap.actor(n).kind == k for n in names)]
    parts = [f'<g class="legend" transform="translate(0,{_f(top)})">']
    x = 20.0
    for kind in kinds:
        parts.append(shape(kind, x + 10, 16, r=9))
        parts.append(_text(x + 24, 20, [kind], size=FONT - 1, anchor="start"))
        x += 34 + 7.5 * len(kind)
        if x > WIDTH - 120:
            break
    if unsourced:
        parts.append('<path d="M20,44 h36" stroke="#444" stroke-width="1.4" '
                     'stroke-dasharray="5 4"/>')
        parts.append(_text(64, 48, ["a claim with no source given"], size=FONT - 1,
                           anchor="start"))
    parts.append("</g>")
    return "".join(parts)


# -- timeline ---------------------------------------------------------------------------------
ROW = 24
LEFT = 400  # the labels' column: what, then when (46 characters fit, in DejaVu Sans too)


def timeline(amap: ActorMap, names: list[str], relations: list[Relation], anchor: str,
             title: str) -> Drawn | None:
    """Dated actors and relations as rows on one time axis (a bar for a period, a diamond for a
    day, a pale dashed bar across a year or month given without a day, an arrow for a period
    still open); None when nothing on show is dated."""
    rows: list[tuple[str, str, object]] = []  # (label, kind or "relation", span)
    for name in names:
        actor = amap.actor(name)
        if actor.when:
            rows.append((name, actor.kind, actor.when))
    for rel in relations:
        if rel.when:
            rows.append((f"{rel.source} {rel.type} {rel.target}", "relation", rel.when))
    if not rows:
        return None
    rows.sort(key=lambda r: (r[2].start, r[0]))  # type: ignore[attr-defined]
    spans = [r[2] for r in rows]
    lo = math.floor(min(s.start.start() for s in spans))  # type: ignore[attr-defined]
    hi = math.ceil(max((s.end or s.start).end() for s in spans))  # type: ignore[attr-defined]
    hi = max(hi, lo + 1)
    right = WIDTH - 40
    height = MARGIN_Y + ROW * len(rows) + 30

    def x_of(t: float) -> float:
        return LEFT + (t - lo) / (hi - lo) * (right - LEFT)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="unmake-actors-timeline" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{anchor}-time-title">',
           f'<title id="{anchor}-time-title">{escape(title)}</title>']
    step = max(1, math.ceil((hi - lo) / 12))  # at most about 12 year ticks
    for year in range(lo, hi + 1, step):
        x = x_of(year)
        out.append(f'<line x1="{_f(x)}" y1="{MARGIN_Y - 12}" x2="{_f(x)}" y2="{height - 24}" '
                   f'stroke="#ccc" stroke-width="1"/>')
        out.append(_text(x, height - 8, [str(year)], size=FONT - 1, cls="tick"))
    for i, (label, kind, span) in enumerate(rows):
        y = MARGIN_Y + i * ROW
        # the date is written in the label column, where it never runs into a bar
        when = f", {span}"
        text = label if len(label) + len(when) <= 46 else label[: 45 - len(when)] + "…"
        out.append(_text(LEFT - 12, y + 4, [text + when], size=FONT - 1, anchor="end"))
        start = x_of(span.start.start())  # type: ignore[attr-defined]
        fill = COLOURS.get(kind, "#444")
        if span.point and span.start.day:  # type: ignore[attr-defined]
            out.append(f'<path d="M{_f(start)},{_f(y - 7)} l7,7 l-7,7 l-7,-7 z" fill="{fill}" '
                       f'stroke="#222" stroke-width="1.2"/>')
            continue
        if span.point:  # type: ignore[attr-defined]
            # a year or a month: sometime within it, drawn as a pale bar across all of it
            end = x_of(span.start.end())  # type: ignore[attr-defined]
            out.append(f'<rect x="{_f(start)}" y="{_f(y - 6)}" width="{_f(max(end - start, 3))}" '
                       f'height="12" fill="{fill}" fill-opacity="0.35" stroke="#222" '
                       f'stroke-width="1" stroke-dasharray="2 2"/>')
            continue
        end = x_of(span.end.end() if span.end else hi)  # type: ignore[attr-defined]
        out.append(f'<rect x="{_f(start)}" y="{_f(y - 6)}" width="{_f(max(end - start, 3))}" '
                   f'height="12" fill="{fill}" stroke="#222" stroke-width="1.2"/>')
        if not span.end:  # type: ignore[attr-defined]  # still going: an arrow past the axis
            out.append(f'<path d="M{_f(end)},{_f(y - 9)} l9,9 l-9,9 z" fill="{fill}" '
                       f'stroke="#222" stroke-width="1.2"/>')
    out.append("</svg>")
    return Drawn("\n".join(out), len(rows), 0)
