"""The External Service registration committed in sfdx/ is the one the code generates."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from openapi_spec_validator import validate

from app import sfdx_registration
from app.sfdx_registration import META_FILE, SPEC_FILE, check, generated_spec, render
from tests.contract import sfdx
from tests.contract.conftest import load_spec
from tests.contract.sfdx import NS, text


def test_committed_registration_is_the_generated_one():
    stale = check(sfdx.ROOT)
    assert not stale, (
        f"not what the code generates: {', '.join(stale)}; run `make sfdx` and commit the result"
    )


def test_registration_operations_are_the_spec_operation_ids_lowercased():
    spec = load_spec(sfdx.ROOT / SPEC_FILE)
    root = ET.parse(sfdx.ROOT / META_FILE).getroot()
    names = [text(operation, "name") for operation in root.findall(NS + "operations")]
    operation_ids = [
        operation["operationId"]
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in sfdx_registration.HTTP_METHODS
    ]

    assert sorted(names) == sorted(operation_id.lower() for operation_id in operation_ids)
    assert {text(operation, "active") for operation in root.findall(NS + "operations")} == {"true"}


def test_generated_spec_file_is_valid_openapi():
    document = load_spec(sfdx.ROOT / SPEC_FILE)

    assert document["openapi"] == "3.0.3"
    validate(document)


def test_render_is_the_served_document_and_stable():
    spec = generated_spec()
    first, second = render(spec), render(generated_spec())

    assert first == second
    assert set(first) == {SPEC_FILE, META_FILE}
    assert json.loads(first[SPEC_FILE]) == spec
    assert all(content.endswith("\n") for content in first.values())


def test_operation_names_encode_other_characters_as_hex():
    assert sfdx_registration.operation_name("createCustomer") == "createcustomer"
    assert sfdx_registration.operation_name("get_v2-item") == "getx5fv2x2ditem"
    assert sfdx_registration.operation_name("grantCredits2") == sfdx.operation_name("grantCredits2")


def test_check_flags_a_stale_copy_and_write_repairs_it(tmp_path):
    written = sfdx_registration.write(tmp_path)

    assert sorted(path.relative_to(tmp_path) for path in written) == sorted([SPEC_FILE, META_FILE])
    assert check(tmp_path) == []
    assert sfdx_registration.write(tmp_path) == []

    meta = tmp_path / META_FILE
    meta.write_text(meta.read_text().replace("createsubscription", "createsubscriptionx"))
    assert check(tmp_path) == [META_FILE.as_posix()]
