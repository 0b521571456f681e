"""Credentials never leave the process: one place that strips them from any text.

Two layers. A URL the monitor is given (a camera, a webhook) is parsed when it is
configured and its secrets - the userinfo, and the values of query keys such as `pw` or
`token` - are registered, so they are removed wherever they reappear, even in an error
message that quotes them half-decoded or without the URL around them. Then generic rules
catch credentials in URLs nobody registered: `scheme://userinfo@` and secret query keys.
`redact` is applied to logs (a filter on the root handlers, see monitor/cli.py), metrics
labels, events, errors and HTTP answers.
"""

from __future__ import annotations

import re
import threading
import urllib.parse

MASK = "***"
SECRET_KEYS = (
    "password", "passwd", "pass", "pwd", "pw", "token", "access_token", "auth", "key",
    "apikey", "api_key", "secret", "signature", "sig", "credential", "credentials",
)  # fmt: skip
MIN_SECRET_CHARS = 3  # shorter values are not registered (they would mask ordinary text)

# scheme://userinfo@ : the userinfo runs to the LAST "@" before the path, so "@" in a
# password is covered; "/", "?" and "#" end it
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:" + "|".join(SECRET_KEYS) + r")=)(?P<value>[^&;#\s]*)", re.IGNORECASE
)
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")

_lock = threading.Lock()
_secrets: set[str] = set()


def url_secrets(url: str) -> set[str]:
    """The secrets in one URL as configured: its userinfo (and the password alone), and
    the values of secret query keys; raw and percent-decoded."""
    m = _SCHEME.match(url)
    if m is None:
        return set()
    rest = url[m.end() :]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, cut)  # passwords may hold "@", ":" or spaces
    found: set[str] = set()
    if at > 0:
        userinfo = rest[:at]
        found.add(userinfo)
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    query = rest[cut + 1 :] if cut < len(rest) and rest[cut] == "?" else ""
    for part in re.split(r"[&;]", query.split("#", 1)[0]):
        key, sep, value = part.partition("=")
        if sep and key.lower() in SECRET_KEYS and value:
            found.add(value)
    decoded = {urllib.parse.unquote(s) for s in found} | {
        urllib.parse.unquote_plus(s) for s in found
    }
    return {s for s in found | decoded if len(s) >= MIN_SECRET_CHARS}


def register_url(url: str) -> None:
    """Remember a configured URL's secrets, so `redact` removes them from any text."""
    found = url_secrets(url)
    if found:
        with _lock:
            _secrets.update(found)


def redact(text: str) -> str:
    """Remove credentials from a URL or from any text that embeds URLs (error messages).

    `rtsp://user:p@ss@cam/x?pw=abc` -> `rtsp://***@cam/x?pw=***`.
    """
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    return _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, text)


def forget_secrets() -> None:
    """Drop every registered secret (tests, and a process reloading its whole config)."""
    with _lock:
        _secrets.clear()
