"""Reading a WordPress site's database settings from its wp-config.php without running PHP:
what PHP would define is read exactly, what only PHP could know is refused with a sentence the
website manager understands."""

import os
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups.wordpress import (
    MAX_CONFIG_BYTES,
    WordPressConfig,
    WordPressConfigError,
    read_wp_config,
    read_wp_config_file,
)

HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

# wp-config-sample.php of WordPress 6.x, as the installer copies it.
SAMPLE = """<?php
/**
 * The base configuration for WordPress
 *
 * The wp-config.php creation script uses this file during the installation.
 * You don't have to use the website, you can copy this file to "wp-config.php"
 * and fill in the values.
 *
 * This file contains the following configurations:
 *
 * * Database settings
 * * Secret keys
 * * Database table prefix
 * * ABSPATH
 *
 * @link https://developer.wordpress.org/advanced-administration/wordpress/wp-config/
 *
 * @package WordPress
 */

// ** Database settings - You can get this info from your web host ** //
/** The name of the database for WordPress */
define( 'DB_NAME', 'database_name_here' );

/** Database username */
define( 'DB_USER', 'username_here' );

/** Database password */
define( 'DB_PASSWORD', 'password_here' );

/** Database hostname */
define( 'DB_HOST', 'localhost' );

/** Database charset to use in creating database tables. */
define( 'DB_CHARSET', 'utf8mb4' );

/** The database collate type. Don't change this if in doubt. */
define( 'DB_COLLATE', '' );

/**#@+
 * Authentication unique keys and salts.
 *
 * Change these to different unique phrases! You can generate these using
 * the {@link https://api.wordpress.org/secret-key/1.1/salt/ WordPress.org secret-key service}.
 *
 * You can change these at any point in time to invalidate all existing cookies.
 * This will force all users to have to log in again.
 *
 * @since 2.6.0
 */
define( 'AUTH_KEY',         'put your unique phrase here' );
define( 'SECURE_AUTH_KEY',  'put your unique phrase here' );
define( 'LOGGED_IN_KEY',    'put your unique phrase here' );
define( 'NONCE_KEY',        'put your unique phrase here' );
define( 'AUTH_SALT',        'put your unique phrase here' );
define( 'SECURE_AUTH_SALT', 'put your unique phrase here' );
define( 'LOGGED_IN_SALT',   'put your unique phrase here' );
define( 'NONCE_SALT',       'put your unique phrase here' );

/**#@-*/

/**
 * WordPress database table prefix.
 *
 * You can have multiple installations in one database if you give each
 * a unique prefix. Only numbers, letters, and underscores please!
 *
 * At the installation time, database tables are created with the specified prefix.
 * Changing this value after WordPress is installed will make your site think
 * it has not been installed.
 *
 * @link https://developer.wordpress.org/advanced-administration/wordpress/wp-config/#table-prefix
 */
$table_prefix = 'wp_';

/**
 * For developers: WordPress debugging mode.
 *
 * Change this to true to enable the display of notices during development.
 * It is strongly recommended that plugin and theme developers use WP_DEBUG
 * in their development environments.
 *
 * For information on other constants that can be used for debugging,
 * visit the documentation.
 *
 * @link https://developer.wordpress.org/advanced-administration/debug/debug-wordpress/
 */
define( 'WP_DEBUG', false );

/* Add any custom values between this line and the "stop editing" line. */



/* That's all, stop editing! Happy publishing. */

/** Absolute path to the WordPress directory. */
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}

/** Sets up WordPress vars and included files. */
require_once ABSPATH . 'wp-settings.php';
"""

SETTINGS = """<?php
define( 'DB_NAME', 'wordpress' );
define( 'DB_USER', 'wp_user' );
define( 'DB_PASSWORD', 'secret' );
define( 'DB_HOST', 'localhost' );
$table_prefix = 'wp_';
"""


def config_with(line: str, replacing: str | None = None) -> WordPressConfig:
    """SETTINGS with the line that sets `replacing` swapped for `line` (or `line` appended)."""
    kept = [kept for kept in SETTINGS.splitlines() if replacing is None
            or not (f"'{replacing}'" in kept or kept.startswith(replacing))]
    return read_wp_config("\n".join([*kept, line]) + "\n")


def refusal(line: str, replacing: str | None = None) -> str:
    with pytest.raises(WordPressConfigError) as refused:
        config_with(line, replacing)
    return str(refused.value)


def php_single_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def php_double_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


# The WordPress sample, as installed


def test_the_wordpress_sample_is_read_as_wordpress_reads_it():
    config = read_wp_config(SAMPLE)
    assert config == WordPressConfig(
        name="database_name_here", user="username_here", password="password_here",
        host="localhost", port=None, socket=None, table_prefix="wp_", charset="utf8mb4")


def test_the_settings_of_the_brief_are_read():
    config = read_wp_config("""<?php
        define( 'DB_NAME', 'wordpress' );
        define("DB_USER", "wp_user");
        define('DB_PASSWORD', 'p@ss\\'word');
        define( 'DB_HOST', 'localhost:3307' );     // or 'localhost:/var/run/mysqld/mysqld.sock'
        $table_prefix = 'wp_';
    """)
    assert (config.name, config.user, config.password) == ("wordpress", "wp_user", "p@ss'word")
    assert (config.host, config.port, config.socket) == ("localhost", 3307, None)


def test_charset_is_none_when_wp_config_leaves_it_out():
    assert read_wp_config(SETTINGS).charset is None


# Comments and the text around PHP


@pytest.mark.parametrize("commented", [
    "// define( 'DB_NAME', 'old_site' );",
    "# define( 'DB_NAME', 'old_site' );",
    "/* define( 'DB_NAME',\n   'old_site' ); */",
    "/**\n * define( 'DB_NAME', 'old_site' );\n */",
])
def test_a_commented_out_define_with_another_value_is_no_conflict(commented):
    assert config_with(commented).name == "wordpress"


@pytest.mark.parametrize("commented", [
    "// define( 'DB_NAME', 'old_site' );",
    "# define( 'DB_NAME', 'old_site' );",
    "/*\ndefine( 'DB_NAME', 'old_site' );\n*/",
])
def test_a_commented_out_define_is_not_read(commented):
    assert "does not set DB_NAME" in refusal(commented, replacing="DB_NAME")


def test_comment_markers_inside_strings_are_part_of_the_value():
    config = config_with("define( 'DB_PASSWORD', 'a//b#c/*d?>e' );", replacing="DB_PASSWORD")
    assert config.password == "a//b#c/*d?>e"


def test_text_outside_the_php_tags_is_not_php():
    text = "define('DB_NAME', 'html');\n" + SETTINGS + "?>\n<p>define('DB_NAME', 'page');</p>\n"
    assert read_wp_config(text).name == "wordpress"


def test_a_line_comment_ends_at_the_closing_tag():
    text = SETTINGS.replace("<?php", "<?php // setup ?>\n<?php", 1)
    assert read_wp_config(text).name == "wordpress"


def test_a_heredoc_is_not_read_as_code():
    heredoc = "$help = <<<EOT\nDon't define( 'DB_NAME', 'example' );\nEOT;"
    assert config_with(heredoc).name == "wordpress"


def test_data_after_halt_compiler_is_not_read():
    assert config_with("__halt_compiler(); define( 'DB_NAME', 'data' );").name == "wordpress"


# The forms of define() and of string literals


def test_define_in_any_case_and_spacing_is_read():
    line = "DEFINE\n(\n  \"DB_NAME\" /* the shop */ ,\t'shop'\n)\n;"
    assert config_with(line, replacing="DB_NAME").name == "shop"


def test_a_define_guarded_by_defined_is_read():
    line = "defined( 'DB_NAME' ) || define( 'DB_NAME', 'shop' );"
    assert config_with(line, replacing="DB_NAME").name == "shop"


@pytest.mark.parametrize("call", ["$settings->define( 'DB_NAME', 'other' );",
                                  "Config::define( 'DB_NAME', 'other' );",
                                  "function define( $name, $value ) {}"])
def test_a_define_that_is_not_php_s_own_is_ignored(call):
    assert config_with(call).name == "wordpress"


def test_single_quoted_strings_know_only_two_escapes():
    line = r"define( 'DB_PASSWORD', 'a\'b\\c\nd\$e' );"
    assert config_with(line, replacing="DB_PASSWORD").password == "a'b\\c\\nd\\$e"


def test_double_quoted_strings_know_php_s_escapes():
    line = r'define( "DB_PASSWORD", "a\tb\n\\\"\$x\x41\101\u{e9}\q{x}" );'
    assert config_with(line, replacing="DB_PASSWORD").password == 'a\tb\n\\"$xAAé\\q{x}'


def test_hex_escapes_are_bytes_of_utf_8_as_in_php():
    line = r'define( "DB_PASSWORD", "caf\xc3\xa9" );'
    assert config_with(line, replacing="DB_PASSWORD").password == "café"


def test_an_unrelated_string_with_variables_does_not_matter():
    line = """define( 'WP_HOME', "https://{$_SERVER["HTTP_HOST"]}/$path" );"""
    assert config_with(line).name == "wordpress"


def test_a_string_that_never_ends_is_refused():
    assert "string that never ends (from line 7)" in refusal("define( 'WP_DEBUG', 'on );")


# What only PHP could know


@pytest.mark.parametrize("value", ['"pass$word"', '"{$secret}"', '"${secret}"',
                                   """"x{$keys['db']}y\""""])
def test_a_variable_inside_double_quotes_is_refused(value):
    message = refusal(f"define( 'DB_PASSWORD', {value} );", replacing="DB_PASSWORD")
    assert message == ("DB_PASSWORD is not a plain string in wp-config.php (it takes the value "
                       "of a PHP variable inside double quotes); set the database URL by hand "
                       "instead.")


def test_a_value_read_from_the_environment_is_refused():
    message = refusal("define( 'DB_PASSWORD', getenv( 'DB_PASSWORD' ) );",
                      replacing="DB_PASSWORD")
    assert message == ("DB_PASSWORD is not a plain string in wp-config.php (it is computed by "
                       "PHP); set the database URL by hand instead.")


@pytest.mark.parametrize("value", ["'db' . '.example.org'", "'db' . $suffix", "DB_SERVER",
                                   "$_ENV['DB_HOST'] ?? 'localhost'", "`hostname`"])
def test_a_computed_db_host_is_refused(value):
    message = refusal(f"define( 'DB_HOST', {value} );", replacing="DB_HOST")
    assert message.startswith("DB_HOST is not a plain string in wp-config.php (")


@pytest.mark.parametrize("line", ["$table_prefix = 'wp_' . $blog_id;", "$table_prefix .= '2_';",
                                  "$table_prefix = getenv( 'PREFIX' );"])
def test_a_computed_table_prefix_is_refused(line):
    assert refusal(line).startswith("$table_prefix is not a plain string in wp-config.php (")


def test_a_table_prefix_that_is_only_read_is_no_assignment():
    assert config_with("if ( $table_prefix === 'old_' ) { $x = $table_prefix; }").table_prefix \
        == "wp_"


def test_a_define_with_a_computed_name_is_refused():
    assert "whose name is computed by PHP (line 7)" in refusal("define( $name, 'shop' );")


def test_two_different_values_in_two_branches_are_refused():
    message = refusal("if ( WP_ENV === 'staging' ) { define( 'DB_NAME', 'staging' ); }\n"
                      "else { define( 'DB_NAME', 'live' ); }", replacing="DB_NAME")
    assert message.startswith("DB_NAME is set twice in wp-config.php")
    message = refusal("if ( $staging ) {\n    define( 'DB_HOST', 'db2' );\n}")
    assert message == ("DB_HOST is set twice in wp-config.php with different values (lines 5 "
                       "and 8); only PHP knows which one applies, so set the database URL by "
                       "hand instead.")


def test_the_same_value_defined_twice_is_accepted():
    config = config_with("if ( ! defined( 'DB_HOST' ) ) { define( 'DB_HOST', \"localhost\" ); }")
    assert config.host == "localhost"


def test_two_different_table_prefixes_are_refused():
    assert "$table_prefix is set twice" in refusal("$table_prefix = 'shop_';")


# Missing and invalid settings


@pytest.mark.parametrize("setting", ["DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST",
                                     "$table_prefix"])
def test_each_missing_setting_is_named(setting):
    assert refusal("", replacing=setting) == (
        f"wp-config.php does not set {setting}, which WordPress needs to reach its database; "
        "check that this is the site's own wp-config.php or set the database URL by hand "
        "instead.")


def test_every_missing_setting_is_named_at_once():
    with pytest.raises(WordPressConfigError, match="does not set DB_NAME and DB_USER and "):
        read_wp_config("<?php\ndefine( 'WP_DEBUG', true );\n")


def test_an_empty_password_is_a_password():
    config = config_with("define( 'DB_PASSWORD', '' );", replacing="DB_PASSWORD")
    assert config.password == ""
    assert config.summary()["password_set"] is False


def test_an_empty_database_name_is_refused():
    assert "DB_NAME in wp-config.php is empty" in refusal("define( 'DB_NAME', '' );", "DB_NAME")


@pytest.mark.parametrize("prefix", ["wp-", "wp_ ", "wp_;DROP", "wé_"])
def test_a_table_prefix_wordpress_would_refuse_is_refused(prefix):
    message = refusal(f"$table_prefix = {php_single_quoted(prefix)};", replacing="$table_prefix")
    assert "may hold only letters, digits and underscores" in message


# DB_HOST, as wpdb::parse_db_host reads it


@pytest.mark.parametrize(("db_host", "host", "port", "socket"), [
    ("localhost", "localhost", None, None),
    ("127.0.0.1", "127.0.0.1", None, None),
    ("db.example.org", "db.example.org", None, None),
    ("localhost:3307", "localhost", 3307, None),
    ("localhost:", "localhost", None, None),
    ("localhost:/var/run/mysqld/mysqld.sock", "localhost", None, "/var/run/mysqld/mysqld.sock"),
    (":/run/mysqld.sock", "localhost", None, "/run/mysqld.sock"),
    ("db:3307:/run/mysqld.sock", "db", 3307, "/run/mysqld.sock"),
    ("", "localhost", None, None),
    (":3307", "localhost", 3307, None),
    ("[::1]:3306", "::1", 3306, None),
    ("[2001:db8::5]", "2001:db8::5", None, None),
    ("::1", "::1", None, None),
])
def test_db_host_forms(db_host, host, port, socket):
    config = config_with(f"define( 'DB_HOST', '{db_host}' );", replacing="DB_HOST")
    assert (config.host, config.port, config.socket) == (host, port, socket)


@pytest.mark.parametrize("db_host", ["db:mysql", "db:3306x", "db:70000", "[::1]:port"])
def test_a_db_host_wordpress_would_misread_is_refused(db_host):
    message = refusal(f"define( 'DB_HOST', '{db_host}' );", replacing="DB_HOST")
    assert message.startswith(f"DB_HOST in wp-config.php ('{db_host}') is not a host, ")


# What the backup and the manager get


def test_the_database_url_quotes_every_part():
    config = config_with("define( 'DB_PASSWORD', 'p@ss:w/rd%' );", replacing="DB_PASSWORD")
    assert config.database_url() == "mysql://wp_user:p%40ss%3Aw%2Frd%25@localhost/wordpress"


def test_the_database_url_keeps_the_port_and_brackets_an_ipv6_address():
    config = config_with("define( 'DB_HOST', '[::1]:3307' );", replacing="DB_HOST")
    assert config.database_url() == "mysql://wp_user:secret@[::1]:3307/wordpress"


def test_a_socket_has_no_database_url():
    config = config_with("define( 'DB_HOST', 'localhost:/run/mysqld.sock' );", "DB_HOST")
    with pytest.raises(WordPressConfigError, match=r"socket /run/mysqld\.sock, but the emergency "
                                                   "backup connects over the network"):
        config.database_url()


def test_the_summary_and_the_repr_never_show_the_password():
    config = read_wp_config(SAMPLE)
    assert config.summary() == {"name": "database_name_here", "user": "username_here",
                                "host": "localhost", "port": None, "table_prefix": "wp_",
                                "charset": "utf8mb4", "password_set": True}
    assert "password_here" not in repr(config)
    assert "password_here" not in str(config.summary())


# Reading the file


def test_a_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "wp-config.php"
    path.write_bytes(b"\xef\xbb\xbf" + SAMPLE.replace("password_here", "pässwörd").encode())
    assert read_wp_config_file(path).password == "pässwörd"


def test_a_file_over_one_mebibyte_is_refused(tmp_path):
    path = tmp_path / "wp-config.php"
    path.write_bytes(SAMPLE.encode() + b"/*" + b"x" * MAX_CONFIG_BYTES + b"*/")
    with pytest.raises(WordPressConfigError, match="larger than 1 MiB"):
        read_wp_config_file(path)


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path):
    path = tmp_path / "wp-config.php"
    path.write_bytes(SAMPLE.encode().ljust(MAX_CONFIG_BYTES, b"\n"))
    assert read_wp_config_file(path).name == "database_name_here"


def test_a_file_that_is_not_utf_8_is_refused(tmp_path):
    path = tmp_path / "wp-config.php"
    path.write_bytes(SAMPLE.replace("password_here", "p\xe4ss").encode("latin-1"))
    with pytest.raises(WordPressConfigError, match="is not UTF-8 text"):
        read_wp_config_file(path)


def test_a_missing_file_is_refused_with_a_sentence(tmp_path):
    with pytest.raises(WordPressConfigError, match=r"cannot be read \(No such file or"):
        read_wp_config_file(tmp_path / "wp-config.php")


def test_a_pipe_under_the_name_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "wp-config.php")
    with pytest.raises(WordPressConfigError, match="is not a regular file"):
        read_wp_config_file(tmp_path / "wp-config.php")


# Any value


PRINTABLE = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40)
ANY_VALUE = st.one_of(PRINTABLE, st.lists(st.sampled_from(
    ["'", '"', "\\", "\\'", "$", "{$", "${", "?>", "/*", "//", "#", "é", "😀"]), max_size=8
).map("".join))


@HYPOTHESIS
@given(password=ANY_VALUE, user=ANY_VALUE)
def test_any_single_quoted_value_is_read_exactly(password, user):
    text = SAMPLE.replace("'password_here'", php_single_quoted(password)).replace(
        "'username_here'", php_single_quoted(user))
    config = read_wp_config(text)
    assert (config.password, config.user) == (password, user)


@HYPOTHESIS
@given(password=ANY_VALUE)
def test_any_escaped_double_quoted_value_is_read_exactly(password):
    text = SAMPLE.replace("'password_here'", php_double_quoted(password))
    assert read_wp_config(text).password == password


@HYPOTHESIS
@given(user=ANY_VALUE, password=ANY_VALUE, name=ANY_VALUE.filter(bool),
       host=st.one_of(st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True),
                      st.sampled_from(["::1", "2001:db8::5", "127.0.0.1"])),
       port=st.one_of(st.none(), st.integers(1, 65535)))
def test_the_database_url_round_trips(user, password, name, host, port):
    config = WordPressConfig(name=name, user=user, password=password, host=host, port=port,
                             socket=None, table_prefix="wp_", charset=None)
    parts = urlsplit(config.database_url())
    assert parts.scheme == "mysql"
    assert (unquote(parts.username), unquote(parts.password)) == (user, password)
    assert (parts.hostname, parts.port) == (host, port)
    assert unquote(parts.path[1:]) == name


def test_a_wp_config_that_is_a_symlink_is_refused_not_followed(tmp_path):
    """A site owner could point wp-config.php at any file this server may read."""
    from backups.wordpress import WordPressConfigError, read_wp_config_file

    secret = tmp_path / "secret.php"
    secret.write_text("<?php define('DB_NAME', 'x');")
    (tmp_path / "wp-config.php").symlink_to(secret)

    with pytest.raises(WordPressConfigError, match=r"is a symlink; the backup reads only the "
                                                   r"site's own wp-config.php"):
        read_wp_config_file(tmp_path / "wp-config.php")
