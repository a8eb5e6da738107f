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

from dropkit.lab.experiments import NAMES, REGISTRY
from dropkit.lab.plots import figure, png_bytes
from dropkit.lab.store import Store

__all__ = ["build_report", "load_results"]


def _stored(out: str | Path) -> dict[str, dict[str, Any]]:
    """Every stored result of ``out`` by name (the experiments' and the protocol's)."""
    path = Path(out) / Store.FILENAME
    if not path.exists():
        raise ValueError(f"{out} holds no lab results ({Store.FILENAME} missing); run dropkit lab")
    store = Store(out)
    try:
        return {name: res for name, _, res in store.experiments()}
    finally:
        store.close()


def load_results(out: str | Path) -> dict[str, dict[str, Any]]:
    """Every stored experiment result of ``out``, in report order."""
    rows = _stored(out)
    return {n: rows[n] for n in NAMES if n in rows}


def _lr_text(choice: dict[str, Any]) -> str:
    if not choice:
        return "learning rate as configured"
    if not choice.get("searched"):
        return f"learning rate {choice['lr']} (set)"
    rows = ", ".join(f"{r['lr']:g}: {r['score']:.4f}" for r in choice["rows"])
    return (f"learning rate **{choice['lr']:g}**, chosen on the validation split (mean best "
            f"validation log-loss of p=0 and p={choice['p']} after {choice['epochs']} epochs "
            f"per rate: {rows})")


def _kernels_text(kernels: str | None) -> str:
    if kernels is None:  # (stored before the kernel set was recorded)
        return ""
    same = (" (as the CLI asks for on x86-64: the same bits on any machine that runs them)"
            if kernels == "AVX2" else "")
    return f" Torch's CPU kernels: {kernels}{same}."


def _config_text(out: Path, protocol: dict[str, Any]) -> tuple[dict[str, Any], str]:
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
        f" MLP hidden {m['hidden']} (ReLU), input dropout {m['input_p']}"
        + (" on every model, p = 0 included (p is the hidden layers' rate)"
           if m["input_p"] else "")
        + f", {m['scaling']} "
        f"scaling; {opt}, {_lr_text(protocol.get('lr', {}))}, batch "
        f"{t['batch_size']}, weight decay {t['weight_decay']}"
        + "".join(f", {e}" for e in extras)
        + f"; a validation split of {t.get('val_fraction', 0):.0%} of the training set "
        f"(never the test set) for every choice; **{stop}**; seed {cfg['seed']}, "
        f"{cfg['seeds']} seed(s) per p in the sweep."
        + _kernels_text(protocol.get("cpu_kernels"))
    )
    return cfg, text


def _verdict_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| experiment | verdict | claim | time |", "|---|---|---|---|"]
    for name, r in results.items():
        verdict = "holds" if r["holds"] else "**does not hold**"
        claim = REGISTRY[name].CLAIM
        lines.append(f"| {name} | {verdict} | {claim} | {r.get('wall_s', 0):.1f} s |")
    return lines


_OPENING = (
    "**What dropout does.** While a network trains, dropout switches off each hidden unit "
    "at random (with probability p) on every example, so no unit can rely on particular "
    "others being there; at test time every unit is used, scaled so that its average "
    "contribution is unchanged. The usual claims: it stops a network from memorising its "
    "training set (overfitting), too much of it makes the network too weak to learn "
    "(underfitting), and it behaves like an average of many smaller networks. This page "
    "trains real networks and checks each claim on data."
)
_HOW_TO_READ = (
    "**How to read this page.** Each section states a claim, the rule that decides it, a "
    "sentence on what the numbers show and the numbers themselves, then a figure. A verdict "
    "*holds* when the rule is met on this run's data and *does not hold* otherwise; nothing "
    "is adjusted to make a claim hold. *Error* is the share of test examples classified "
    "wrongly; *log-loss* is how much probability the model gave the right answer (lower is "
    "better, and it punishes confident mistakes); a *standard error* (SE) is the spread a "
    "number would show on another sample of the same size, so differences of a few SE are "
    "real. Every choice (learning rate, when to stop training, the best p) is made on a "
    "*validation* split held out of the training data; the test set is only measured."
)
_CSS = (
    "body{font-family:system-ui,sans-serif;line-height:1.5;max-width:60em;margin:auto;"
    "padding:1em;color:#222}img{max-width:100%;height:auto}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".holds{color:#1a7f37;font-weight:bold}.no{color:#d62728;font-weight:bold}"
    "details{margin:.5em 0}summary{cursor:pointer}"
    "@media (max-width:600px){body{padding:.5em;font-size:15px}td,th{padding:3px}}"
)


def _plain(text: str) -> str:
    return " ".join(text.split())


def _rows_md(rows: list[tuple[str, ...]]) -> list[str]:
    head, *body = rows
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(r) + " |" for r in body]


def _rows_html(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    tds = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                  for r in body)
    return f"<div class='scroll'><table><tr>{th}</tr>{tds}</table></div>"


def build_report(out: str | Path) -> Path:
    """Write figures, report.md, report.html and verdicts.json; return report.html's path.

    The page opens with what dropout does and how to read it; each experiment then gives
    its claim, its rule, a plain sentence on what the result shows, a table of the numbers
    behind it, its figure (embedded: the HTML is self-contained) and the technical summary.
    """
    out = Path(out)
    stored = _stored(out)  # one read of the store: the experiments and the protocol
    results = {n: stored[n] for n in NAMES if n in stored}
    _, cfg_text = _config_text(out, stored.get("protocol", {}))
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    md = ["# dropkit lab report", "", _OPENING, "", _HOW_TO_READ, "", "## Verdicts", "",
          *_verdict_rows(results)]
    body = ["<h1>dropkit lab report</h1>", f"<p>{_md_inline(_OPENING)}</p>",
            f"<p>{_md_inline(_HOW_TO_READ)}</p><h2>Verdicts</h2>", _table_html(results)]
    for name, r in results.items():
        module = REGISTRY[name]
        png = png_bytes(figure(name, r))
        (figdir / f"{name}.png").write_bytes(png)
        verdict = "holds" if r["holds"] else "does not hold"
        plain, rows = module.explain(r)
        rule = _plain(module.RULE)
        detail = (f"{r['summary']}. Time: {r.get('wall_s', 0):.1f} s (training "
                  f"{r.get('train_s', 0):.1f} s summed over its trials, shared trials counted "
                  "in each).")
        md += ["", f"## {name}: {verdict}", "", f"**Claim.** {module.CLAIM}.", "",
               f"**Rule.** {rule}", "", f"**What it shows.** {plain}", "", *_rows_md(rows),
               "", f"![{name}](figures/{name}.png)", "", f"Details: {detail}"]
        b64 = base64.b64encode(png).decode()
        cls = "holds" if r["holds"] else "no"
        body.append(
            f"<h2 id='{html.escape(name)}'>{html.escape(name)}: "
            f"<span class='{cls}'>{verdict}</span></h2>"
            f"<p><b>Claim.</b> {html.escape(module.CLAIM)}.</p>"
            f"<p><b>Rule.</b> {html.escape(rule)}</p>"
            f"<p><b>What it shows.</b> {html.escape(plain)}</p>{_rows_html(rows)}"
            f'<img alt="figure: {html.escape(name)}" src="data:image/png;base64,{b64}">'
            f"<details><summary>Details</summary><p>{_md_inline(detail)}</p></details>")
    md += ["", "## How these numbers were made", "", cfg_text]
    body.append(f"<h2>How these numbers were made</h2><p>{_md_inline(cfg_text)}</p>")
    (out / "report.md").write_text("\n".join(md) + "\n")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>dropkit lab report</title><style>{_CSS}</style></head><body>"
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
        f"<tr><td><a href='#{html.escape(n)}'>{html.escape(n)}</a></td>"
        f"<td class='{'holds' if r['holds'] else 'no'}'>"
        f"{'holds' if r['holds'] else 'does not hold'}</td>"
        f"<td>{html.escape(REGISTRY[n].CLAIM)}</td>"
        f"<td>{r.get('wall_s', 0):.1f} s</td></tr>"
        for n, r in results.items()
    )
    head = "<tr><th>experiment</th><th>verdict</th><th>claim</th><th>time</th></tr>"
    return f"<div class='scroll'><table>{head}{rows}</table></div>"
