"""Nothing a reader sees after cloning the repository points outside it.

`scan` reads README.md, docs/, notebooks/ (the .ipynb JSON: every cell's source and every
output's text; stored images are skipped), benchmarks/, experiments/ and cfjax/, every text
file (binary files such as PNGs are skipped, and so are __pycache__ and notebook checkpoints),
and reports:

1. **Markdown links that leave the repository**: inline links and images `[text](target)`,
   reference definitions `[label]: target` and HTML `href=` / `src=` attributes, in Markdown
   files, notebook cells and Python files. A target with a URL scheme (http, https, mailto) is
   allowed, except `file:`; a pure `#fragment` is allowed; an absolute target (`/x`) is
   reported (it names this machine's file system, or a site root that a clone does not have);
   a relative target is resolved against the file's folder (lexically, without following
   links) and reported when it lands above the repository root.
2. **Relative paths in Markdown text that climb out**: a token `../...` in a Markdown file or
   notebook Markdown cell that resolves above the root, whether or not it is a link (in code,
   a relative path is relative to the working directory, which the scanner cannot know).
3. **Absolute paths of a machine**: a token starting with /work, /root, /home, /opt, /Users,
   /mnt, /media, /srv, /scratch, /Volumes or /private (followed by "/", a quote, a space or the
   end), at the start of a token (not inside a URL or a longer path), and Windows paths
   (`C:\\...`, `D:/...`: an upper-case drive letter, then a separator and a name), anywhere.

Allowed on purpose: URLs; `/tmp/...` and `/var/tmp/...` (a scratch folder every POSIX machine
has; examples and recorded commands that write there lead the reader to nothing of this
project's); system interfaces such as `/proc/self/status`, `/dev/...` and `/usr/bin/env`; `~/...`
(the reader's own home, e.g. the default data cache `~/.cache/cfjax`); environment variables.

A second check: every relative Markdown link in README.md, docs/ and the notebooks names a file
or folder that exists in the repository.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "docs", "notebooks", "benchmarks", "experiments", "cfjax")
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints"}

MACHINE_ROOTS = (
    "work", "root", "home", "opt", "Users", "mnt", "media", "srv", "scratch", "Volumes", "private",
)  # fmt: skip
# At a token start: not after a word character, a dot, a slash, "~" or "-" (so not inside a
# URL such as https://host/home/x, nor inside a longer path such as /usr/opt/x).
ABSOLUTE = re.compile(
    r"(?<![\w./~-])/(?:" + "|".join(MACHINE_ROOTS) + r")(?=[/\s\"'`),\]]|$)", re.MULTILINE
)
WINDOWS = re.compile(r"(?<![\w])[A-Z]:(?:\\\\|\\|/)(?=\w)")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
CLIMB = re.compile(r"(?<![\w./-])(?:\.\./)+[\w./-]*")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# the path as quoted in a message: up to a space, quote, bracket, comma (or, POSIX, a colon)
POSIX_TOKEN = re.compile(r"[^\s\"'`),\]:]+")
WINDOWS_TOKEN = re.compile(r"[^\s\"'`),\]]+")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _outside(target: str, base: Path, root: Path) -> bool:
    """Whether a relative path, read from folder `base`, lands above `root` (lexically)."""
    resolved = os.path.normpath(os.path.join(base, target))
    return os.path.commonpath([resolved, os.fspath(root)]) != os.fspath(root)


def link_targets(text: str) -> list[tuple[int, str]]:
    """(position, target) of every Markdown / HTML link in `text`."""
    found = []
    for pattern in (INLINE_LINK, REFERENCE_LINK, HTML_LINK):
        found += [(m.start(1), m.group(1)) for m in pattern.finditer(text)]
    return sorted(found)


def scan_text(text: str, where: str, base: Path, root: Path, markdown: bool) -> list[str]:
    """Problems in one piece of text. `where` names it in messages ("README.md" or
    "notebooks/x.ipynb cell 3"), `base` is the folder relative links are read from, `markdown`
    whether the text is Markdown (rule 2 applies)."""
    problems = []
    links = link_targets(text)
    for pos, target in links:
        at = f"{where}:{_line(text, pos)}"
        if target.lower().startswith("file:"):
            problems.append(f"{at}: link {target!r} is a local file URL")
        elif SCHEME.match(target) or target.startswith("#"):
            continue
        elif target.startswith(("/", "\\")):
            problems.append(f"{at}: link {target!r} is an absolute path")
        elif _outside(target.split("#")[0].split("?")[0], base, root):
            problems.append(f"{at}: link {target!r} leaves the repository")
    if markdown:
        linked = {pos for pos, _ in links}  # reported above already
        for m in CLIMB.finditer(text):
            if m.start() not in linked and _outside(m.group(0), base, root):
                problems.append(
                    f"{where}:{_line(text, m.start())}: path {m.group(0)!r} leaves the repository"
                )
    for pattern, token_of, kind in (
        (ABSOLUTE, POSIX_TOKEN, "an absolute path of this machine"),
        (WINDOWS, WINDOWS_TOKEN, "a Windows path"),
    ):
        for m in pattern.finditer(text):
            token = token_of.match(text, m.start()).group(0).rstrip(".;")
            problems.append(f"{where}:{_line(text, m.start())}: {token!r} is {kind}")
    return problems


def _notebook_parts(path: Path):
    """(label, text, is_markdown) for every cell source and output text of a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.get("cells", [])):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        yield f"cell {i}", source, cell.get("cell_type") == "markdown"
        for j, output in enumerate(cell.get("outputs", [])):
            pieces = [output.get("text", "")]
            # every rendering but images (base64 PNG: binary, skipped as PNG files are)
            pieces += [v for k, v in output.get("data", {}).items() if not k.startswith("image/")]
            pieces += output.get("traceback", [])
            text = "\n".join("".join(p) if isinstance(p, list) else str(p) for p in pieces)
            yield f"cell {i} output {j}", text, False
    yield "metadata", json.dumps(nb.get("metadata", {})), False


def _files(root: Path):
    for name in SCANNED:
        top = root / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
                yield from (Path(dirpath) / f for f in sorted(filenames))


def scan(root: Path = ROOT) -> list[str]:
    """Every problem in the scanned files under `root` (empty when there is none)."""
    problems = []
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".ipynb":
            for label, text, markdown in _notebook_parts(path):
                problems += scan_text(text, f"{rel} {label}", path.parent, root, markdown)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file (PNG, npz): no text to read
            continue
        problems += scan_text(text, rel, path.parent, root, markdown=path.suffix == ".md")
    return problems


def test_nothing_points_outside_the_repository():
    assert scan() == []


def test_markdown_links_resolve_inside_the_repository():
    missing = []
    for path in _files(ROOT):
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix == ".md":
            texts = [(rel, path.read_text(encoding="utf-8"))]
        elif path.suffix == ".ipynb":
            texts = [(f"{rel} {label}", t) for label, t, md in _notebook_parts(path) if md]
        else:
            continue
        for where, text in texts:
            for pos, target in link_targets(text):
                target = target.split("#")[0].split("?")[0]
                if not target or SCHEME.match(target) or target.startswith("/"):
                    continue
                if not (path.parent / target).exists():
                    missing.append(f"{where}:{_line(text, pos)}: {target!r} does not exist")
    assert missing == []


# ------------------------------------------------------------------------ the scanner itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _notebook(*cells) -> str:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


BAD = {
    # the README's old link to the seed document, which lived beside the repository
    "README.md": "trained\nfrom the [seed document](../shared/seed-failure-mode.md) (plus)\n",
    # docs/mm_als.md's old absolute path of the development machine
    "docs/mm_als.md": "no descent guarantee (`/work/shared/seed-failure-mode.md`; kept)\n",
    "docs/more.md": "[up two](../../x.md), [abs](/etc/passwd), [f](file:///home/u/a.md)\n"
    '[ref]: ../../outside.md\n<img src="../../logo.png">\nsee ../../sibling/notes.md\n',
    # bench_speed.py's old default PyTorch interpreter
    "benchmarks/bench.py": 'TORCH_PYTHON = "/work/torchvenv/bin/python"\nP = r"C:\\Users\\me"\nQ = "D:/data/x"\n',
    "cfjax/mod.py": '"""Cache in /home/someone/.cache or /Users/me/x or /opt/tool."""\n',
    "notebooks/n.ipynb": _notebook(
        {"cell_type": "markdown", "metadata": {}, "source": ["See [it](../../seed.md)."]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": ["x = 1"],
            "outputs": [
                {
                    "output_type": "stream",
                    "name": "stderr",
                    "text": ["/root/venv/x.py:1: Warning\n"],
                }
            ],
        },
    ),
}

GOOD = {
    "README.md": "[background](docs/background.md), [site](https://example.org/home/x), "
    "[top](#top), [mail](mailto:a@b.org)\n`python x.py --out /tmp/out.json`\n",
    "docs/background.md": "# top\n[back to the README](../README.md), [results](results/)\n"
    "Peak RSS from /proc/self/status; `#!/usr/bin/env python`; cache in `~/.cache/cfjax`.\n"
    "https://github.com/org/repo/blob/main/home/file.py and $HOME/x\n",
    "docs/results/t.md": "x\n",
    "cfjax/mod.py": "scores = BASELINES[name](problem)  # indexing, not a link\n"
    "path = os.path.join(root, 'opt')  # not a path of this machine\n",
    "notebooks/n.ipynb": _notebook(
        {"cell_type": "markdown", "metadata": {}, "source": ["[README](../README.md)"]},
    ),
}


def test_scanner_flags_each_bad_sample(tmp_path):
    assert sorted(scan(_write(tmp_path, BAD))) == sorted(
        [
            "README.md:2: link '../shared/seed-failure-mode.md' leaves the repository",
            "docs/mm_als.md:1: '/work/shared/seed-failure-mode.md' is an absolute path of this machine",
            "docs/more.md:1: link '../../x.md' leaves the repository",
            "docs/more.md:1: link '/etc/passwd' is an absolute path",
            "docs/more.md:1: link 'file:///home/u/a.md' is a local file URL",
            "docs/more.md:2: link '../../outside.md' leaves the repository",
            "docs/more.md:3: link '../../logo.png' leaves the repository",
            "docs/more.md:4: path '../../sibling/notes.md' leaves the repository",
            "benchmarks/bench.py:1: '/work/torchvenv/bin/python' is an absolute path of this machine",
            "benchmarks/bench.py:2: 'C:\\\\Users\\\\me' is a Windows path",
            "benchmarks/bench.py:3: 'D:/data/x' is a Windows path",
            "cfjax/mod.py:1: '/home/someone/.cache' is an absolute path of this machine",
            "cfjax/mod.py:1: '/Users/me/x' is an absolute path of this machine",
            "cfjax/mod.py:1: '/opt/tool' is an absolute path of this machine",
            "notebooks/n.ipynb cell 0:1: link '../../seed.md' leaves the repository",
            "notebooks/n.ipynb cell 1 output 0:1: '/root/venv/x.py' is an absolute path of this machine",
        ]
    )


def test_scanner_flags_the_old_readme(tmp_path):
    """The README as it was, with its link to ../shared/seed-failure-mode.md, fails the scan."""
    old = (
        (ROOT / "README.md")
        .read_text(encoding="utf-8")
        .replace(
            "[seed document](docs/background.md)", "[seed document](../shared/seed-failure-mode.md)"
        )
    )
    assert "../shared/" in old
    problems = scan(_write(tmp_path, {"README.md": old}))
    assert "README.md:7: link '../shared/seed-failure-mode.md' leaves the repository" in problems


def test_scanner_passes_legitimate_text(tmp_path):
    assert scan(_write(tmp_path, GOOD)) == []


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("/work/x", 1),
        ("(/home/u)", 1),
        ("'/opt'", 1),
        ("/opt", 1),
        ("https://h/work/x", 0),
        ("/usr/opt/x", 0),
        ("/tmp/work/x", 0),
        ("/workspace/x", 0),
        ("/homes", 0),
        ("~/work/x", 0),
        ("a-/home/x", 0),
    ],
)
def test_absolute_path_rule(text, hits):
    assert len(ABSOLUTE.findall(text)) == hits
