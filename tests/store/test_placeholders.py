"""`?` placeholders as psycopg's `%s`: only outside quoted text and comments."""

import pytest

from tidings.store.placeholders import qmark_to_format, qmark_to_numbered


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("SELECT ? , ?", "SELECT %s , %s"),
        ("SELECT '?', ?", "SELECT '?', %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ('SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = %s'),
        ("SELECT a % 2, '100%' WHERE b = ?", "SELECT a %% 2, '100%%' WHERE b = %s"),
        ("SELECT ? -- why?\n, ?", "SELECT %s -- why?\n, %s"),
        ("SELECT 'unterminated ?", "SELECT 'unterminated ?"),
    ],
)
def test_placeholders_outside_quotes_become_psycopgs(written: str, sent: str) -> None:
    assert qmark_to_format(written) == sent


@pytest.mark.parametrize(
    ("written", "sent", "count"),
    [
        ("SELECT ? , ?", "SELECT $1 , $2", 2),
        ("SELECT '?', ?", "SELECT '?', $1", 1),
        ("SELECT a % 2, '100%' WHERE b = ?", "SELECT a % 2, '100%' WHERE b = $1", 1),
        ("SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2", 2),
        ("SELECT 1", "SELECT 1", 0),
    ],
)
def test_placeholders_sent_to_the_server_are_numbered(written: str, sent: str, count: int) -> None:
    assert qmark_to_numbered(written) == (sent, count)
