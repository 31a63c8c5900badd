"""The demo website of SPEC §4: example.org, managed by bob, its contacts owner@example.org and
+15555550100, backing up a small site folder and SQLite database created under
DEMO_SITES_DIR: outside the project tree, which the emergency backup never reads, and allowed
by the development defaults of BACKUP_SOURCE_ROOTS and BACKUP_DATABASE_ALLOW."""

import sqlite3
from pathlib import Path

from django.conf import settings

from accounts.models import User
from backups.models import Website
from recovery.crypto import encrypt_field

PAGES = {
    "index.html": "<!doctype html><title>Example</title><h1>Welcome to example.org</h1>\n",
    "about/index.html": "<!doctype html><title>About</title><p>A small demo site.</p>\n",
    "assets/site.css": "body { font-family: system-ui; margin: 2rem; }\n",
    "uploads/price-list.txt": "Espresso 2.20\nCappuccino 3.10\nCroissant 1.90\n",
}


def seed_website() -> Website:
    root = Path(settings.DEMO_SITES_DIR) / "example.org"
    for relative, content in PAGES.items():
        path = root / "files" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    database = root / "site.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY, "
                           "title TEXT NOT NULL, body TEXT NOT NULL)")
        if not connection.execute("SELECT COUNT(*) FROM posts").fetchone()[0]:
            connection.executemany("INSERT INTO posts (title, body) VALUES (?, ?)", [
                ("Opening hours", "Monday to Saturday, 8 to 18."),
                ("New menu", "Try the pistachio croissant."),
            ])
    connection.close()
    website, _ = Website.objects.update_or_create(address="example.org", defaults={
        "name": "Example café", "manager": User.objects.get(username="bob"),
        "owner_name": "Olga Owner", "verification_email": "owner@example.org",
        "verification_mobile": "+15555550100", "files_dir": str(root / "files"),
        "database_url_encrypted": encrypt_field(f"sqlite:///{database}"),
        "emergency_enabled": True,
    })
    return website
