"""A WordPress-shaped website for the backup tests: a files directory with `wp-config.php`,
themes and uploads (binary too), and a MariaDB database with WordPress's `wp_` tables holding
real rows: Unicode posts, a serialized option, a binary column, a trigger and a routine.

`database_fingerprint` reads every row of every table back, in primary-key order, with the
server's own CHECKSUM TABLE: two databases with the same fingerprint hold the same data."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.connectors.mariadb_server import MariaDBServer, account, quote_identifier, quote_string

SITE_PASSWORD = "wp pa$$ \"word\" #1 \\ 'x'"  # everything an option file must escape

WP_CONFIG = """<?php
/**
 * The base configuration for WordPress
 *
 * @package WordPress
 */

// ** Database settings - You can get this info from your web host ** //
/** The name of the database for WordPress */
define( 'DB_NAME', {name} );

/** Database username */
define( 'DB_USER', {user} );

/** Database password */
define( 'DB_PASSWORD', {password} );

/** Database hostname */
define( 'DB_HOST', {host} );

/** Database charset to use in creating database tables. */
define( 'DB_CHARSET', 'utf8mb4' );

/** The database collate type. Don't change this if in doubt. */
define( 'DB_COLLATE', '' );

define( 'AUTH_KEY',         'put your unique phrase here' );
define( 'SECURE_AUTH_KEY',  'put your unique phrase here' );

$table_prefix = 'wp_';

define( 'WP_DEBUG', false );

if ( ! defined( 'ABSPATH' ) ) {{
\tdefine( 'ABSPATH', __DIR__ . '/' );
}}

require_once ABSPATH . 'wp-settings.php';
"""

TABLES = [
    """CREATE TABLE wp_options (
         option_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         option_name varchar(191) NOT NULL UNIQUE,
         option_value longtext NOT NULL,
         autoload varchar(20) NOT NULL DEFAULT 'yes'
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE wp_posts (
         ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         post_author bigint unsigned NOT NULL DEFAULT 0,
         post_date datetime NOT NULL,
         post_title text NOT NULL,
         post_content longtext NOT NULL,
         post_status varchar(20) NOT NULL DEFAULT 'publish',
         comment_count bigint NOT NULL DEFAULT 0
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE wp_comments (
         comment_ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         comment_post_ID bigint unsigned NOT NULL,
         comment_content text NOT NULL
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE wp_usermeta (
         umeta_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         user_id bigint unsigned NOT NULL,
         meta_key varchar(255),
         meta_value longblob
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # A comment counts itself on its post. Triggers and routines belong to the site's account,
    # as when its plugins create them: another definer's routine is hidden from its dumps.
    """CREATE DEFINER={definer} TRIGGER wp_count_comment AFTER INSERT ON wp_comments FOR EACH ROW
         UPDATE wp_posts SET comment_count = comment_count + 1 WHERE ID = NEW.comment_post_ID""",
    """CREATE DEFINER={definer} FUNCTION wp_published() RETURNS int READS SQL DATA
         RETURN (SELECT COUNT(*) FROM wp_posts WHERE post_status = 'publish')""",
]


@dataclass
class WordPressSite:
    files: Path
    database: str
    user: str
    password: str
    server: MariaDBServer

    @property
    def database_url(self) -> str:
        return (f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@127.0.0.1:{self.server.port}/{quote(self.database, safe='')}")


def make_wordpress_site(server: MariaDBServer, folder: Path, database: str, *,
                        posts: int = 40) -> WordPressSite:
    user = f"{database}_user"[:32]
    server.execute(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    server.execute(f"CREATE DATABASE {quote_identifier(database)} CHARACTER SET utf8mb4")
    server.execute(f"CREATE USER IF NOT EXISTS {account(user)} "
                   f"IDENTIFIED BY {quote_string(SITE_PASSWORD)}")
    server.execute(f"GRANT ALL PRIVILEGES ON {quote_identifier(database)}.* TO {account(user)}")
    for statement in TABLES:
        server.execute(statement.replace("{definer}", account(user)), database=database)
    _fill(server, database, posts)
    files = folder / "files"
    _write_files(files, database, user, server.port)
    return WordPressSite(files, database, user, SITE_PASSWORD, server)


def _fill(server: MariaDBServer, database: str, posts: int) -> None:
    def insert(statement: str, params=None) -> None:
        server.execute(statement, params, database=database)

    insert("INSERT INTO wp_options (option_name, option_value) VALUES (%s, %s), (%s, %s), "
           "(%s, %s)", ["siteurl", "https://example.org", "blogname",
                        "Bakkerij “De Gouden Korst”", "active_plugins",
                        'a:1:{i:0;s:19:"akismet/akismet.php";}'])
    for number in range(1, posts + 1):
        insert("INSERT INTO wp_posts (post_author, post_date, post_title, post_content) "
               "VALUES (1, %s, %s, %s)",
               [f"2026-11-{number % 28 + 1:02d} 08:00:00",
                f"Bericht {number}: broodjes 🥖 en taart",
                "<p>Line one\nLine 'two' with \\ backslash</p>" * number])
    insert("INSERT INTO wp_comments (comment_post_ID, comment_content) VALUES "
           "(1, 'Heerlijk!'), (1, 'Tot morgen'), (2, 'Dank je wel')")
    insert("INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES "
           "(1, 'session_tokens', %s), (1, 'nickname', 'bakker')", [bytes(range(256)) * 4])


def _write_files(files: Path, database: str, user: str, port: int) -> None:
    def php(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    (files / "wp-content" / "themes" / "bakkerij").mkdir(parents=True)
    (files / "wp-content" / "uploads" / "2026" / "11").mkdir(parents=True)
    (files / "wp-config.php").write_text(WP_CONFIG.format(
        name=php(database), user=php(user), password=php(SITE_PASSWORD),
        host=php(f"127.0.0.1:{port}")))
    (files / "index.php").write_text("<?php\ndefine( 'WP_USE_THEMES', true );\n"
                                     "require __DIR__ . '/wp-blog-header.php';\n")
    (files / "wp-content" / "themes" / "bakkerij" / "style.css").write_text(
        "/* Theme Name: Bakkerij */\nbody { color: #333; }\n")
    (files / "wp-content" / "uploads" / "2026" / "11" / "taart.jpg").write_bytes(
        os.urandom(300_000))
    (files / "wp-content" / "uploads" / "2026" / "11" / "menu kaart (1).pdf").write_bytes(
        os.urandom(70_000))
    (files / "wp-content" / "uploads" / ".htaccess").write_text("Options -Indexes\n")


def file_checksums(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def database_fingerprint(server: MariaDBServer, database: str) -> dict[str, object]:
    """Per table: CHECKSUM TABLE and a SHA-256 of every row in primary-key order; plus the
    names of triggers and routines."""
    schema = quote_identifier(database)
    fingerprint: dict[str, object] = {}
    tables = [name for (name,) in server.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "ORDER BY TABLE_NAME", [database])]
    for table in tables:
        (_, checksum), = server.execute(f"CHECKSUM TABLE {schema}.{quote_identifier(table)}")
        rows = server.execute(f"SELECT * FROM {schema}.{quote_identifier(table)} "  # noqa: S608
                              "ORDER BY 1")  # identifiers quoted above
        fingerprint[table] = (checksum, len(rows),
                              hashlib.sha256(repr(rows).encode()).hexdigest())
    fingerprint["triggers"] = sorted(name for (name,) in server.execute(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        [database]))
    fingerprint["routines"] = sorted(name for (name,) in server.execute(
        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
        [database]))
    return fingerprint
