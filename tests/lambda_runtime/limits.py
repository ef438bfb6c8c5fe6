"""Packaging limits of the built functions (issue 14, item 4):

* each function's unzipped size with its layers stays under Lambda's 250 MB;
* no test or development dependency is in a layer: the distributions that only requirements-dev.txt
  brings (pytest, moto, ruff, ... and what they alone pull in, read from the development venv's
  metadata) must not be installed in the layer;
* the layers' binaries match the template's architecture: every ELF file (.so) is for that machine,
  and every wheel's platform tags (dist-info/WHEEL) are that architecture's or `any`, for the
  function runtime's Python.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.lambda_runtime.template import Function, Layer

MB = 1024 * 1024  # Lambda's "250 MB" is 262,144,000 bytes
LIMIT_MB = 250
LIMIT_BYTES = LIMIT_MB * MB  # the function and all its layers, unzipped
ELF_MACHINES = {"x86_64": 0x3E, "arm64": 0xB7}
PLATFORM_WORDS = {"x86_64": ("x86_64", "amd64"), "arm64": ("aarch64", "arm64")}


def tree_bytes(root: Path) -> int:
    """The unzipped size: every regular file's size (links not followed)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


@dataclass
class Size:
    function: str
    code: int
    layers: int

    @property
    def total(self) -> int:
        return self.code + self.layers

    @property
    def ok(self) -> bool:
        return self.total < LIMIT_BYTES


def sizes(functions: list[Function], layers: dict[str, Layer]) -> list[Size]:
    layer_bytes = {logical_id: tree_bytes(layer.content) for logical_id, layer in layers.items()}
    return [
        Size(f.logical_id, tree_bytes(f.code), sum(layer_bytes[layer] for layer in f.layers))
        for f in functions
    ]


# --- development dependencies --------------------------------------------------------------------


def _requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def _closure(roots: list[Requirement]) -> set[str]:
    """The roots and everything they require (with their extras), from the installed metadata."""
    seen: set[str] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            wanted = any(
                requirement.marker is None or requirement.marker.evaluate({"extra": extra})
                for extra in (extras or {""})
            )
            if wanted:
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return seen


def development_only(repo: Path) -> set[str]:
    """Distributions that only the development requirements bring into the venv."""
    runtime = _requirements(repo / "layers" / "deps" / "requirements.txt")
    development = _requirements(repo / "requirements-dev.txt")
    runtime_names = {canonicalize_name(r.name) for r in runtime}
    roots = [r for r in development if canonicalize_name(r.name) not in runtime_names]
    return _closure(roots) - _closure(runtime)


def installed(layer: Layer) -> dict[str, Path]:
    """Distribution name -> its dist-info folder, for what is installed in the layer."""
    found: dict[str, Path] = {}
    for info in layer.content.glob("python/**/*.dist-info"):
        if (info / "METADATA").is_file():
            match = re.search(r"^Name: (.+)$", (info / "METADATA").read_text(errors="replace"), re.M)
            if match:
                found[canonicalize_name(match[1].strip())] = info
    return found


# --- architecture --------------------------------------------------------------------------------


def wrong_binaries(layer: Layer, architecture: str, python: str) -> tuple[list[str], int, int]:
    """ELF files for another machine, wheels tagged for another platform or Python: (problems, ELF
    files seen, wheels seen)."""
    problems, elf_files, wheels = [], 0, 0
    machine = ELF_MACHINES[architecture]
    for path in layer.content.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as handle:
            header = handle.read(20)
        if header[:4] == b"\x7fELF" and len(header) == 20:
            elf_files += 1
            found = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
            if found != machine:
                problems.append(
                    f"{path.relative_to(layer.content)}: ELF machine {found:#x}, not {architecture}"
                )
    wanted_words = PLATFORM_WORDS[architecture]
    major, minor = (int(part) for part in python.split("."))
    for wheel in layer.content.glob("python/**/*.dist-info/WHEEL"):
        wheels += 1
        for tag in re.findall(r"^Tag: (\S+)$", wheel.read_text(), re.M):
            interpreter, abi, platform = tag.split("-")
            where = f"{wheel.parent.name}: {tag}"
            if platform != "any" and not any(word in platform for word in wanted_words):
                problems.append(f"{where}: platform is not {architecture}")
            for version in re.findall(r"cp(\d)(\d+)", interpreter):
                built_for = (int(version[0]), int(version[1]))
                fits = built_for == (major, minor) or (abi == "abi3" and built_for <= (major, minor))
                if not fits:
                    problems.append(f"{where}: built for CPython {built_for[0]}.{built_for[1]}, not {python}")
    return problems, elf_files, wheels


def check(functions: list[Function], layers: dict[str, Layer], repo: Path) -> tuple[list[str], list[str]]:
    """(lines to print, problems)."""
    lines = [f"{'function':<28} {'code KB':>8} {'layers MB':>10} {'total MB':>9}  limit {LIMIT_MB} MB"]
    problems = []
    for size in sizes(functions, layers):
        code_kb, layers_mb, total_mb = size.code / 1024, size.layers / MB, size.total / MB
        verdict = "ok" if size.ok else "OVER"
        lines.append(f"{size.function:<28} {code_kb:>8.1f} {layers_mb:>10.2f} {total_mb:>9.2f}  {verdict}")
        if not size.ok:
            problems.append(
                f"{size.function}: {total_mb:.1f} MB unzipped with its layers (limit {LIMIT_MB} MB)"
            )
    banned = development_only(repo)
    lines.append(f"development-only distributions (requirements-dev.txt alone brings them): {len(banned)}")
    for logical_id in sorted({layer for f in functions for layer in f.layers}):
        layer = layers[logical_id]
        users = [f for f in functions if logical_id in f.layers]
        dists = installed(layer)
        found = sorted(set(dists) & banned)
        problems += [
            f"{logical_id}: development-only dependency {name} ({dists[name].name})" for name in found
        ]
        architectures = sorted({a for f in users for a in f.architectures} | set(layer.architectures))
        for python in sorted({f.runtime.removeprefix("python") for f in users}):
            for architecture in architectures:
                wrong, elf_files, wheels = wrong_binaries(layer, architecture, python)
                problems += [f"{logical_id}: {problem}" for problem in wrong]
                lines.append(
                    f"{logical_id}: {len(dists)} distributions, {len(found)} development-only; "
                    f"{architecture}/python{python}: {elf_files} ELF files and {wheels} wheels, "
                    f"{len(wrong)} not matching"
                )
    return lines, problems
