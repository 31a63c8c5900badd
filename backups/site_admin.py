"""What the website page in the admin reads from a website's server, and the choices it offers
on it: the host key the server presents (to pin), the database wp-config.php names (to
confirm). Thin: reading is backups.site_access and backups.archive.remote, every change goes
through backups.custody."""

import json
from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest
from django.utils.html import format_html

from backups import custody, site_access, sources
from backups.archive import ArchiveError, remote
from backups.models import Website
from backups.wordpress import WordPressConfigError

READ_FAILURES = (ArchiveError, WordPressConfigError, sources.SourceRefused, OSError)


@dataclass
class ServerReading:
    """Read once when the page is built; the notes say in words why a choice is not offered."""

    address: str = ""
    presented_fingerprint: str | None = None  # offered for pinning: not the pinned one
    wordpress: dict | None = None  # offered for confirmation: not the confirmed one
    # Why a choice is not offered, in words (shown under it).
    pin_note: str = "Only for a files directory on another server (ssh://)."
    wordpress_note: str = "No wp-config.php at the top of the files directory."

    @classmethod
    def of(cls, website: Website) -> "ServerReading":
        reading = cls()
        if website.pk is None or not website.files_dir:
            reading.wordpress_note = "Set a files directory first."
            return reading
        policy = sources.current_policy()
        if remote.is_ssh_source(website.files_dir):
            try:
                source = policy.check_ssh_source(website.files_dir)
                reading.address = source.address
                key = remote.fetch_host_key(source.host, source.port)
            except READ_FAILURES as failure:
                reading.pin_note = f"The server's host key could not be read: {failure}"
            else:
                if remote.host_key_line(key) == website.ssh_host_key:
                    reading.pin_note = (f"Pinned: {source.address} presents the pinned key "
                                        f"{key.fingerprint}.")
                else:
                    reading.presented_fingerprint = key.fingerprint
        if reading.presented_fingerprint:
            reading.wordpress_note = "wp-config.php is read once the host key is pinned."
            return reading
        try:
            config = site_access.find_wordpress(website, policy)
        except READ_FAILURES as failure:
            reading.wordpress_note = f"wp-config.php: {failure}"
            return reading
        if config is not None and config.summary() == website.wordpress_settings:
            reading.wordpress_note = "Confirmed, and wp-config.php still says the same."
        elif config is not None:
            reading.wordpress = config.summary()
        return reading


def describe_wordpress(summary: dict) -> str:
    port = f":{summary['port']}" if summary.get("port") else ""
    password = "a password" if summary.get("password_set") else "no password"
    return (f"database {summary.get('name')} as {summary.get('user')} on "
            f"{summary.get('host')}{port} with {password}, tables prefixed "
            f"{summary.get('table_prefix') or '(none)'}")


def describe_server_access(website: Website) -> str:
    if not remote.is_ssh_source(website.files_dir):
        return "Not used: the files directory is on this server."
    key = "stored (encrypted)" if website.ssh_private_key_encrypted else "none yet"
    if not website.ssh_host_key:
        return f"Private key: {key}. Host key: not pinned; no backup runs until it is."
    pinned = remote.parse_host_key(website.ssh_host_key).fingerprint
    by = website.ssh_host_key_pinned_by
    at = website.ssh_host_key_pinned_at
    return format_html("Private key: {}. Host key pinned: <code>{}</code> by {} on {}.", key,
                       pinned, by or "?", f"{at:%Y-%m-%d %H:%M} UTC" if at else "?")


def describe_wordpress_confirmation(website: Website) -> str:
    if not website.wordpress_settings:
        return "Not confirmed: the backup uses the database URL as set."
    return (f"Confirmed by {website.wordpress_confirmed_by or '?'} on "
            f"{website.wordpress_confirmed_at:%Y-%m-%d %H:%M} UTC: "
            f"{describe_wordpress(website.wordpress_settings)}.")


def apply_server_choices(request: HttpRequest, website: Website, cleaned: dict) -> None:
    """After the files directory and the database URL were saved (the acting user's fresh code
    was checked by the form): the SSH key, the pinned host key, the WordPress confirmation."""
    if cleaned.get("ssh_private_key"):
        website.refresh_from_db()
        fingerprint = custody.set_ssh_key(website, private_key=cleaned["ssh_private_key"],
                                          passphrase=cleaned.get("ssh_passphrase", ""),
                                          actor=request.user, request=request)
        messages.success(request, f"SSH private key stored (its public key is {fingerprint}).")
    if cleaned.get("pin_host_key"):
        website.refresh_from_db()
        try:
            pinned = custody.pin_host_key(website, shown_fingerprint=cleaned["shown_host_key"],
                                          actor=request.user, request=request)
        except READ_FAILURES as refused:
            messages.error(request, f"Host key not pinned: {refused}")
        else:
            messages.success(request, f"Host key {pinned} pinned.")
    if cleaned.get("use_wordpress"):
        website.refresh_from_db()
        try:
            shown = json.loads(cleaned.get("shown_wordpress") or "null")
            custody.confirm_wordpress(website, shown=shown, actor=request.user,
                                      request=request)
        except (*READ_FAILURES, ValueError) as refused:
            messages.error(request, f"WordPress's database not confirmed: {refused}")
        else:
            messages.success(request, "WordPress's database settings confirmed: "
                                      f"{describe_wordpress(shown)}.")
