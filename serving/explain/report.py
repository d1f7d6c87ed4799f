"""Reviewer reports for explained downgrades: one HTML page per user and a batch summary.

Charts are inline SVG built here (a waterfall of the decision margin, bars of causes): no fonts or
plotting backend needed, identical bytes for identical explanations, and a browser renders the
Chinese text. Reports carry pseudonymous ids, amounts, counts and model/policy versions only.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import jinja2

from serving.explain.downgrades import CAUSE_TEXT

_ENV = None
CAUSE_COLOURS = {
    "risk_bureau": "#c0392b",
    "risk_behaviour": "#e67e22",
    "fraud": "#8e44ad",
    "model_update": "#2980b9",
    "policy": "#16a085",
    "regulation": "#2c3e50",
    "system_data": "#7f8c8d",
}


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # templates ship with the package: no stat of the file on every page
            auto_reload=False,
        )
        _ENV.filters["num"] = lambda v, d=2: "" if v is None else f"{v:,.{d}f}"
    return _ENV


def waterfall_svg(steps: list[dict[str, Any]], width: int = 640, bar_h: int = 22) -> str:
    """Horizontal waterfall: start bar, signed steps, end bar; zero line = the adverse cut-off."""
    if not steps:
        return ""
    running, spans = 0.0, []
    for s in steps:
        if s["kind"] in ("start", "end"):
            spans.append((0.0, s["value"], s))
            running = s["value"]
        else:
            spans.append((running, running + s["value"], s))
            running += s["value"]
    lo = min(min(a, b) for a, b, _ in spans + [(0.0, 0.0, None)])
    hi = max(max(a, b) for a, b, _ in spans + [(0.0, 0.0, None)])
    span = (hi - lo) or 1.0
    label_w, pad = 210, 60
    plot_w = width - label_w - pad

    def x(v: float) -> float:
        return label_w + (v - lo) / span * plot_w

    height = bar_h * len(steps) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="decision margin waterfall" font-family="sans-serif" font-size="12">'
    ]
    zx = x(0.0)
    out.append(
        f'<line x1="{zx:.1f}" y1="0" x2="{zx:.1f}" y2="{height - 18}" stroke="#000" stroke-dasharray="4,3"/>'
    )
    out.append(f'<text x="{zx:.1f}" y="{height - 4}" text-anchor="middle">cut-off</text>')
    for k, (a, b, s) in enumerate(spans):
        y = 4 + k * bar_h
        left, right = min(a, b), max(a, b)
        if s["kind"] in ("start", "end"):
            colour = "#555"
        else:
            colour = "#c0392b" if s["value"] > 0 else "#27ae60"  # up = riskier
        w = max(x(right) - x(left), 1.0)
        out.append(
            f'<rect x="{x(left):.1f}" y="{y}" width="{w:.1f}" height="{bar_h - 6}" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 10}" text-anchor="end">{html.escape(s["label"])}</text>'
        )
        out.append(f'<text x="{x(right) + 4:.1f}" y="{y + bar_h - 10}">{s["value"]:+.2f}</text>')
    out.append("</svg>")
    return "".join(out)


def bars_svg(counts: dict[str, int], width: int = 520, bar_h: int = 24) -> str:
    """Horizontal bars of counts by cause."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max([v for _, v in items] or [1])
    label_w = 200
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bar_h * len(items) + 8}" '
        'role="img" aria-label="downgrades by cause" font-family="sans-serif" font-size="12">'
    ]
    for k, (cause, v) in enumerate(items):
        y = 4 + k * bar_h
        w = (width - label_w - 60) * v / top
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 10}" text-anchor="end">{html.escape(CAUSE_TEXT.get(cause, ("", cause))[1])}</text>'
        )
        out.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 6}" fill="{CAUSE_COLOURS.get(cause, "#999")}"/>'
        )
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 10}">{v}</text>')
    out.append("</svg>")
    return "".join(out)


def render_user_report(detail: dict[str, Any]) -> str:
    """One reviewer page for one explained user."""
    return (
        _env()
        .get_template("explain_user.html.j2")
        .render(
            d=detail,
            cause_text=CAUSE_TEXT,
            waterfall=waterfall_svg(detail["waterfall"]),
            fraud_waterfall=waterfall_svg(detail["fraud_waterfall"]),
            colour=CAUSE_COLOURS.get(detail["cause"], "#999"),
        )
    )


def render_summary_report(
    summary: dict[str, Any],
    details: list[dict[str, Any]],
    as_of: str,
    user_link: str = "users/{user_id}.html",
) -> str:
    """The batch page: counts by cause (all and repaid-in-full), top reasons, examples."""
    by_id = {d["user_id"]: d for d in details}
    examples = {
        cause: [by_id[u] for u in users if u in by_id]
        for cause, users in summary.get("examples", {}).items()
    }
    return (
        _env()
        .get_template("explain_summary.html.j2")
        .render(
            s=summary,
            as_of=as_of,
            cause_text=CAUSE_TEXT,
            bars=bars_svg(summary.get("by_cause", {})),
            examples=examples,
            link=user_link,
        )
    )
