"""Builds the collection's documentation site with antsibull-docs and
Sphinx, as the Ansible community builds collection docsites, and lints it.

    .venv/bin/python scripts/docs_site.py     build into .state/docsite

1. antsibull-docs lint-collection-docs: every plugin's and the role's
   documentation parses, validates against the schema, and its references
   resolve.
2. antsibull-docs sphinx-init, then its build script: the role's argument
   spec, every module and every filter as RST pages, and Sphinx with
   warnings as errors (-W).

Sphinx resolves references to Ansible's and Python's own docs through
intersphinx inventories it downloads; the build must not need the network,
so the inventories are written here, holding only the few labels the
generated pages point to, with their real addresses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "mod_wsgi_ws_sidecar.apache"
COLLECTIONS_PATH = ROOT / ".state/collections"
SITE = ROOT / ".state/docsite"
BIN = Path(sys.executable).parent

# The labels of Ansible's docs that antsibull-docs' pages refer to:
# (label, page, title), under https://docs.ansible.com/projects/ansible/devel/.
ANSIBLE_LABELS = [
    (
        "ansible_configuration_settings",
        "reference_appendices/config.html",
        "Ansible Configuration Settings",
    ),
    ("common_return_values", "reference_appendices/common_return_values.html", "Return Values"),
    ("action_plugins", "plugins/action.html", "Action plugins"),
]
# The inventories sphinx-init's conf.py reads beside the RST tree, and
# their projects; only Ansible's is referred to.
INVENTORIES = {
    "ansible_devel": "Ansible",
    "python3": "Python",
    "python2": "Python",
    "jinja2": "Jinja",
}


def inventory(project: str, labels: list[tuple[str, str, str]]) -> bytes:
    """A Sphinx objects.inv (version 2) holding LABELS as std:label entries."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n# Version: devel\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} std:label -1 {page}#$ {title}\n" for name, page, title in labels)
    return header.encode() + zlib.compress(body.encode())


def run(command: list[str], cwd: Path) -> None:
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_PATH),
        # antsibull-docs runs ansible-doc, and the build script antsibull-docs
        # and sphinx-build, by name: this venv's.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    print("==> " + " ".join(command), file=sys.stderr, flush=True)
    if subprocess.run(command, cwd=cwd, env=env).returncode != 0:
        sys.exit(f"failed: {' '.join(command)}")


def main() -> int:
    link = COLLECTIONS_PATH / "ansible_collections/mod_wsgi_ws_sidecar/apache"
    if link.resolve() != ROOT:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(ROOT)
    run(
        [
            str(BIN / "antsibull-docs"),
            "lint-collection-docs",
            "--plugin-docs",
            # References to this collection and ansible.builtin; "all" would
            # load the docs of every collection installed (minutes).
            "--validate-collection-refs",
            "dependent",
            "--check-extra-docs-refs",
            str(ROOT),
        ],
        ROOT,
    )
    SITE.mkdir(parents=True, exist_ok=True)
    run(
        [
            str(BIN / "antsibull-docs"),
            "sphinx-init",
            "--use-current",
            "--fail-on-error",
            "--squash-hierarchy",
            "--title",
            f"{COLLECTION} documentation",
            "--dest-dir",
            str(SITE),
            COLLECTION,
        ],
        ROOT,
    )
    for name, project in INVENTORIES.items():
        labels = ANSIBLE_LABELS if name == "ansible_devel" else []
        (SITE / f"{name}.inv").write_bytes(inventory(project, labels))
    run(["bash", str(SITE / "build.sh")], SITE)
    index = SITE / "build/html/index.html"
    if not index.is_file():
        sys.exit(f"the build wrote no {index}")
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
