"""Credentials never leave the process: URLs parsed for their secrets, which are then
removed from any text, plus generic rules for URLs nobody registered."""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.redaction import MASK, forget_secrets, redact, register_url, url_secrets


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("rtsp://admin:p@ss@10.0.0.5:554/live", ["p@ss", "admin:p@ss"]),
        ("rtsp://admin:my secret@10.0.0.5/live", ["my secret"]),
        ("rtsp://10.0.0.5/live?user=admin&pw=q5ecr3t", ["q5ecr3t"]),
        ("https://h/x.m3u8?a=1&token=t0k3n;key=k3y3", ["t0k3n", "k3y3"]),
        ("rtsp://op:p%40ss%20w0rd@cam/s1", ["p%40ss%20w0rd", "p@ss w0rd"]),
        ("rtsp://cam/live?email=a@b.example", []),  # an "@" in the query is not userinfo
    ],
)
def test_configured_urls_give_up_their_secrets(url: str, secrets: list[str]) -> None:
    found = url_secrets(url)
    assert set(secrets) <= found
    register_url(url)
    message = f"cannot open {url}: Connection refused; retry {urllib.parse.unquote(url)}"
    clean = redact(message)
    for s in secrets:
        assert s not in clean, clean
    assert "Connection refused" in clean and (
        "10.0.0.5" in clean or "cam" in clean or "h/" in clean
    )


def test_generic_rules_catch_urls_nobody_registered() -> None:
    assert redact("rtsp://admin:p@ss@10.0.0.5/live") == f"rtsp://{MASK}@10.0.0.5/live"
    assert (
        redact("rtmp://u:pw@h/live?x=1&passwd=zz&pw=yy")
        == f"rtmp://{MASK}@h/live?x=1&passwd={MASK}&pw={MASK}"
    )
    assert redact("/data/clips/a@b.mp4 and rtsp://10.0.0.5/s1") == (
        "/data/clips/a@b.mp4 and rtsp://10.0.0.5/s1"
    )


SECRET_CHARS = string.ascii_letters + string.digits + "!$%&()*+,-.:;=@[]^_{|}~ "


@settings(max_examples=150, deadline=None)
@given(
    user=st.text(string.ascii_letters, min_size=1, max_size=8),
    password=st.text(SECRET_CHARS, min_size=6, max_size=24).filter(lambda s: s.strip() == s),
    token=st.text(string.ascii_letters + string.digits + "-_.", min_size=6, max_size=24),
    encode=st.booleans(),
)
def test_any_password_and_token_are_gone_from_any_message(
    user: str, password: str, token: str, encode: bool
) -> None:
    forget_secrets()
    pw = urllib.parse.quote(password, safe="") if encode else password
    url = f"rtsp://{user}:{pw}@10.1.2.3:554/live?channel=1&token={token}"
    register_url(url)
    for text in (
        f"stream cam: cannot open {url}: timed out",
        f"ffmpeg said: Invalid data found processing {urllib.parse.unquote(url)}",
        f"auth failed for password {password}",
    ):
        clean = redact(text)
        assert password not in clean and token not in clean, (text, clean)
