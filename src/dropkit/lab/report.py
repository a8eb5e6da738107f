"""The lab's report, rebuilt from the output folder's stored results alone (no training).

Writes ``figures/<experiment>.png``, ``report.md`` (figures linked), ``report.html``
(self-contained: figures embedded as base64) and ``verdicts.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from dropkit.lab.experiments import NAMES
from dropkit.lab.plots import figure, png_bytes
from dropkit.lab.store import Store

__all__ = ["build_report", "load_protocol", "load_results"]


def load_results(out: str | Path) -> dict[str, dict[str, Any]]:
    """Every stored experiment result of ``out``, in report order."""
    path = Path(out) / Store.FILENAME
    if not path.exists():
        raise ValueError(f"{out} holds no lab results ({Store.FILENAME} missing); run dropkit lab")
    store = Store(out)
    try:
        rows = {name: res for name, _, res in store.experiments()}
    finally:
        store.close()
    return {n: rows[n] for n in NAMES if n in rows}


def load_protocol(out: str | Path) -> dict[str, Any]:
    """The run's protocol choices (the learning rate and what it rests on), or {}."""
    path = Path(out) / Store.FILENAME
    if not path.exists():
        return {}
    store = Store(out)
    try:
        return store.get_experiment("protocol") or {}
    finally:
        store.close()


def _lr_text(choice: dict[str, Any]) -> str:
    if not choice:
        return "learning rate as configured"
    if not choice.get("searched"):
        return f"learning rate {choice['lr']} (set)"
    rows = ", ".join(f"{r['lr']:g}: {r['score']:.4f}" for r in choice["rows"])
    return (f"learning rate **{choice['lr']:g}**, chosen on the validation split (mean best "
            f"validation log-loss of p=0 and p={choice['p']} after {choice['epochs']} epochs "
            f"per rate: {rows})")


def _config_text(out: Path) -> tuple[dict[str, Any], str]:
    path = out / "config.json"
    cfg = json.loads(path.read_text()) if path.exists() else {}
    if not cfg:
        return cfg, "(config.json missing)"
    m, t = cfg["model"], cfg["train"]
    opt = (f"SGD (momentum {t['momentum']})" if t.get("optimizer") == "sgd" else "Adam")
    extras = []
    if t.get("max_norm"):
        extras.append(f"max-norm {t['max_norm']} on each unit's incoming weights")
    if t.get("lr_decay", 1.0) != 1.0:
        extras.append(f"learning rate x{t['lr_decay']} per epoch")
    stop = (f"early stopping on the validation log-loss (patience {t['patience']} epochs, "
            f"cap {t['epochs']} epochs); every model is judged at its best validation epoch"
            if t.get("patience") else f"no early stopping: every model trains {t['epochs']} "
            "epochs")
    text = (
        f"data **{cfg['data']}**, mode **{cfg['mode']}**, recipe {cfg.get('recipe', 'default')};"
        f" MLP hidden {m['hidden']} (ReLU), input dropout {m['input_p']}, {m['scaling']} "
        f"scaling; {opt}, {_lr_text(load_protocol(out).get('lr', {}))}, batch "
        f"{t['batch_size']}, weight decay {t['weight_decay']}"
        + "".join(f", {e}" for e in extras)
        + f"; a validation split of {t.get('val_fraction', 0):.0%} of the training set "
        f"(never the test set) for every choice; **{stop}**; seed {cfg['seed']}, "
        f"{cfg['seeds']} seed(s) per p in the sweep."
    )
    return cfg, text


def _verdict_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| experiment | verdict | claim | time |", "|---|---|---|---|"]
    for name, r in results.items():
        verdict = "holds" if r["holds"] else "**does not hold**"
        lines.append(f"| {name} | {verdict} | {r['claim']} | {r.get('wall_s', 0):.1f} s |")
    return lines


def build_report(out: str | Path) -> Path:
    """Write figures, report.md, report.html and verdicts.json; return report.html's path."""
    out = Path(out)
    results = load_results(out)
    _, cfg_text = _config_text(out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    md = ["# dropkit lab report", "", cfg_text, "", "## Verdicts", "", *_verdict_rows(results)]
    body = [f"<h1>dropkit lab report</h1><p>{_md_inline(cfg_text)}</p><h2>Verdicts</h2>",
            _table_html(results)]
    for name, r in results.items():
        png = png_bytes(figure(name, r))
        (figdir / f"{name}.png").write_bytes(png)
        verdict = "holds" if r["holds"] else "does not hold"
        caption = (f"**{name}: {verdict}.** {r['claim']}. {r['summary']}. "
                   f"Time: {r.get('wall_s', 0):.1f} s (training {r.get('train_s', 0):.1f} s "
                   f"summed over its trials, shared trials counted in each).")
        md += ["", f"## {name}", "", f"![{name}](figures/{name}.png)", "", caption]
        b64 = base64.b64encode(png).decode()
        body.append(f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" '
                    f'src="data:image/png;base64,{b64}" style="max-width:100%">'
                    f"<p>{_md_inline(caption)}</p>")
    (out / "report.md").write_text("\n".join(md) + "\n")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>dropkit lab report</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}"
            ".no{color:#d62728;font-weight:bold}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    (out / "report.html").write_text(page)
    verdicts = {n: {k: v for k, v in r.items()} for n, r in results.items()}
    (out / "verdicts.json").write_text(json.dumps(verdicts, indent=1) + "\n")
    return out / "report.html"


def _md_inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _table_html(results: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td class='{'' if r['holds'] else 'no'}'>"
        f"{'holds' if r['holds'] else 'does not hold'}</td><td>{html.escape(r['claim'])}</td>"
        f"<td>{r.get('wall_s', 0):.1f} s</td></tr>"
        for n, r in results.items()
    )
    head = "<tr><th>experiment</th><th>verdict</th><th>claim</th><th>time</th></tr>"
    return f"<table>{head}{rows}</table>"
