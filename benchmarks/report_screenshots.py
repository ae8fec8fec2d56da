"""Screenshots of the four reports (training run, data checks, model vs rules, funnel) in headless Chromium,
with the presentation acceptance checks measured in the rendered pages.

    python benchmarks/report_screenshots.py OUT_DIR [--n-leads 20000] [--seed 0] [--width 1280]
        [--chromium /usr/bin/chromium]

Builds the demo world, trains in memory, writes each report, then for each page: Chromium (no network) renders a
copy with a small measuring script and dumps the DOM; the script records the page's width against the window, every
table wider than its box (it scrolls inside the page, which is allowed), raw metric keys in the visible text, and
count cells that are not whole numbers; then Chromium takes a screenshot of the whole page height. Prints one
JSON object (pages, PNG paths, measurements, failures) and exits 1 when a check fails.
Needs a Chromium binary (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Headers of columns that hold counts (whole numbers); a header with any of the second words holds averages or
# rates and is left out.
COUNT_WORDS = ("leads", "conversions", "converted", "deals", "opportunities", "won", "lost", "breaching", "open")
NOT_COUNT_WORDS = ("rate", "share", "week", "expected", "days", "hours", "%", "per", "lift", "found", "best",
                   "probability", "percentile", "score", "value", "needed for", "interval")

MEASURE = """
<script>
window.addEventListener('load', function () {
  var out = {};
  var doc = document.documentElement;
  out.viewport = window.innerWidth;
  out.page_width = doc.scrollWidth;
  out.page_height = Math.max(doc.scrollHeight, document.body.scrollHeight);
  out.tables = [];
  document.querySelectorAll('table').forEach(function (t, i) {
    var box = t.parentElement;
    var r = t.getBoundingClientRect();
    var heads = Array.from(t.querySelectorAll('thead th')).map(function (h) { return h.innerText.trim(); });
    var rows = Array.from(t.querySelectorAll('tbody tr')).map(function (tr) {
      return Array.from(tr.children).map(function (td) { return td.innerText.trim(); });
    });
    out.tables.push({index: i, width: Math.round(r.width), right: Math.round(r.right),
                     in_scroll_box: box.classList.contains('table-wrap'),
                     box_width: Math.round(box.clientWidth), scrolls: t.scrollWidth > box.clientWidth + 1,
                     headers: heads, rows: rows});
  });
  out.text = document.body.innerText;
  var pre = document.createElement('pre');
  pre.id = 'measurements';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium_binary(given: str | None) -> str:
    for name in ([given] if given else []) + ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(name) if name and not Path(name).exists() else name
        if path:
            return str(path)
    raise SystemExit("no Chromium binary found (Debian: apt-get install chromium)")


def _chromium(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--force-device-scale-factor=1"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=timeout)


def measure(binary: str, page: Path, width: int, work: Path) -> dict:
    """Render a copy of the page with the measuring script; return what it measured."""
    copy = work / f"measure-{page.parent.name}-{page.name}"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    done = _chromium(binary, f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom",
                     copy.as_uri())
    found = re.search(r'<pre id="measurements">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    if not found:
        raise RuntimeError(f"{page}: no measurements ({done.stderr[-500:]})")
    import html

    return json.loads(html.unescape(found.group(1)))


def screenshot(binary: str, page: Path, png: Path, width: int, height: int) -> Path:
    _chromium(binary, f"--window-size={width},{height}", f"--screenshot={png}", "--virtual-time-budget=5000",
              page.as_uri())
    if not png.exists():
        raise RuntimeError(f"{page}: Chromium wrote no screenshot")
    return png


def raw_keys() -> set[str]:
    """Metric and column keys that must never be shown as they are (they have labels)."""
    from leadscore.presentation.format import COLUMNS, METRICS

    return {k for k in (*METRICS, *COLUMNS) if "_" in k}


def is_count_header(text: str) -> bool:
    low = text.lower()
    words = low.replace(":", " ").split()
    if not words or "->" in low or " to " in f" {low} " or any(w in low for w in NOT_COUNT_WORDS):
        return False
    return words[-1] in COUNT_WORDS or words[0] in COUNT_WORDS


def check(name: str, m: dict, keys: set[str]) -> list[str]:
    problems = []
    if m["page_width"] > m["viewport"]:
        problems.append(f"{name}: page is {m['page_width']} px wide in a {m['viewport']} px window")
    for t in m["tables"]:
        if not t["in_scroll_box"] and t["right"] > m["viewport"]:
            problems.append(f"{name}: table {t['index']} ({', '.join(t['headers'][:3])}...) runs off the page")
        for j, header in enumerate(t["headers"]):
            if not is_count_header(header):
                continue
            bad = [row[j] for row in t["rows"] if j < len(row) and not re.fullmatch(r"[+-]?[\d,]+|n/a|yes|no|", row[j])]
            if bad:
                problems.append(f"{name}: column '{header}' of table {t['index']} holds non-integer counts {bad[:3]}")
        for j, header in enumerate(t["headers"]):  # whole numbers printed with a decimal: float counts
            cells = [row[j] for row in t["rows"] if j < len(row) and row[j] not in ("", "n/a")]
            if cells and all(re.fullmatch(r"[+-]?[\d,]+\.0+", c) for c in cells):
                problems.append(f"{name}: column '{header}' of table {t['index']} prints whole numbers with "
                                f"decimals {cells[:3]}")
    text = m["text"]
    for key in sorted(keys):
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text):
            problems.append(f"{name}: raw key '{key}' in the visible text")
    if re.search(r"(?<![\d.])[1-9]\d{0,2}(,\d{3})*\.000(?!\d)", text):
        problems.append(f"{name}: a whole number printed with three decimals")
    if '{"' in text:
        problems.append(f"{name}: a JSON blob in the visible text")
    return problems


def build_reports(out: Path, n_leads: int, seed: int, say) -> dict[str, Path]:
    """The four reports on the demo world, as the CLI writes them."""
    from leadscore.demo_world import generate_demo_world, write_demo_world
    from leadscore.features.config import TrainConfig
    from leadscore.models.rules import RuleScorer
    from leadscore.presentation.checks import checks_page
    from leadscore.presentation.comparison import write_comparison_report
    from leadscore.presentation.funnel import run_funnel
    from leadscore.presentation.model_report import write_report
    from leadscore.serve.predictor import Predictor
    from leadscore.training.compare import compare_model_and_rules
    from leadscore.training.train import train_model

    say(f"demo world: {n_leads:,} leads, seed {seed}")
    world = generate_demo_world(n_leads=n_leads, seed=seed)
    paths = write_demo_world(world, out / "data")
    truth = world.truth.set_index("lead_id")["true_probability"]
    say("training")
    result = train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=seed), truth=truth)
    pages = {}
    say("training report")
    pages["training"] = write_report(result, out / "training", version="1")["report_html"]
    checks = out / "checks" / "data_checks.html"
    checks.parent.mkdir(parents=True, exist_ok=True)
    checks.write_text(checks_page(result.checks, "Data checks: demo leads"), encoding="utf-8")
    pages["checks"] = checks
    say("model vs rules")
    rules = RuleScorer.load(ROOT / "rules" / "example.yaml")
    comparison = compare_model_and_rules(Predictor(result.bundle), rules, world.leads, world.outcomes, world.events)
    pages["comparison"] = write_comparison_report(comparison, out / "comparison")["html"]
    say("funnel")
    funnel = run_funnel(paths["leads"], paths["outcomes"], paths["stages"], paths["events"], out_dir=out / "funnel",
                        pipeline_path=paths["pipeline"], revenue_target=1_000_000)
    pages["funnel"] = Path(funnel["files"]["html"])
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the PNG screenshots (and the reports themselves)")
    parser.add_argument("--n-leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--max-height", type=int, default=30_000, help="longest screenshot in pixels")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: found on PATH)")
    args = parser.parse_args()
    binary = chromium_binary(args.chromium)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    pages = build_reports(out / "reports", args.n_leads, args.seed, say)
    keys = raw_keys()
    summary: dict = {"pages": {}, "failures": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, page in pages.items():
            say(f"rendering {name}")
            m = measure(binary, page, args.width, Path(tmp))
            height = min(int(m["page_height"]) + 20, args.max_height)
            png = screenshot(binary, page, out / f"{name}.png", args.width, height)
            problems = check(name, m, keys)
            summary["pages"][name] = {
                "html": str(page), "png": str(png), "page_width": m["page_width"], "viewport": m["viewport"],
                "page_height": m["page_height"], "tables": len(m["tables"]),
                "tables_scrolling_in_their_box": sum(t["scrolls"] for t in m["tables"]),
                "problems": problems}
            summary["failures"] += problems
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
