"""The archive's layout, shared by the writer and the verifier (format version 1):

    files/<path>                 every regular file of the files directory, in name order
    database/database.sqlite3    an SQLite online-backup copy, or
    database/database.pg_dump    `pg_dump --format=custom` output (restore with pg_restore), or
    database/database.sql        `mariadb-dump`/`mysqldump` output (restore with the mariadb client)
    manifest.json                last, as its checksums are known only once the rest is written

as a POSIX pax tar stream compressed by gzip at level 6. A MariaDB/MySQL dump's data is a gzip
member of its own (level 1, compressed while the dump is made): the file is a multi-member gzip
stream, one stream to every gzip reader (RFC 1952).
"""

import re

FORMAT = "breakglass-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FILES_PREFIX = "files/"
SQLITE_MEMBER = "database/database.sqlite3"
PG_DUMP_MEMBER = "database/database.pg_dump"
MYSQL_DUMP_MEMBER = "database/database.sql"
CHUNK = 1 << 20
# `<archive>.partial-<token>` and what hangs off it (a database dump, SQLite's journal).
PARTIAL_NAME = re.compile(r"\.partial-[0-9a-f]{16}(\.|$)")


class ArchiveError(Exception):
    """The backup cannot be made (missing source, failed dump, name taken); nothing was left."""
