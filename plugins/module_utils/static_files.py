"""Static and media files Apache serves itself (Django's STATIC_ROOT and
MEDIA_ROOT): the rules for mod_wsgi_ws_sidecar_static_files and what the
templates write. A URL prefix that overlaps the application's mount, a
sidecar's or another entry's would hide one of them, so it is refused before
any change; the directory's existence is a host rule (host_rules.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

VARIABLE = "mod_wsgi_ws_sidecar_static_files"
FIELDS = frozenset({"url", "directory", "max_age"})
URL = re.compile(r"/[A-Za-z0-9._~/-]*")
DIRECTORY = re.compile(r'/[^\s"]+')
# Trees whose files are the system's, never a site's (the role's secrets
# live under /etc).
SYSTEM_TREES = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run")
# A year: the longest max-age caches honour, for files whose names carry
# their content's hash (Django's ManifestStaticFilesStorage).
MAX_AGE = 365 * 24 * 3600


def prefix(url: str) -> str:
    """The URL path Apache matches (Alias compares whole segments)."""
    return url.rstrip("/")


def has_odd_segments(path: str) -> bool:
    """An empty, "." or ".." segment inside a URL path: Apache normalises
    them away before it matches an Alias or a Location."""
    return "//" in path or bool({".", ".."} & set(path.split("/")))


def overlaps(a: str, b: str) -> bool:
    """Does one of two prefixes hide the other (equal, or one below the other)?"""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def entry_problems(at: str, entry: Any, shared_dirs: frozenset[str]) -> list[str]:
    """What is wrong with one entry on its own."""
    if not isinstance(entry, Mapping):
        return [f"{at} must be a mapping with url and directory; got {entry!r}."]
    problems = []
    if unknown := sorted(set(entry) - FIELDS):
        problems.append(f"{at} has fields the role does not know: {unknown}.")
    url = entry.get("url")
    if (
        not isinstance(url, str)
        or URL.fullmatch(url) is None
        or prefix(url) == ""
        or has_odd_segments(url)
    ):
        problems.append(
            f"{at}.url must be a URL path below the site root, such as /static/, with no"
            f' empty, "." or ".." segments; got {url!r}.'
        )
    directory = entry.get("directory")
    if (
        not isinstance(directory, str)
        or DIRECTORY.fullmatch(directory) is None
        or (directory.rstrip("/") or "/") in shared_dirs
        or any(overlaps(directory.rstrip("/"), tree) for tree in SYSTEM_TREES)
        or {".", ".."} & set(directory.split("/"))
    ):
        problems.append(
            f"{at}.directory must be the absolute path (no spaces, quotes, '.' or '..')"
            " of a directory of the application's files, not a system directory or one"
            " inside /etc, /run and the like, since Apache publishes everything in it; got"
            f" {directory!r}."
        )
    max_age = entry.get("max_age", 0)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or not 0 <= max_age <= MAX_AGE:
        problems.append(
            f"{at}.max_age must be a whole number of seconds from 0 (no Cache-Control"
            f" header) to {MAX_AGE} (a year); got {max_age!r}."
        )
    return problems


def static_plan(
    entries: Any,
    app_mount: str,
    sidecars: Sequence[Mapping[str, Any]],
    shared_dirs: frozenset[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries as the templates read them (prefix, directory, max_age),
    and the problems: each entry's own, then the prefixes that would hide
    the application, a sidecar of the site's virtual host, or each other."""
    if not isinstance(entries, list):
        return [], [f"{VARIABLE} must be a list; got {entries!r}."]
    problems = []
    for index, entry in enumerate(entries):
        problems += entry_problems(f"{VARIABLE}[{index}]", entry, shared_dirs)
    if problems:
        return [], problems
    planned = [
        {
            "index": index,
            "prefix": prefix(entry["url"]),
            "directory": entry["directory"].rstrip("/") or "/",
            "max_age": entry.get("max_age", 0),
        }
        for index, entry in enumerate(entries)
    ]
    # Sidecars in other virtual hosts (their own host name, the internal
    # one) share no URL space with these.
    mounts = [(s["name"], s["prefix"]) for s in sidecars if s["mount"] and not s["internal"]]
    app = prefix(app_mount)
    for static in planned:
        at, here = f"{VARIABLE}[{static['index']}]", static["prefix"]
        if app and overlaps(here, app) and not here.startswith(app + "/"):
            problems.append(
                f'{at}.url "{here}" would hide the application mounted at "{app_mount}";'
                " choose a prefix below it or beside it."
            )
        for name, mount in mounts:
            if overlaps(here, mount):
                problems.append(
                    f'{at}.url "{here}" overlaps sidecar {name}\'s mount "{mount}/": Apache'
                    " would send one of them the other's requests; choose another prefix."
                )
        for other in planned[: planned.index(static)]:
            if overlaps(here, other["prefix"]):
                problems.append(
                    f'{at}.url "{here}" overlaps {VARIABLE}[{other["index"]}].url'
                    f' "{other["prefix"]}"; give each its own prefix.'
                )
    return ([] if problems else planned), problems


def express_args(planned: Sequence[Mapping[str, Any]]) -> list[str]:
    """mod_wsgi-express's own aliases for the entries."""
    return [arg for s in planned for arg in ("--url-alias", s["prefix"], s["directory"])]
