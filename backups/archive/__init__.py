"""The backup archive (SPEC §2.6): one `.tar.gz` holding a website's files, a database dump and
a `manifest.json` with every checksum (see `layout`), written so that a crash never leaves a
partial file under the final name; and its verification. Plain Python without Django, so that
`verify_backup` runs where the server's database is down."""

from .layout import ArchiveError
from .verifying import VerifyReport, verify_archive
from .writing import ArchiveResult, clean_partials, write_archive

__all__ = ["ArchiveError", "ArchiveResult", "VerifyReport", "clean_partials", "verify_archive",
           "write_archive"]
