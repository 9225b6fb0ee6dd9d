"""MkDocs hook: the figures of BENCHMARKS.md become files of the site.

``docs/benchmark-results.md`` embeds the repository's ``BENCHMARKS.md`` (pymdownx.snippets),
whose figures are linked relative to the repository root
(``benchmarks/results/bench/figures/...``). The embedding page sits at the root of the docs,
so the same relative links resolve once those files are part of the site: this hook adds
them, read from where they are committed (nothing is copied into docs/). A figure that
BENCHMARKS.md names but the repository lacks stays a broken link, which the strict build
reports.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def on_files(files, config):
    root = Path(config["config_file_path"]).resolve().parent
    text = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    for target in sorted(set(_IMAGE.findall(text))):
        if "://" in target or target.startswith("/"):
            continue
        if (root / target).is_file() and files.get_file_from_path(target) is None:
            files.append(File(target, src_dir=str(root), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files
