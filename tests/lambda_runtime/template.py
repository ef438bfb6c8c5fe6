"""What the built template (`sam build`'s template.yaml) says about each function and layer.

SAM's Globals are merged as SAM merges them (maps merged, lists appended, scalars overridden), and
intrinsic functions are resolved against a `values` map of the local stack (see stack.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return document


@dataclass(frozen=True)
class Layer:
    logical_id: str
    content: Path  # the built layer: python/ inside, as Lambda extracts it into /opt
    architectures: tuple[str, ...]


@dataclass(frozen=True)
class Function:
    logical_id: str
    code: Path  # the built function: the task root (/var/task)
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    architectures: tuple[str, ...]
    layers: tuple[str, ...]  # logical ids, in the order Lambda extracts them
    environment: dict[str, Any]  # unresolved (intrinsics left in)
    folder: str  # functions/<folder>/ and events/<folder>/ of the repository (the source CodeUri)


def _merge(globals_: Any, own: Any) -> Any:
    if isinstance(globals_, dict) and isinstance(own, dict):
        return {**globals_, **{k: _merge(globals_.get(k), v) for k, v in own.items()}}
    if isinstance(globals_, list) and isinstance(own, list):
        return globals_ + own
    return globals_ if own is None else own


def functions(document: dict[str, Any], build_dir: Path, source: dict[str, Any]) -> list[Function]:
    """The built template's functions; `source` is the repository's template (for the folders)."""
    defaults = document.get("Globals", {}).get("Function", {})
    found = []
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = _merge(defaults, resource["Properties"])
        layers = tuple(layer["Ref"] for layer in props.get("Layers", []))
        found.append(
            Function(
                logical_id=logical_id,
                code=(build_dir / props["CodeUri"]).resolve(),
                handler=props["Handler"],
                runtime=props["Runtime"],
                memory_mb=int(props.get("MemorySize", 128)),
                timeout_s=int(props.get("Timeout", 3)),
                architectures=tuple(props.get("Architectures", ["x86_64"])),
                layers=layers,
                environment=dict(props.get("Environment", {}).get("Variables", {})),
                folder=Path(source["Resources"][logical_id]["Properties"]["CodeUri"]).name,
            )
        )
    return found


def layers(document: dict[str, Any], build_dir: Path) -> dict[str, Layer]:
    return {
        logical_id: Layer(
            logical_id,
            (build_dir / resource["Properties"]["ContentUri"]).resolve(),
            tuple(resource["Properties"].get("CompatibleArchitectures", ["x86_64"])),
        )
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    }


def parameter_defaults(document: dict[str, Any]) -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in document.get("Parameters", {}).items()}


def resolve(value: Any, values: Mapping[str, str], conditions: Mapping[str, bool]) -> Any:
    """Ref, Fn::Sub, Fn::GetAtt (…Arn / …Name), Fn::If, Fn::Join: what environment variables use.
    `values` maps a logical id or parameter or pseudo parameter (AWS::Region) to its Ref value;
    `<id>.Arn` entries give GetAtt values."""
    if isinstance(value, list):
        return [resolve(v, values, conditions) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: resolve(v, values, conditions) for k, v in value.items()}
    ((name, arg),) = value.items()
    if name == "Ref":
        return values[arg]
    if name == "Fn::GetAtt":
        return values[".".join(arg)]
    if name == "Fn::Sub":
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], values, conditions))
        scope = {**values, **local}
        return re.sub(r"\$\{([^}!]+)\}", lambda m: str(scope[m[1]]), text)
    if name == "Fn::If":
        condition, yes, no = arg
        return resolve(yes if conditions[condition] else no, values, conditions)
    if name == "Fn::Select":
        return resolve(arg[1], values, conditions)[int(arg[0])]
    if name == "Fn::Split":
        return str(resolve(arg[1], values, conditions)).split(arg[0])
    if name == "Fn::Join":
        return arg[0].join(str(resolve(v, values, conditions)) for v in arg[1])
    raise ValueError(f"unsupported intrinsic {name} in {value!r}")
