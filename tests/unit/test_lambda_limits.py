"""The packaging checks of `make lambda-test` (tests/lambda_runtime/limits.py) find what they look
for: a layer over the size limit, a development dependency, binaries for another architecture or
Python. The real build passing them says little unless a bad one fails."""

from __future__ import annotations

from pathlib import Path

from tests.lambda_runtime import limits
from tests.lambda_runtime.template import Function, Layer

REPO = Path(__file__).resolve().parents[2]
# The first 20 bytes of an ELF shared object: 64-bit, little-endian, e_machine at offset 18.
ELF_AARCH64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00" + (0xB7).to_bytes(2, "little")
ELF_X86_64 = ELF_AARCH64[:18] + (0x3E).to_bytes(2, "little")


def layer(root: Path, dists: dict[str, str], files: dict[str, bytes]) -> Layer:
    for name, tag in dists.items():
        info = root / "python" / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")
    for name, content in files.items():
        (root / "python" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "python" / name).write_bytes(content)
    return Layer(root.name, root, ("x86_64",))


def function(code: Path, layers: tuple[str, ...]) -> Function:
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context): ...\n")
    return Function(code.name, code, "app.handler", "python3.11", 512, 29, ("x86_64",), layers, {}, code.name)


def test_a_good_layer_passes(tmp_path):
    good = layer(
        tmp_path / "Good",
        {"orjson": "cp311-cp311-manylinux_2_17_x86_64", "pydantic-core": "cp38-abi3-manylinux2014_x86_64"},
        {"orjson/orjson.cpython-311-x86_64-linux-gnu.so": ELF_X86_64, "pure.py": b"x = 1\n"},
    )
    lines, problems = limits.check([function(tmp_path / "Fn", ("Good",))], {"Good": good}, REPO)
    assert problems == []
    assert any("1 ELF files and 2 wheels, 0 not matching" in line for line in lines)


def test_development_dependencies_other_architectures_and_pythons_fail(tmp_path):
    bad = layer(
        tmp_path / "Bad",
        {"pytest": "py3-none-any", "orjson": "cp312-cp312-manylinux_2_17_aarch64"},
        {"orjson/orjson.cpython-312-aarch64-linux-gnu.so": ELF_AARCH64},
    )
    _, problems = limits.check([function(tmp_path / "Fn", ("Bad",))], {"Bad": bad}, REPO)
    text = "\n".join(problems)
    assert "development-only dependency pytest" in text
    assert "ELF machine 0xb7, not x86_64" in text
    assert "platform is not x86_64" in text
    assert "built for CPython 3.12, not 3.11" in text


def test_over_250_mb_with_the_layers_fails(tmp_path):
    big = layer(tmp_path / "Big", {}, {"empty.py": b""})
    with (big.content / "python" / "blob.bin").open("wb") as blob:
        blob.truncate(limits.LIMIT_BYTES)  # sparse: counted at its size, not written
    _, problems = limits.check([function(tmp_path / "Fn", ("Big",))], {"Big": big}, REPO)
    assert problems == ["Fn: 250.0 MB unzipped with its layers (limit 250 MB)"]


def test_moto_and_what_only_it_pulls_in_count_as_development_only():
    banned = limits.development_only(REPO)
    assert {"pytest", "moto", "ruff", "mypy", "hypothesis", "boto3"} <= banned
    assert not {"pydantic", "fastapi", "kubernetes", "urllib3"} & banned  # the layer's own
