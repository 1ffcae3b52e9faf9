"""Write the External Service registration in sfdx/ from the code: `make sfdx`.

Two files, both generated whole from `build_spec(ACTIONS)`:

* `StiggActions.yaml`: the OpenAPI document. SDR's decomposed format names it `.yaml`, but
  its content may be JSON (valid YAML); with `schemaUploadFileExtension` `json` SDR inlines
  it into `<schema>` as JSON on conversion. Pretty JSON with sorted keys, so reordering a
  schema's fields in Python changes nothing here.
* `StiggActions.externalServiceRegistration-meta.xml`: one `<operations>` entry per
  operationId (lowercased, other characters as `x<hex>`; reference §1.4), every other element
  fixed below, in the element order of reference §2.1. To change one of them, change it here
  and run `make sfdx`; a contract test fails while sfdx/ differs from what this writes.

`python -m app.sfdx_registration` writes what changed; `--check` only lists it (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

REGISTRATION = "StiggActions"
ESR_DIR = Path("sfdx/force-app/main/default/externalServiceRegistrations")
SPEC_FILE = ESR_DIR / f"{REGISTRATION}.yaml"
META_FILE = ESR_DIR / f"{REGISTRATION}.externalServiceRegistration-meta.xml"
REPO_ROOT = Path(__file__).resolve().parents[1]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

DESCRIPTION = (
    "Stigg Flow Actions: provisions Stigg customers, subscriptions and credit grants. The spec "
    f"lives next to this file in {SPEC_FILE.name} (decomposed source format; SDR inlines it into "
    "schema on deploy). It is generated from the service: do not edit it by hand."
)
NAMED_CREDENTIAL = "StiggActions"
SCHEMA_UPLOAD_FILE_NAME = "stigg-actions.openapi.json"
SERVICE_BINDING = {
    "host": "",
    "basePath": "/",
    "allowedSchemes": [],
    "requestMediaTypes": [],
    "responseMediaTypes": [],
    "compatibleMediaTypes": {},
}
_XML_ENTITIES = {'"': "&quot;"}


def operation_name(operation_id: str) -> str:
    """The registration's `<operations><name>` for an operationId (reference §1.4)."""
    return re.sub(r"[^a-z0-9]", lambda m: f"x{ord(m.group()):x}", operation_id.lower())


def operation_ids(spec: dict) -> list[str]:
    """The spec's operationIds in document order."""
    found = []
    for path, item in spec.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                operation_id = item[method].get("operationId")
                if not operation_id:
                    raise ValueError(f"{method.upper()} {path} has no operationId")
                found.append(operation_id)
    return found


def render_spec(spec: dict) -> str:
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_meta(spec: dict) -> str:
    names = [operation_name(operation_id) for operation_id in operation_ids(spec)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"operationIds collide once lowercased: {', '.join(duplicates)}")

    def element(tag: str, value: str, indent: str = "    ") -> str:
        return f"{indent}<{tag}>{escape(value, _XML_ENTITIES)}</{tag}>"

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ExternalServiceRegistration xmlns="http://soap.sforce.com/2006/04/metadata">',
        element("description", DESCRIPTION),
        element("label", REGISTRATION),
        element("namedCredentialReference", NAMED_CREDENTIAL),
    ]
    for name in names:
        lines += [
            "    <operations>",
            element("active", "true", "        "),
            element("name", name, "        "),
            "    </operations>",
        ]
    lines += [
        element("registrationProviderType", "Custom"),
        element("schemaType", "OpenApi3"),
        element("schemaUploadFileExtension", "json"),
        element("schemaUploadFileName", SCHEMA_UPLOAD_FILE_NAME),
        element("serviceBinding", json.dumps(SERVICE_BINDING, separators=(",", ":"))),
        element("status", "Complete"),
        "</ExternalServiceRegistration>",
    ]
    return "\n".join(lines) + "\n"


def render(spec: dict) -> dict[Path, str]:
    """The exact contents of the registration files, by path relative to the repository."""
    return {SPEC_FILE: render_spec(spec), META_FILE: render_meta(spec)}


def generated_spec() -> dict:
    from actions import ACTIONS
    from app.openapi import build_spec

    return build_spec(ACTIONS, batches=False)


def _changed(repo_root: Path, spec: dict | None) -> dict[Path, str]:
    rendered = render(generated_spec() if spec is None else spec)
    changed = {}
    for relative, content in rendered.items():
        target = repo_root / relative
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != content:
            changed[relative] = content
    return changed


def check(repo_root: Path = REPO_ROOT, spec: dict | None = None) -> list[str]:
    """Paths (relative, POSIX) of the registration files that differ from the generated ones."""
    return [relative.as_posix() for relative in _changed(Path(repo_root), spec)]


def write(repo_root: Path = REPO_ROOT, spec: dict | None = None) -> list[Path]:
    """Write the registration files that differ; return their paths."""
    written = []
    for relative, content in _changed(Path(repo_root), spec).items():
        target = Path(repo_root) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="\n") as out:
            out.write(content)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sfdx_registration", description=__doc__)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument(
        "--check", action="store_true", help="only list the files that differ (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.root)
        for name in stale:
            print(f"out of date: {name}")
        if stale:
            print("run `make sfdx` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    written = write(args.root)
    for path in written:
        print(f"wrote {os.path.relpath(path)}")
    if not written:
        print("sfdx/ registration is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
