"""Static and media files Apache serves (plugins/module_utils/static_files.py):
each rule on mod_wsgi_ws_sidecar_static_files a row, what the plan hands the
templates and mod_wsgi-express, and the overlap rule as a property."""

from __future__ import annotations

import pytest
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.static_files import (
    overlaps,
)
from hypothesis import given
from hypothesis import strategies as st
from test_plan import PUSH, PUSH_SECRETS, SIDECAR, plan

STATIC = {"url": "/static/", "directory": "/srv/mysite/static", "max_age": 31536000}
MEDIA = {"url": "/media/", "directory": "/srv/mysite/media"}


def test_entries_reach_the_plan_as_prefix_directory_and_max_age() -> None:
    built = plan(static_files=[STATIC, {**MEDIA, "directory": "/srv/mysite/media/"}])
    assert built["problems"] == []
    assert built["static_files"] == [
        {"index": 0, "prefix": "/static", "directory": "/srv/mysite/static", "max_age": 31536000},
        {"index": 1, "prefix": "/media", "directory": "/srv/mysite/media", "max_age": 0},
    ]
    assert built["host_checks"]["static_dirs"] == [
        [0, "/srv/mysite/static"],
        [1, "/srv/mysite/media"],
    ]
    assert "/srv/mysite/static" in built["host_checks"]["paths"]


def test_express_mode_gets_mod_wsgi_express_url_aliases() -> None:
    args = plan(mode="express", static_files=[STATIC, MEDIA])["express_args"]
    at = args.index("--url-alias")
    assert args[at : at + 6] == [
        "--url-alias",
        "/static",
        "/srv/mysite/static",
        "--url-alias",
        "/media",
        "/srv/mysite/media",
    ]


def test_a_prefix_below_a_mounted_application_is_served_beside_it() -> None:
    assert (
        plan(app_mount="/app", static_files=[{**STATIC, "url": "/app/static/"}])["problems"] == []
    )


# (case id, variables set, words the one problem must contain)
CASES = [
    ("not-a-list", {"static_files": {"url": "/s/"}}, ["static_files must be a list"]),
    ("not-a-mapping", {"static_files": ["/static/"]}, ["static_files[0] must be a mapping"]),
    ("unknown-field", {"static_files": [{**STATIC, "path": "/x"}]}, ["know: ['path']"]),
    ("no-url", {"static_files": [{"directory": "/srv/s"}]}, ["static_files[0].url", "None"]),
    ("root-url", {"static_files": [{**STATIC, "url": "/"}]}, ["static_files[0].url"]),
    ("relative-url", {"static_files": [{**STATIC, "url": "static/"}]}, ["[0].url"]),
    ("url-dot-dot", {"static_files": [{**STATIC, "url": "/a/../static/"}]}, ["[0].url"]),
    ("url-double-slash", {"static_files": [{**STATIC, "url": "/a//s/"}]}, ["[0].url"]),
    ("url-with-space", {"static_files": [{**STATIC, "url": "/my static/"}]}, ["[0].url"]),
    ("relative-dir", {"static_files": [{**STATIC, "directory": "static"}]}, ["[0].directory"]),
    ("no-directory", {"static_files": [{"url": "/static/"}]}, ["[0].directory", "None"]),
    ("dir-with-space", {"static_files": [{**STATIC, "directory": "/srv/a b"}]}, ["directory"]),
    ("dir-is-root", {"static_files": [{**STATIC, "directory": "/"}]}, ["system directory"]),
    ("dir-is-srv", {"static_files": [{**STATIC, "directory": "/srv/"}]}, ["system directory"]),
    (
        "dir-in-etc",
        {"static_files": [{**STATIC, "directory": "/etc/mod_wsgi_ws_sidecar"}]},
        ["/etc"],
    ),
    ("dir-climbs", {"static_files": [{**STATIC, "directory": "/srv/s/../../etc"}]}, [".."]),
    ("max-age-negative", {"static_files": [{**STATIC, "max_age": -1}]}, ["[0].max_age", "-1"]),
    ("max-age-text", {"static_files": [{**STATIC, "max_age": "1y"}]}, ["[0].max_age", "'1y'"]),
    ("max-age-bool", {"static_files": [{**STATIC, "max_age": True}]}, ["[0].max_age"]),
    ("max-age-over-a-year", {"static_files": [{**STATIC, "max_age": 31536001}]}, ["a year"]),
    (
        "hides-the-app",
        {"app_mount": "/app", "static_files": [{**STATIC, "url": "/app"}]},
        ['[0].url "/app" would hide the application mounted at "/app"'],
    ),
    (
        "above-the-app",
        {"app_mount": "/site/app", "static_files": [{**STATIC, "url": "/site/"}]},
        ["would hide the application"],
    ),
    (
        "a-sidecars-mount",
        {"static_files": [{**STATIC, "url": "/metrics/"}]},
        ['overlaps sidecar metrics-sidecar\'s mount "/metrics/"'],
    ),
    (
        "above-a-sidecar",
        {"sidecars": [{**SIDECAR, "mount": "/static/ws/"}], "static_files": [STATIC]},
        ["overlaps sidecar metrics-sidecar's mount"],
    ),
    (
        "below-a-sidecar",
        {**PUSH_SECRETS, "sidecars": [PUSH], "static_files": [{**STATIC, "url": "/push/static"}]},
        ["overlaps sidecar push's mount"],
    ),
    (
        "two-items",
        {"static_files": [STATIC, {**MEDIA, "url": "/static/media/"}]},
        ['static_files[1].url "/static/media" overlaps mod_wsgi_ws_sidecar_static_files[0]'],
    ),
]


@pytest.mark.parametrize(("overrides", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_entry_is_one_problem_naming_it(overrides: dict, words: list[str]) -> None:
    (problem,) = plan(**overrides)["problems"]
    for word in words:
        assert word in problem


def test_a_sidecar_in_its_own_virtual_host_shares_no_urls() -> None:
    hosted = {**SIDECAR, "mount": "", "virtual_host": "ws.example.org"}
    assert plan(sidecars=[hosted], static_files=[{**STATIC, "url": "/ws/"}])["problems"] == []


SEGMENT = st.text(alphabet="abc", min_size=1, max_size=3)
PATHS = st.lists(SEGMENT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(PATHS, PATHS)
def test_overlap_is_apaches_whole_segment_match_both_ways(a: str, b: str) -> None:
    # Apache's Alias and Location match whole segments: /a hides /a/b, not /ab.
    below = lambda x, y: x == y or x.startswith(y + "/")  # noqa: E731
    assert overlaps(a, b) == (below(a, b) or below(b, a)) == overlaps(b, a)
    assert overlaps(a, a + "x") is False
