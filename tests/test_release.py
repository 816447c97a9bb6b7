"""scripts/release.py: the release tarball carries the URLs it was given,
and nothing is built without a repository URL, which Galaxy requires."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import release  # noqa: E402

STAND_IN = "https://example.invalid/mod_wsgi_ws_sidecar"


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        release.main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_no_repository_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refusal(["--output-path", str(tmp_path)], capsys)
    assert "--repository is required" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "url", ["example.org/repo", "ftp://example.org/repo", "https://", "https://exa mple.org/"]
)
def test_a_url_that_is_not_absolute_http_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refusal(
        ["--repository", STAND_IN, "--issues", url, "--output-path", str(tmp_path)], capsys
    )
    assert f"--issues {url!r} is not an absolute http(s) URL" in err
    assert not list(tmp_path.iterdir())


def test_the_repositorys_galaxy_yml_names_no_release_url() -> None:
    """Else the command's URLs and the file's could disagree."""
    meta = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert not set(release.URL_KEYS) & set(meta)
    with pytest.raises(SystemExit, match="already sets repository"):
        release.with_urls(
            "namespace: a\nrepository: https://x.example/\n", {"repository": STAND_IN}
        )


def test_the_tarball_carries_the_urls_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issues = f"{STAND_IN}/issues"
    assert (
        release.main(["--repository", STAND_IN, "--issues", issues, "--output-path", str(tmp_path)])
        == 0
    )
    tarball = Path(capsys.readouterr().out.strip())
    assert tarball.parent == tmp_path and tarball.is_file()
    with tarfile.open(tarball) as archive:
        info = json.load(archive.extractfile("MANIFEST.json"))["collection_info"]
        names = set(archive.getnames())
    assert (info["repository"], info["issues"], info["homepage"]) == (STAND_IN, issues, None)
    assert "roles/mod_wsgi_ws_sidecar/README.md" in names
    assert not any(name.startswith(("tests/", ".state/", ".venv/")) for name in names)
