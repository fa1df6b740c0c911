"""The web console in a real browser (headless Chromium, driven by
Playwright), against a running weir: sign in with the token, see the running
job and its operator graph with each operator's figures, suspend it and see it suspended, resume it, run a
query in the SQL box and see its rows, and a bad one with its position.
Screenshots go to the folder given.

    python3 console_test.py <http base url> <api token> <screenshot folder>

Every wait is a poll with a generous deadline (the console refreshes every
two seconds); nothing asserts on time.
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

WAIT_MS = 120_000


def main(base: str, token: str, shots: str) -> None:
    os.makedirs(shots, exist_ok=True)
    shot = lambda page, name: page.screenshot(path=os.path.join(shots, name), full_page=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")

        # The API wants the token: the console asks for it.
        expect(page.locator("#token-dialog")).to_be_visible(timeout=WAIT_MS)
        shot(page, "00-token.png")
        page.fill("#token-input", token)
        page.click("#token-form button[type=submit]")

        # The jobs list with the running job.
        row = page.locator('#jobs tr[data-job="per_second"]')
        expect(row.locator(".pill")).to_have_text("running", timeout=WAIT_MS)
        # Rows per second appear from the second poll on.
        expect(row.locator("td").nth(3)).to_contain_text("/s", timeout=WAIT_MS)
        shot(page, "01-jobs.png")

        # The job's page: its graph, checkpoints, events and log.
        row.locator("a").click()
        expect(page.locator("#job-name .pill")).to_have_text("running", timeout=WAIT_MS)
        graph = page.locator("#graph")
        expect(graph.locator('.node[data-kind="StreamSource"]')).to_have_count(1, timeout=WAIT_MS)
        expect(graph.locator('.node[data-kind="StreamWindowAggregate"]')).to_have_count(1)
        expect(graph.locator('.node[data-kind="StreamMaterialize"]')).to_have_count(1)
        # Per-operator figures from the runtime: rows per second, watermark,
        # state and a backpressure bar on the tasks; stateless operators say
        # which task runs them.
        source = graph.locator('.node[data-kind="StreamSource"]')
        aggregate = graph.locator('.node[data-kind="StreamWindowAggregate"]')
        view = graph.locator('.node[data-kind="StreamMaterialize"]')
        expect(source.locator(".fig.rows")).to_have_text(re.compile(r"out [\d.,]+[kM]?/s"), timeout=WAIT_MS)
        expect(source.locator(".fig.more")).to_contain_text(re.compile(r"wm \d\d:\d\d:\d\d"), timeout=WAIT_MS)
        expect(aggregate.locator(".fig.rows")).to_have_text(re.compile(r"in [\d.,]+[kM]?/s · out"), timeout=WAIT_MS)
        expect(aggregate.locator(".fig.more")).to_contain_text(re.compile(r"wm \d\d:\d\d:\d\d · [\d.]+ [KMG]?B · [\d,]+ keys"), timeout=WAIT_MS)
        expect(view.locator(".fig.rows")).to_have_text(re.compile(r"in [\d.,]+[kM]?/s"), timeout=WAIT_MS)
        for task in (source, aggregate):
            expect(task.locator("rect.bp")).to_have_count(1, timeout=WAIT_MS)
            expect(task.locator(".bp-text")).to_contain_text(re.compile(r"backpressured \d+%"))
            assert re.search(r"\bbp-(ok|low|high)\b", task.get_attribute("class")), task.get_attribute("class")
        expect(graph.locator('.node[data-kind="StreamExchange"] .fig.rows')).to_have_text("runs in the source task")
        expect(page.locator("#checkpoint-chart .cbar").first).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#events")).to_be_visible()
        expect(page.locator("#logs")).to_contain_text("job status changed", timeout=WAIT_MS)
        shot(page, "02-job-running.png")

        # Suspend: the page shows it suspended, with its suspend savepoint.
        page.click("#suspend")
        expect(page.locator("#job-name .pill")).to_have_text("suspended", timeout=WAIT_MS)
        expect(page.locator("#savepoints")).to_contain_text("suspend", timeout=WAIT_MS)
        shot(page, "03-job-suspended.png")

        # Resume, then take a savepoint by the button.
        page.click("#resume")
        expect(page.locator("#job-name .pill")).to_have_text("running", timeout=WAIT_MS)
        page.click("#savepoint")
        expect(page.locator("#notice")).to_contain_text("Savepoint per_second_", timeout=WAIT_MS)
        expect(page.locator("#savepoints")).to_contain_text("user", timeout=WAIT_MS)
        shot(page, "04-job-resumed.png")

        # The catalog.
        page.click('nav a[data-nav="catalog"]')
        expect(page.locator('[data-object="bid"]')).to_contain_text("date_time", timeout=WAIT_MS)
        shot(page, "05-catalog.png")

        # The SQL box: rows, then an error with its position.
        page.click('nav a[data-nav="sql"]')
        page.fill("#sql", "SELECT window_start, c FROM per_second ORDER BY window_start LIMIT 5")
        page.click("#run")
        expect(page.locator("#sql-rows tbody tr")).to_have_count(5, timeout=WAIT_MS)
        expect(page.locator("#sql-rows thead")).to_contain_text("window_start")
        shot(page, "06-sql-rows.png")
        page.fill("#sql", "SELECT window_start,\n       count(*)\nFROM per_secnd\nGROUP BY 1")
        page.click("#run")
        expect(page.locator("#sql-error")).to_contain_text("42P01", timeout=WAIT_MS)
        expect(page.locator("#sql-error-position")).to_contain_text("line 3: FROM per_secnd")
        expect(page.locator("#sql-error-position")).to_contain_text("^ position")
        shot(page, "07-sql-error.png")

        assert not errors, f"the page raised: {errors}"
        browser.close()
    print("console test passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
