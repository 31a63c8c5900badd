"""Configuration is documented: every environment variable the settings read is in
.env.example, and .env.example names nothing the settings ignore."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_by_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', source))


def documented() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z0-9_]+=", line)}


def test_every_variable_the_settings_read_is_documented():
    assert read_by_settings() - documented() == set()


def test_the_example_names_only_variables_the_settings_read():
    assert documented() - read_by_settings() == set()


def test_each_documented_variable_has_a_comment_above_it():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z0-9_]+=", line):
            above = lines[index - 1]
            assert above.startswith("#") or re.match(r"^[A-Z0-9_]+=", above), line
