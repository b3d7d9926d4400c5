"""Time from send to the first streamed token, as seen by the browser (Debian's Chromium).

Opens the demo page, types a question and presses Enter; an in-page MutationObserver records
when the first piece of the reply appears in the widget and when the finished reply (with its
sources) replaces it. By default the server is started here with an instant scripted generator
(so the figure is hybridesk's own overhead: HTTP, storing, NLU, policy, retrieval, grounding,
live channel, SSE, rendering); ``--server URL`` measures a running hybridesk instead (e.g. one
started by ``make demo``, i.e. with the real models).

Usage: .venv/bin/python benchmarks/widget_first_token.py [--messages 20] [--new-conversations 5]
                                                          [--server http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "web"), str(REPO / "benchmarks")]

from _common import scratch_dir, summary, table, write_json  # noqa: E402

W = "#hybridesk-widget"
QUESTIONS = ["How long do I have to return a lamp?", "How long does standard delivery take?"]
PROBE = """() => {
  const root = document.getElementById('hybridesk-widget').shadowRoot;
  window.__first = []; window.__done = []; window.__t0 = 0; window.__seenFirst = false;
  root.querySelector('textarea').addEventListener('keydown', e => {
    if (e.key === 'Enter') { window.__t0 = performance.now(); window.__seenFirst = false;
      window.__bots = root.querySelectorAll('.msg.bot[data-id]:not(.greeting)').length; }
  }, true);
  new MutationObserver(() => {
    if (!window.__t0) return;
    const busy = root.querySelector('.msg.bot[aria-busy=true] .text');
    if (!window.__seenFirst && busy && busy.textContent) {
      window.__seenFirst = true; window.__first.push(performance.now() - window.__t0);
    }
    if (root.querySelectorAll('.msg.bot[data-id]:not(.greeting)').length > window.__bots) {
      const t = performance.now() - window.__t0;
      if (!window.__seenFirst) window.__first.push(t); // tokens and reply landed in one paint
      window.__done.push(t); window.__t0 = 0;
    }
  }).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def ask(page, text: str, n_done: int) -> None:
    page.fill(f"{W} textarea", text)
    page.press(f"{W} textarea", "Enter")
    page.wait_for_function(f"() => window.__done.length >= {n_done}", timeout=120_000)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20, help="messages in one ongoing conversation")
    ap.add_argument("--new-conversations", type=int, default=5, help="first messages of fresh conversations")
    ap.add_argument("--server", default=None, help="measure this running server instead of a local one")
    ap.add_argument("--chromium", default=os.environ.get("HYBRIDESK_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        url = args.server
        if url is None:
            from web_fakes import ServerThread, build_app, build_services

            services = build_services(scratch_dir("hybridesk-bench-"), delay=0.0)
            url = stack.enter_context(ServerThread(build_app(services))).url
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        stack.callback(browser.close)
        ongoing_first: list[float] = []
        ongoing_done: list[float] = []
        fresh_first: list[float] = []
        fresh_done: list[float] = []
        for k in range(args.new_conversations + 1):
            context = browser.new_context()
            page = context.new_page()
            page.goto(url.rstrip("/") + "/demo")
            page.click(f"{W} .launcher")
            page.evaluate(PROBE)
            n = args.messages + 2 if k == 0 else 1  # the first conversation also warms up, then runs on
            for i in range(n):
                ask(page, QUESTIONS[i % len(QUESTIONS)], i + 1)
            first = page.evaluate("() => window.__first")
            done = page.evaluate("() => window.__done")
            if k == 0:
                ongoing_first, ongoing_done = first[2:], done[2:]
            else:
                fresh_first.append(first[0])
                fresh_done.append(done[0])
            context.close()

    rows = [
        {"measure": "first token, ongoing chat", **summary(ongoing_first)},
        {"measure": "full reply, ongoing chat", **summary(ongoing_done)},
        {"measure": "first token, new chat", **summary(fresh_first)},
        {"measure": "full reply, new chat", **summary(fresh_done)},
    ]
    print(table(rows))
    load = os.getloadavg()[0]
    print(
        f"\n(ms from pressing Enter; server: {args.server or 'local, instant scripted generator'}; "
        f"1-min load average {load:.1f} on {os.cpu_count()} cores)"
    )
    result = {
        "rows": rows,
        "server": args.server or "local-scripted",
        "load_average_1min": load,
        "cpu_count": os.cpu_count(),
    }
    write_json("widget_first_token", result)
    return result


if __name__ == "__main__":
    main()
