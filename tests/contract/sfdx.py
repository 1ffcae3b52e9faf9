"""Read the sfdx/ project and the OpenAPI spec the way Salesforce does, for the contract tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SFDX_DIR = ROOT / "sfdx"
DEFAULT_DIR = SFDX_DIR / "force-app" / "main" / "default"
ESR_DIR = DEFAULT_DIR / "externalServiceRegistrations"
FLOWS_DIR = DEFAULT_DIR / "flows"
FLOW_FILE = FLOWS_DIR / "Stigg_Opportunity_Closed_Won.flow-meta.xml"
BULK_FLOW_FILE = FLOWS_DIR / "Stigg_Opportunity_Closed_Won_Bulk.flow-meta.xml"
WRITEBACK_FLOW_FILE = FLOWS_DIR / "Stigg_Provisioning_Result_Writeback.flow-meta.xml"
CLOSED_LOST_FLOW_FILE = FLOWS_DIR / "Stigg_Opportunity_Closed_Lost_Cancel.flow-meta.xml"
FLOW_FILES = sorted(FLOWS_DIR.glob("*.flow-meta.xml"))
CLASSES_DIR = DEFAULT_DIR / "classes"
EVENT = "Stigg_Provisioning_Result__e"
REGISTRATION = "StiggActions"
APEX_TYPE_PREFIX = f"ExternalService__{REGISTRATION}_"
NS = "{http://soap.sforce.com/2006/04/metadata}"


def local(tag: str) -> str:
    return tag.removeprefix(NS)


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def child_tags(element: ET.Element) -> list[str]:
    return [local(child.tag) for child in element]


def text(element: ET.Element, tag: str) -> str | None:
    found = element.find(NS + tag)
    return None if found is None else (found.text or "")


def order_errors(element: ET.Element, order: list[str], where: str) -> list[str]:
    """Children must appear in `order` (a tag may repeat, but only contiguously)."""
    errors, last = [], -1
    for tag in child_tags(element):
        if tag not in order:
            errors.append(f"{where}: unknown element <{tag}>")
            continue
        index = order.index(tag)
        if index < last:
            errors.append(f"{where}: <{tag}> after <{order[last]}>")
        last = max(last, index)
    return errors


def operation_name(operation_id: str) -> str:
    """ESR <operations><name>: operationId lowercased, other characters as x<hex>."""
    return "".join(c if c.isalnum() else f"x{ord(c):x}" for c in operation_id.lower())


# --- OpenAPI -----------------------------------------------------------------------------


@dataclass
class Operation:
    operation_id: str
    path: str
    method: str
    inputs: set[str]  # Flow input names: "body" plus path/query/header parameter names
    request_schema: str | None  # components/schemas name of the JSON body
    responses: dict[str, dict]  # status code ("200", "4XX", ...) -> resolved schema


class Spec:
    def __init__(self, document: dict, path: Path):
        self.document = document
        self.path = path
        self.schemas: dict[str, dict] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    @staticmethod
    def ref_name(schema: dict) -> str | None:
        ref = schema.get("$ref")
        return ref.rsplit("/", 1)[1] if ref else None

    def operations(self) -> dict[str, Operation]:
        found = {}
        for path, item in self.document.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method not in {"get", "put", "post", "patch", "delete"}:
                    continue
                inputs = {p["name"] for p in [*shared, *op.get("parameters", [])]}
                body = op.get("requestBody", {}).get("content", {}).get("application/json")
                if body:
                    inputs.add("body")
                responses = {}
                for code, response in op.get("responses", {}).items():
                    content = response.get("content", {}).get("application/json")
                    responses[str(code)] = self.resolve(content["schema"]) if content else {}
                found[op["operationId"]] = Operation(
                    op["operationId"],
                    path,
                    method,
                    inputs,
                    self.ref_name(body["schema"]) if body else None,
                    responses,
                )
        return found

    def has_path(self, schema: dict, fields: list[str]) -> bool:
        """Whether a.b.c can be read from schema (objects, arrays of objects, allOf)."""
        schema = self.resolve(schema)
        if not fields:
            return True
        if schema.get("type") == "array":
            return self.has_path(schema.get("items", {}), fields)
        properties = dict(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            properties.update(self.resolve(part).get("properties", {}))
        head, *rest = fields
        return head in properties and self.has_path(properties[head], rest)


# --- Flow --------------------------------------------------------------------------------

NODE_KINDS = (
    "actionCalls",
    "assignments",
    "collectionProcessors",
    "decisions",
    "loops",
    "recordCreates",
    "recordDeletes",
    "recordLookups",
    "recordUpdates",
    "screens",
    "subflows",
    "waits",
)
DML_KINDS = ("recordCreates", "recordDeletes", "recordUpdates")
CONNECTOR_TAGS = (
    "connector",
    "defaultConnector",
    "faultConnector",
    "nextValueConnector",
    "noMoreValuesConnector",
)
REFERENCE_TAGS = (
    "elementReference",
    "leftValueReference",
    "assignToReference",
    "collectionReference",
    "assignNextValueToReference",
    "inputReference",
    "outputReference",
)
MERGE_FIELD = re.compile(r"\{!([^}]+)\}")


@dataclass
class Node:
    kind: str
    name: str
    element: ET.Element


class Flow:
    def __init__(self, root: ET.Element, path: Path):
        self.root = root
        self.path = path
        self.nodes: dict[str, Node] = {}
        for child in root:
            kind = local(child.tag)
            if kind in NODE_KINDS:
                name = text(child, "name")
                self.nodes[name] = Node(kind, name, child)
        self.start = root.find(NS + "start")

    @classmethod
    def load(cls, path: Path) -> Flow:
        return cls(parse(path), path)

    def of_kind(self, *kinds: str) -> list[Node]:
        return [node for node in self.nodes.values() if node.kind in kinds]

    def variables(self) -> dict[str, ET.Element]:
        return {text(v, "name"): v for v in self.root.findall(NS + "variables")}

    @staticmethod
    def targets(element: ET.Element) -> Iterator[str]:
        """Connector targets directly under element or under its decision rules."""
        for tag in CONNECTOR_TAGS:
            for connector in element.findall(NS + tag):
                yield text(connector, "targetReference")
        for rule in element.findall(NS + "rules"):
            for connector in rule.findall(NS + "connector"):
                yield text(connector, "targetReference")

    def successors(self, name: str) -> set[str]:
        return set(self.targets(self.nodes[name].element))

    def reachable_from(self, names: set[str]) -> set[str]:
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            todo.extend(self.successors(name))
        return seen

    def entry_points(self) -> dict[str, set[str]]:
        """'immediate' (start/connector) and one entry per scheduled path."""
        entries = {"immediate": set(self.targets(self.start))}
        for index, path in enumerate(self.start.findall(NS + "scheduledPaths")):
            key = text(path, "pathType") or text(path, "name") or f"path{index}"
            entries[key] = set(self.targets(path))
        return entries

    def references(self) -> Iterator[tuple[str, str]]:
        """(where, reference) for every element reference and {!merge field} in the flow."""
        for element in self.root.iter():
            tag = local(element.tag)
            value = (element.text or "").strip()
            if not value:
                continue
            if tag in REFERENCE_TAGS:
                yield tag, value
            for match in MERGE_FIELD.finditer(value):
                yield tag, match.group(1).strip()


# --- Apex (a reader for the contract checks, not a parser: apex-parser checks the syntax) -----

APEX_STRING = re.compile(r"'(?:\\.|[^'\\])*'")
APEX_ANNOTATION = re.compile(r"@\w+(?:\s*\([^)]*\))?")


class Apex:
    """One Apex class file: its constants, map-of-list tables and inner classes' fields."""

    def __init__(self, name: str):
        self.name = name
        self.source = (CLASSES_DIR / f"{name}.cls").read_text(encoding="utf-8")

    def constant(self, name: str) -> str | int:
        match = re.search(rf"\b{name}\s*=\s*('(?:[^'\\]|\\.)*'|-?\d+)\s*;", self.source)
        assert match, f"{self.name}: no constant {name}"
        value = match.group(1)
        return value[1:-1] if value.startswith("'") else int(value)

    def table(self, name: str) -> dict[str, list[str]]:
        """`NAME = new Map<String, List<String>>{ 'key' => new List<String>{ 'a', 'b' }, ... };`"""
        start = self.source.index(f"{name} = new Map<String, List<String>>{{")
        body = self.source[start : self.source.index("};", start)]
        return {
            key: re.findall(r"'(\w+)'", values)
            for key, values in re.findall(r"'(\w+)'\s*=>\s*new List<String>\{([^}]*)\}", body)
        }

    def string_map(self, name: str) -> dict[str, str]:
        """`NAME = new Map<String, String>{ 'a' => 'b', ... };`"""
        start = self.source.index(f"{name} = new Map<String, String>{{")
        body = self.source[start : self.source.index("};", start)]
        return dict(re.findall(r"'(\w+)'\s*=>\s*'(\w+)'", body))

    def block(self, header: str) -> str:
        """The text between the braces that follow `header` (a class or method header)."""
        start = self.source.index(header)
        open_at = self.source.index("{", start)
        depth = 0
        for index in range(open_at, len(self.source)):
            char = self.source[index]
            depth += char == "{"
            depth -= char == "}"
            if depth == 0:
                return self.source[open_at + 1 : index]
        raise AssertionError(f"{self.name}: unbalanced braces after {header!r}")

    def fields(self, class_name: str) -> list[str]:
        """Instance and static field names declared directly in an inner class, in order."""
        body = APEX_ANNOTATION.sub("", APEX_STRING.sub("''", self.block(f"class {class_name} ")))
        names, pending, depth = [], "", 0
        for char in body:
            if depth:
                depth += (char == "{") - (char == "}")
                continue
            if char == "{":
                if "=" not in pending:  # a method, constructor or class header: drop it
                    pending = ""
                depth = 1
            elif char == "}":
                continue
            elif char == ";":
                declaration = pending.split("=")[0].split()
                if declaration:
                    names.append(declaration[-1])
                pending = ""
            else:
                pending += char
        return names
