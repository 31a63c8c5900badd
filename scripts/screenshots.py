"""Screenshots of the sign-in pages at desktop and phone widths, for looking at changes.

    .venv/bin/python scripts/screenshots.py http://127.0.0.1:8000 USER PASSWORD BACKUP_CODE OUTDIR

Signs USER in with PASSWORD and BACKUP_CODE (a user without a second factor sees the
enrolment page instead of the code page) and saves one PNG per page and width.
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
WIDTHS = {"desktop": 1280, "phone": 390}


def main(base: str, username: str, password: str, code: str, out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for label, width in WIDTHS.items():
            page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
            page.goto(f"{base}/accounts/login/")
            page.screenshot(path=f"{out}/login-{label}.png", full_page=True)
            page.fill("#id_username", username)
            page.fill("#id_password", "wrong")
            page.click("main button[type=submit]")
            page.screenshot(path=f"{out}/login-error-{label}.png", full_page=True)
            page.fill("#id_password", password)
            page.click("main button[type=submit]")
            page.screenshot(path=f"{out}/second-step-{label}.png", full_page=True)
            if code != "-" and "verify" in page.url:
                page.fill("#id_code", code)
                page.click("main button[type=submit]")
                page.goto(f"{base}/accounts/")
                page.screenshot(path=f"{out}/account-{label}.png", full_page=True)
                page.goto(f"{base}/accounts/two-factor/")
                page.screenshot(path=f"{out}/replace-{label}.png", full_page=True)
            page.context.close()
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:6])
