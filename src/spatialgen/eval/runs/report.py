"""Self-contained HTML reports: tables, a bar chart per metric table, and the worst failures drawn.

One file that opens anywhere (images and charts are embedded as base64 PNG), so a report can be
mailed or attached to a paper's supplement without its run folder.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..detection.detections import ObjectDetection

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")
THUMB = 192


@dataclass
class Failure:
    """One badly scored image, shown with the detections that decided its score."""

    image: Image.Image
    title: str
    note: str = ""
    detections: Sequence[ObjectDetection] = field(default_factory=list)


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def draw_detections(image: Image.Image, detections: Sequence[ObjectDetection], size: int = THUMB) -> Image.Image:
    """The image scaled to ``size`` (nearest, so small images stay sharp) with labelled boxes."""
    scale = size / max(image.size)
    canvas = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    labels = list(dict.fromkeys(d.label for d in detections))
    for det in detections:
        colour = PALETTE[labels.index(det.label) % len(PALETTE)]
        x0, y0, x1, y1 = (v * scale for v in det.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        draw.text((x0 + 2, max(0.0, y0 - 11)), f"{det.label} {det.score:.2f}", fill=colour, font=font)
    return canvas


def bar_chart(values: Mapping[str, float], title: str) -> Image.Image:
    """A horizontal bar chart of one table's metrics (matplotlib, off-screen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(values)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 0.9), dpi=100)
    try:
        ax.barh(names[::-1], [values[n] for n in names[::-1]], color="#4363d8")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def chart_groups(values: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A table's numbers split by kind, one chart each: ``counts`` (integers: images, prompts, objects) and
    ``scores`` (every other number), so a count of 256 images never flattens scores in [0, 100] beside it.
    Booleans are neither; a kind with no values is left out."""
    groups: dict[str, dict[str, float]] = {"scores": {}, "counts": {}}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        groups["counts" if isinstance(value, int) else "scores"][key] = float(value)
    return {kind: group for kind, group in groups.items() if group}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return html.escape(str(value))


def table_html(rows: Mapping[str, Mapping[str, Any]], row_header: str = "") -> str:
    """An HTML table: one row per key of ``rows``, one column per metric (the union, in first-seen order)."""
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{_format(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for name, row in rows.items()
    )
    return f"<table><tr><th>{html.escape(row_header)}</th>{head}</tr>{body}</table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child{text-align:left}h2{margin-top:2em}.fails{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:200px;font-size:12px}figure img{border:1px solid #ccc}.meta{color:#666;font-size:13px}
"""


def render_report(
    title: str,
    tables: Mapping[str, Mapping[str, float]],
    failures: Sequence[Failure] = (),
    meta: Mapping[str, Any] | None = None,
    charts: bool = True,
) -> str:
    """The whole report as one HTML string."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    if meta:
        parts.append("<p class='meta'>" + "<br>".join(f"{html.escape(k)}: {_format(v)}" for k, v in meta.items()))
        parts.append("</p>")
    for name, values in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(table_html({name: values}))
        for kind, numbers in (chart_groups(values) if charts else {}).items():
            label = f"{name}: {kind}"
            if not any(numbers.values()):  # an empty axis says nothing a sentence would not
                parts.append(f"<p class='meta'>{html.escape(label)}: every value is 0</p>")
                continue
            parts.append(f"<img alt='{html.escape(label)} chart' src='{png_data_uri(bar_chart(numbers, label))}'>")
    if failures:
        parts.append(f"<h2>Worst failures ({len(failures)})</h2><div class='fails'>")
        for fail in failures:
            uri = png_data_uri(draw_detections(fail.image, fail.detections))
            parts.append(
                f"<figure><img src='{uri}' width='{THUMB}'><figcaption><b>{html.escape(fail.title)}</b><br>"
                f"{html.escape(fail.note)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


def render_comparison(runs: Mapping[str, Mapping[str, Mapping[str, float]]], title: str = "Comparison") -> str:
    """Runs side by side: for each metric table, one row per run (the papers' table layout)."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for run, run_tables in runs.items():
        for table, values in run_tables.items():
            tables.setdefault(table, {})[run] = dict(values)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    for table, rows in tables.items():
        parts.append(f"<h2>{html.escape(table)}</h2>{table_html(rows, 'run')}")
    parts.append("</body></html>")
    return "".join(parts)
