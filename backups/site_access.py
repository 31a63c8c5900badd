"""How the backup reaches a website's data: its stored (encrypted) database URL and SSH key,
and for a WordPress site the database its wp-config.php names.

A WordPress site's database settings are read from wp-config.php (backups.wordpress, no PHP
is run) and confirmed once by the manager. At each backup they are read again: the hosting
company may rotate the password, which the backup follows; but another database, user or
server than the confirmed one stops the backup until the manager confirms again."""

import os

from backups import sources
from backups.archive import remote
from backups.models import Website
from backups.wordpress import (
    MAX_CONFIG_BYTES,
    WordPressConfig,
    WordPressConfigError,
    read_wp_config_bytes,
    read_wp_config_file,
)

WP_CONFIG = "wp-config.php"
# What the manager confirmed and a later wp-config.php must still say.
CONFIRMED_KEYS = ("name", "user", "host", "port")


class WordPressChanged(WordPressConfigError):
    """wp-config.php no longer names the database the manager confirmed."""


def database_url(website: Website) -> str | None:
    """The stored database URL, decrypted."""
    if not website.database_url_encrypted:
        return None
    from recovery.crypto import decrypt_field

    return decrypt_field(website.database_url_encrypted)


def ssh_credentials(website: Website) -> remote.SshCredentials:
    from recovery.crypto import decrypt_field

    if not website.ssh_private_key_encrypted:
        raise sources.SourceRefused("no SSH private key is set for this website: the manager "
                                    "sets one on the website's page")
    return remote.SshCredentials(
        private_key=decrypt_field(website.ssh_private_key_encrypted),
        passphrase=(decrypt_field(website.ssh_passphrase_encrypted)
                    if website.ssh_passphrase_encrypted else ""),
        host_key=website.ssh_host_key)


def find_wordpress(website: Website, policy: sources.SourcePolicy, *,
                   site: remote.RemoteSite | None = None) -> WordPressConfig | None:
    """The settings of the wp-config.php at the top of the website's files directory; None
    when there is none. WordPressConfigError when it cannot be read; SourceRefused or an
    ArchiveError when the folder or its server cannot be."""
    files_dir = website.files_dir
    if not files_dir:
        return None
    if not remote.is_ssh_source(files_dir):
        path = policy.check_files_dir(files_dir) / WP_CONFIG
        return read_wp_config_file(path) if os.path.lexists(path) else None
    source = policy.check_ssh_source(files_dir)
    if site is None:
        with remote.RemoteSite(source, ssh_credentials(website)) as connected:
            return find_wordpress(website, policy, site=connected)
    folder = site.real_folder()
    policy.check_remote_folder(source, folder)
    where = f"{folder.rstrip('/')}/{WP_CONFIG}"
    data = site.read_file(where, MAX_CONFIG_BYTES + 1)
    return None if data is None else read_wp_config_bytes(data, f"{source.address}:{where}")


def backup_database_url(website: Website, policy: sources.SourcePolicy, *,
                        site: remote.RemoteSite | None = None) -> str | None:
    """The database URL this backup dumps (see the module's docstring)."""
    confirmed = website.wordpress_settings
    if not confirmed:
        return database_url(website)
    config = find_wordpress(website, policy, site=site)
    if config is None:
        raise WordPressChanged("wp-config.php is gone from the files directory; the manager "
                               "confirms the database again (or sets it by hand).")
    now = config.summary()
    if any(now.get(key) != confirmed.get(key) for key in CONFIRMED_KEYS):
        raise WordPressChanged(
            f"wp-config.php now names the database {_named(now)}, not {_named(confirmed)} "
            "that the manager confirmed; the manager confirms it again.")
    return config.database_url()


def _named(settings: dict) -> str:
    port = f":{settings['port']}" if settings.get("port") else ""
    return f"{settings.get('name')} as {settings.get('user')} on {settings.get('host')}{port}"
