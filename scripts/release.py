"""Builds the collection's release tarball, with the URLs Galaxy requires.

The repository's galaxy.yml names no `repository`, `homepage`, `issues` or
`documentation`: they are where a release is published, which only its
publisher knows. Galaxy's importer rejects a collection without
`repository`, so this command refuses to build without one, before it
builds anything.

    python scripts/release.py --repository URL [--homepage URL] [--issues URL]
                              [--documentation URL] [--output-path DIR]

It builds from the files git lists (tracked, and new ones not ignored), so
nothing else in the working directory can slip into the tarball, and prints
the tarball's path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
URL_KEYS = ("repository", "homepage", "issues", "documentation")


def url_problem(key: str, value: str) -> str:
    """'' when VALUE is an absolute http(s) URL, else why not."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        return f"--{key} {value!r} is not an absolute http(s) URL"
    return ""


def copy_tracked_files(root: Path, dest: Path) -> None:
    """Copies to DEST the files git lists in ROOT: tracked, and new ones not
    ignored, as they are in the working tree (a deleted file stays out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in listed:
        if name and (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)


def with_urls(galaxy_yml: str, urls: dict[str, str]) -> str:
    """galaxy.yml's text with the URLs added at its end, comments kept."""
    already = [key for key in urls if key in (yaml.safe_load(galaxy_yml) or {})]
    if already:
        raise SystemExit(
            f"galaxy.yml already sets {', '.join(already)}; this command sets"
            " the URLs of a release, so the repository's galaxy.yml must not."
        )
    lines = [f"{key}: {value}" for key, value in urls.items()]
    return (
        galaxy_yml.rstrip("\n")
        + "\n# Given at release time (scripts/release.py).\n"
        + "\n".join(lines)
        + "\n"
    )


def ansible_galaxy() -> str:
    """The ansible-galaxy beside this Python (a venv's), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-galaxy"
    found = str(beside) if beside.exists() else shutil.which("ansible-galaxy")
    if not found:
        raise SystemExit(
            "ansible-galaxy not found: run this with the project's venv (.venv/bin/python)"
        )
    return found


def build(urls: dict[str, str], output_path: Path) -> Path:
    output_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging)
        copy_tracked_files(ROOT, stage)
        galaxy_yml = stage / "galaxy.yml"
        galaxy_yml.write_text(with_urls(galaxy_yml.read_text(), urls))
        meta = yaml.safe_load(galaxy_yml.read_text())
        tarball = output_path / f"{meta['namespace']}-{meta['name']}-{meta['version']}.tar.gz"
        built = subprocess.run(
            [
                ansible_galaxy(),
                "collection",
                "build",
                "--force",
                "--output-path",
                str(output_path),
                str(stage),
            ],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0 or not tarball.is_file():
            raise SystemExit(
                f"ansible-galaxy collection build failed:\n{built.stdout}{built.stderr}"
            )
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repository", help="where the collection's source is published (required)"
    )
    parser.add_argument("--homepage", help="the collection's home page")
    parser.add_argument("--issues", help="where users report problems")
    parser.add_argument("--documentation", help="the collection's documentation")
    parser.add_argument(
        "--output-path", type=Path, default=Path.cwd(), help="directory for the tarball"
    )
    args = parser.parse_args(argv)
    if not args.repository:
        parser.error(
            "--repository is required: Galaxy rejects a collection without it,"
            " and only the publisher knows where the release is published"
        )
    urls = {key: getattr(args, key) for key in URL_KEYS if getattr(args, key)}
    problems = [p for p in (url_problem(key, value) for key, value in urls.items()) if p]
    if problems:
        parser.error("; ".join(problems))
    print(build(urls, args.output_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
