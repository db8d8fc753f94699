"""The site's HTML: one page per slide (the viewer, its layer controls and what it shows, the slide's data as an
inline JSON script) and the index (a sortable, filterable table of the slides). Pages load only files of the site,
by relative links, so they open from disk (``file://``) and from any server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence
from urllib.parse import quote

from source.io import json_safe

SLIDE_ASSETS = "../../assets"
"""The site's ``assets/`` seen from ``slides/<slide_id>/index.html``."""


def inline_json(data: dict) -> str:
    """``data`` as strict JSON (NaN -> null) that cannot end the ``<script>`` element holding it."""
    clean, _ = json_safe(data)
    return json.dumps(clean, separators=(",", ":")).replace("</", "<\\/")


def _layer_control(layer: dict) -> str:
    """A layer's checkbox, opacity slider and legend (a colour bar with its range, or the outline's meaning)."""
    name = escape(layer["name"])
    checked = " checked" if layer["visible"] else ""
    legend = f'<p class="legend-title">{escape(layer["title"])}</p>'
    if "cmap" in layer:
        cmap = escape(layer["cmap"])
        legend += (
            f'<div class="colorbar"><img src="{SLIDE_ASSETS}/colorbar_{cmap}.png" alt="{cmap}">'
            f"<span>{layer['vmin']:.4g}</span><span>{(layer['vmin'] + layer['vmax']) / 2:.4g}</span>"
            f"<span>{layer['vmax']:.4g}</span></div>"
        )
    return (
        f'<div class="layer"><label><input type="checkbox" data-layer="{name}"{checked}> {name}</label>'
        f'<input type="range" min="0" max="1" step="0.05" value="{layer["opacity"]}" data-layer-opacity="{name}" '
        f'aria-label="opacity of {name}">{legend}</div>'
    )


def slide_page(slide_id: str, data: dict, notes: Sequence[tuple[str, str]]) -> str:
    """The page of one slide; ``data`` is what ``slide.js`` reads (tile source, box, layers, regions)."""
    about = "".join(f"<dt>{escape(label)}</dt><dd>{escape(text)}</dd>" for label, text in notes)
    controls = "".join(_layer_control(layer) for layer in data["layers"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(slide_id)}: HIPT viewer</title>
<link rel="stylesheet" href="{SLIDE_ASSETS}/viewer.css">
</head>
<body class="slide-page">
<div id="viewer"></div>
<aside id="panel">
<p><a href="../../index.html">all slides</a></p>
<h1>{escape(slide_id)}</h1>
<section><h2>Layers</h2>{controls}</section>
<section><h2>Region</h2><div id="region-info">Point at a region.</div><div id="region-link"></div></section>
<section><h2>About</h2><dl>{about}</dl></section>
<p class="licence">Drawn with OpenSeadragon (<a href="{SLIDE_ASSETS}/openseadragon/LICENSE.txt">its licence</a>).</p>
</aside>
<script id="slide-data" type="application/json">{inline_json(data)}</script>
<script src="{SLIDE_ASSETS}/openseadragon/openseadragon.min.js"></script>
<script src="{SLIDE_ASSETS}/slide.js"></script>
</body>
</html>
"""


@dataclass(frozen=True)
class IndexRow:
    """One slide's row of the index."""

    slide_id: str
    status: str
    error: str = ""
    label: str = ""
    prediction: str = ""
    score_name: str = ""
    score: Optional[float] = None
    model: str = ""
    num_regions: int = 0
    layers: str = ""


COLUMNS = ("", "slide", "label", "prediction", "probability / risk", "model", "regions", "layers", "status")


def _index_row(row: IndexRow) -> str:
    folder = f"slides/{quote(row.slide_id, safe='')}"
    built = row.status == "success"
    link = f'<a href="{folder}/index.html">{escape(row.slide_id)}</a>' if built else escape(row.slide_id)
    thumbnail = f'<a href="{folder}/index.html"><img src="{folder}/thumbnail.jpg" alt=""></a>' if built else ""
    score = f"{row.score_name} {row.score:.4g}" if row.score is not None else ""
    sort_score = "" if row.score is None else f' data-value="{row.score!r}"'
    status = escape(row.status + (f": {row.error}" if row.error else ""))
    return (
        f'<tr data-slide-id="{escape(row.slide_id)}" class="{escape(row.status)}"><td>{thumbnail}</td><td>{link}</td>'
        f"<td>{escape(row.label)}</td><td>{escape(row.prediction)}</td><td{sort_score}>{escape(score)}</td>"
        f'<td>{escape(row.model)}</td><td data-value="{row.num_regions}">{row.num_regions}</td>'
        f"<td>{escape(row.layers)}</td><td>{status}</td></tr>"
    )


def index_page(rows: Sequence[IndexRow], title: str) -> str:
    """The index: a table of every slide, with a filter box; clicking a column header sorts by it."""
    head = "".join(f"<th>{escape(name)}</th>" for name in COLUMNS)
    body = "\n".join(_index_row(row) for row in rows)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}: HIPT viewer</title>
<link rel="stylesheet" href="assets/viewer.css">
</head>
<body class="index-page">
<h1>{escape(title)}</h1>
<p><input id="filter" type="search" placeholder="filter the slides" aria-label="filter the slides">
<span id="count"></span></p>
<table id="slides">
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<p class="licence">Slides drawn with OpenSeadragon (<a href="assets/openseadragon/LICENSE.txt">its licence</a>).</p>
<script src="assets/index.js"></script>
</body>
</html>
"""
