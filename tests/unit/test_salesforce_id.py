import pytest

from schemas.salesforce_id import InvalidSalesforceId, checksum_suffix, to_18


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("001D000000IqhSL", "001D000000IqhSLIAZ"),
        ("001000000000000", "001000000000000AAA"),
        ("006Dn00000ABCDE", "006Dn00000ABCDEIA5"),
    ],
)
def test_15_character_ids_get_their_checksum(id15, id18):
    assert to_18(id15) == id18
    assert to_18(id18) == id18


def test_the_checksum_suffix_encodes_upper_case_positions():
    assert checksum_suffix("AAAAAAAAAAAAAAA") == "555"
    assert checksum_suffix("aaaaaaaaaaaaaaa") == "AAA"


def test_an_18_character_id_with_a_lower_case_suffix_is_accepted():
    assert to_18("001D000000IqhSLiaz") == "001D000000IqhSLIAZ"


@pytest.mark.parametrize("bad", ["001D000000iqhSLIAZ", "001D000000IqhS", "001D000000IqhSL-AZ", ""])
def test_invalid_ids_are_refused(bad):
    with pytest.raises(InvalidSalesforceId):
        to_18(bad)
