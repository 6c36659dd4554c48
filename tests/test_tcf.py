"""The TCF v2 TC string decoder (processing/tcf.py).

Published vectors, with the expected values as their sources state them:

- IAB Tech Lab, iabtcf-java, ``iabtcf-decoder/src/test/java/com/iabtcf/decoder/TCStringV2Test.java``
  (commit 1bc03e64eb873a427dea52b3a1ae0d7c7ccfd1b3);
- IAB Tech Lab, iabtcf-es, ``modules/core/test/ReportedIssues.test.ts`` (issues 142, 156, 201;
  commit 839b9557bfb9852ab9187a65747fce8e305b90b3);
- travelaudience/go-iabtcf, ``parse_test.go`` and ``disclosed_vendors_test.go``
  (commit 753a8eda077ff7973c1379decce5db021107bb86);
- SirDataFR/iabtcfv2 (Go), ``decode_test.go``;
- the example string of IAB's spec, "Consent string and vendor list formats v2" (TCF v2.3).

Then Hypothesis: random text never raises; truncations never raise; strings made by the tiny
encoder below (written from the spec, test-only) decode to what was encoded.
"""

from __future__ import annotations

import base64
import calendar
import time
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafly.processing.tcf import (
    MAX_TC_STRING_LENGTH,
    RestrictionType,
    TCString,
    VendorIds,
    decode_tc_string,
    is_usable,
    vendor_allowed,
)


def utc(text: str) -> int:
    """'2020-01-26T17:01:00Z' -> epoch seconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def decode(text: str) -> TCString:
    tc = decode_tc_string(text)
    assert tc is not None, text
    return tc


def java_base64_from_bit_string(bits: str) -> str:
    """iabtcf-java's test helper ``base64FromBitString``, as written there: groups of 8 bits
    (the last group shorter, read as a number), URL-safe base64 with padding."""
    groups = [bits[i : i + 8] for i in range(0, len(bits), 8)]
    return base64.urlsafe_b64encode(bytes(int(g, 2) for g in groups)).decode()


# ---------------------------------------------------------------- IAB iabtcf-java (TCStringV2Test)


def test_java_core_fields() -> None:
    # testCanConstructTCModelFromBase64String ("created here https://www.iabtcf.com/#/encode")
    tc = decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA")
    assert tc.version == 2
    assert tc.created == utc("2020-01-26T17:01:00Z")
    assert tc.last_updated == utc("2021-02-02T17:01:00Z")
    assert tc.cmp_id == 675
    assert tc.cmp_version == 2
    assert tc.consent_screen == 1
    assert tc.vendor_list_version == 15
    assert tc.tcf_policy_version == 2
    assert tc.consent_language == "EN"
    assert tc.publisher_cc == "AA"
    assert tc.is_service_specific is False
    assert tc.purpose_one_treatment is True
    assert tc.use_non_standard_texts is False
    assert tc.special_feature_opt_ins == {1}
    assert tc.purposes_consent == {2, 10}
    assert tc.purposes_li_transparency == {2, 9}


CORE_BITFIELDS = "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA"


def test_java_bit_field_vendors() -> None:
    tc = decode(CORE_BITFIELDS)  # testConstructConsentsFromBitFields
    assert tc.purposes_consent == {3, 4, 5, 6, 7, 8, 9}
    assert tc.vendor_consents == {23, 37, 47, 48, 53, 65, 98}
    assert tc.vendor_legitimate_interests == {37, 47, 48, 53, 65, 98, 129}
    assert tc.disclosed_vendors is None and tc.allowed_vendors is None and tc.publisher_tc is None


def test_java_disclosed_and_allowed_vendors() -> None:
    tc = decode(CORE_BITFIELDS + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA")
    assert tc.allowed_vendors == {12, 23, 37, 47, 48, 53}
    assert tc.disclosed_vendors == {23, 37, 47, 48, 53, 65, 98, 129}


def test_java_all_parts_with_padding() -> None:
    # testCanParseAllParts: the publisher TC segment carries base64 padding ("=")
    tc = decode(CORE_BITFIELDS + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=")
    assert tc.publisher_tc is not None
    assert len(tc.publisher_tc.purposes_consent) == 1


def test_java_range_encoded_legitimate_interests() -> None:
    tc = decode("COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA")
    assert tc.vendor_legitimate_interests == {128}


def test_java_vendor_ranges() -> None:
    disclosed = (
        ".IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQ"
        "AAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw"
    )
    assert decode(
        "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA" + disclosed
    ).vendor_consents == {
        702,
        703,
    }
    assert decode("COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA" + disclosed).vendor_consents == {
        703
    }


def test_java_purposes_consent() -> None:
    tc = decode("COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA")
    assert {1, 2} <= tc.purposes_consent


def test_java_publisher_restrictions() -> None:
    bits = (
        "0000100011101011100"
        "1000000000000001010"
        "0000001110101110010"
        "0000000000000101000"
        "0000110011111000000"
        "0000000000000000100"
        "0011010000000011110"
        "0001000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "000000000011"  # NumPubRestrictions (3)
        + "000001"
        + "01"
        + "000000000000"  # purpose 1, require consent, no vendors
        + "000010"
        + "00"
        + "000000000000"  # purpose 2, not allowed
        + "000011"
        + "10"
        + "000000000000"  # purpose 3, require legitimate interest
        + "0"  # padding
    )
    tc = decode(java_base64_from_bit_string(bits))
    got = [(r.purpose_id, r.restriction_type, set(r.vendors)) for r in tc.publisher_restrictions]
    assert got == [
        (1, RestrictionType.REQUIRE_CONSENT, set()),
        (2, RestrictionType.NOT_ALLOWED, set()),
        (3, RestrictionType.REQUIRE_LEGITIMATE_INTEREST, set()),
    ]


def test_java_publisher_purposes() -> None:
    segment = "011" + "1" + "0" * 23 + "0" * 23 + "1" + "000010" + "01" + "11" + "000"
    tc = decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA." + java_base64_from_bit_string(segment))
    assert tc.publisher_tc is not None
    assert tc.publisher_tc.purposes_consent == {1}
    assert tc.publisher_tc.purposes_li_transparency == {24}
    assert tc.publisher_tc.num_custom_purposes == 2
    assert tc.publisher_tc.custom_purposes_consent == {2}
    assert tc.publisher_tc.custom_purposes_li_transparency == {1, 2}


def test_second_core_segment_is_refused_where_java_ignores_it() -> None:
    # testDefaultSegmentType: iabtcf-java reads a trailing segment of type 0 as an empty publisher
    # TC. The spec has one core segment, first; this decoder calls a second one malformed.
    assert (
        decode_tc_string(
            "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA." + java_base64_from_bit_string("00000000")
        )
        is None
    )


# ---------------------------------------------------------------- IAB iabtcf-es (ReportedIssues)

ES_201 = (
    "CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-wzjheMs-8NyZ-X_J4Wv2MyvB34JqQKG"
    "RgkunLBAQdtHGncTQgBwIlViTLMY02MjzNKJrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7e18f3_Pvv9uj"
    "zGr_v_W9v2GccLxln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGmxkeZpRNZIkUtjb2zrAw_t8_i6f7"
    "JTPen39___d-___--__ICgKAOAAcAA4AFAAjgB6AEYALcGACAW0AtoJAHAAOAAcACgARwA9ACMAFuFABALaAW0GgDgAHAAOAB"
    "QAI4AegBGAC3DgAgFtALaEQBwADgAHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgAUACOAHoARgAtxYAIBbQC2hkAcAA4ABwA"
    "KABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAjgB6AEYALceACAW0AtohAHAAOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOA"
    "BQAI4AegBGAC3JgAgFtALaKQBwADgAHAAoAEcAPQAjABblQAQC2gFtA"
)


def test_es_201_restriction_encoded_several_times() -> None:
    tc = decode(ES_201)
    assert tc.version == 2
    vendors: set[int] = set()
    for r in tc.publisher_restrictions:
        if r.purpose_id == 1 and r.restriction_type is RestrictionType.REQUIRE_CONSENT:
            vendors |= set(r.vendors)
    assert sorted(vendors) == [7, 20, 71, 122, 140, 183]


ES_142_BITFIELD_SHORTER_THAN_MAX_ID = (
    "CLSYjTaOngnCIAOABBENAXCMAGOAABBAAA7IA5n-m7fP6_3fbqVv6E__PoA5Aqff3aJx8tv_1967rfnQEQoAIAAQCrwkAEABAc"
    "ACABIMACAAuApEVABABUSABgBCAVSAtIoACACIArYQAHACgAFgAVwBJgDcAI7AWgMAAgBiKgAgBMgFfKQAQBRkQAQA4AFiBAA"
    "oA-AEVAJlAVgAtYcACAJcAr4eABAK8OgBgFzAOmAqwgABAWyA.IFukWSQh"
)
ES_156_V1 = (
    "BOhwdphOxFC7tAHABBFRC--AAAAuhr_7__7-_9_-_f__9uj3Or_v_f__32ccL59v_h_7v-_7fi_20nV4u_1vft9yfk1-5ctDzt"
    "p507iakivXmqdeb9v_nz3_5pxP78k89r7337Ew_v8_v-b7BCON_YxEiA"
)


def test_es_142_bit_field_shorter_than_max_vendor_id_is_unreadable() -> None:
    assert decode_tc_string(ES_142_BITFIELD_SHORTER_THAN_MAX_ID) is None  # iabtcf-es: "to.throw()"


def test_es_156_version_1_is_unreadable() -> None:
    assert decode_tc_string(ES_156_V1) is None  # iabtcf-es decodes it as version 1; we read only v2
    assert decode_tc_string("BO2e4qiO2e4qiB9ABADEDS-AAAAxKABgACBiQA") is None  # issue 191, also v1


# ---------------------------------------------------------------- travelaudience/go-iabtcf

GO_V2_SMALL = (
    "COzcJxTOzcJxTBcAAAENAiCMAP_AAAAAAAAADTwAQDTgAAAA.IF5EX2S5OI2tho2YdF7BEYYwfJxyigMgShgQIsS8NwIeFbBoG"
    "PmAAHBG4JAQAGBAkkACBAQIsHGBcCQABgIgRiRCMQEGMjzNKBJBAggkbI0FACCVmnkHS3ZCY70-6u__bA"
)
GO_V2_BIG = (
    (
        "CP9Qr_AP9Qr_AAfETDFRAwEsAP_gAEPgAAigg1NX_H__bX9v-Xr36ft0eY1f99j77uQxBhfJs-4FzLvW_JwX32EzNE36tqYK"
        "mRIEu3bBIQFtHJnUTVihaogVrzHsYkGchTNKJ-BkiHMRe2dYCF5vmYtj-QKZ5_p_d3f52T_9_dv-3dzzz91nv3f9f-f1eLid"
        "a59tH_v_bRKb-_If9_7-_4v0_t_rk2_eTVv_9evv79-u_t____9_9____4"
    )
    + "A" * 484
    + (
        "QAAAEQamr_j__tr-3_L179P26PMav--x993IYgwvk2fcC5l3rfk4L77CZmib9W1MFTIkCXbtgkIC2jkzqJqxQtUQK15j2MSD"
        "OQpmlE_AyRDmIvbOsBC83zMWx_IFM8_0_u7v87J_-_u3_bu555-6z37v-v_P6vFxOtc-2j_3_tolN_fkP-_9_f8X6f2_1ybf"
        "vJq3_-vX39-_Xf2____-_-____8"
    )
    + "A" * 484
    + "IAAACAA"
)
# go-iabtcf's wantVendors for GO_V2_BIG, its "11010101 11111111 ..." bit string written as hex bytes
GO_V2_BIG_VENDOR_BYTES = bytes.fromhex(
    "d5ff1fffdb5fdbfe5ebdfa7edd1e6357fdf63efbb90c4185f26cfb81732ef5bf2705f7d84ccd137eada982a644812eddb0"
    "48405b4726751356285aa2056bcc7b189067214cd289f819221cc45ed9d602179be662d8fe40a679fe9fddddfe764fff7f76"
    "ffb7773cf3f759efddff5ff9fd5e2e275ae7db47feffdb44a6fefc87fdffbfbfe2fd3fb7fae4dbf79356fffd7afbfbf7ebbf"
    "b7ffffffdffdffffffe0" + "00" * 362 + "0100000040"
)


def test_go_vector_strings_are_as_published() -> None:
    assert len(GO_V2_BIG) == 1444
    assert GO_V2_BIG.count(".") == 0


def test_go_small_vector() -> None:
    tc = decode(GO_V2_SMALL)
    assert tc.version == 2
    assert tc.cmp_id == 92
    assert tc.consent_language == "EN"
    assert tc.vendor_list_version == 34
    assert tc.tcf_policy_version == 2
    assert tc.special_feature_opt_ins == {1, 2}  # "11000000 00000000"
    assert tc.purposes_consent == set(range(1, 11))  # "11111111 11000000 00000000"
    assert tc.purposes_li_transparency == set()
    assert tc.publisher_cc == "AA"
    assert tc.vendor_consents == {423}  # range encoded, max 423, one entry 423-423
    assert 10 not in tc.vendor_consents and 424 not in tc.vendor_consents


def test_go_big_vector() -> None:
    tc = decode(GO_V2_BIG)
    assert tc.version == 2
    assert tc.purposes_consent == set(range(1, 12))  # "11111111 11100000 00000000"
    assert tc.special_feature_opt_ins == {1, 2}
    assert tc.publisher_cc == "EU"
    expected = {
        i + 1
        for i in range(len(GO_V2_BIG_VENDOR_BYTES) * 8)
        if GO_V2_BIG_VENDOR_BYTES[i // 8] >> (7 - i % 8) & 1
    }
    assert max(expected) == 4202  # wantMaxVendorID
    assert tc.vendor_consents == expected
    for vendor, allowed in {
        0: False,
        1: True,
        41: False,
        42: True,
        423: True,
        4202: True,
        4203: False,
    }.items():
        assert (vendor in tc.vendor_consents) is allowed, vendor
    # EveryPurposeAllowed cases, through vendor_allowed for a vendor with consent
    assert is_usable(tc)
    assert vendor_allowed(tc, 42, [1])
    assert vendor_allowed(tc, 42, range(1, 12))
    assert vendor_allowed(tc, 42, [2, 5, 7, 9])
    assert not vendor_allowed(tc, 42, [0])
    assert not vendor_allowed(tc, 42, [23])
    assert not vendor_allowed(tc, 42, [24])
    assert not vendor_allowed(tc, 42, [13, 17, 19])
    assert not vendor_allowed(tc, 42, [9, 13, 5, 7])
    assert not vendor_allowed(tc, 41, [1])
    assert not vendor_allowed(tc, 4203, [1])


def test_go_version_1_is_unreadable() -> None:
    # parse_test.go "v1": the same string with a version 1 core ('B' instead of 'C')
    assert decode_tc_string("B" + GO_V2_SMALL[1:]) is None


def _sprintb(number: int, bits: int) -> str:
    return format(number, f"0{bits}b")[-bits:]


SPEC_CORE = "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA"


@pytest.mark.parametrize(
    ("block", "has_123"),
    [
        (_sprintb(1, 3) + _sprintb(0, 16), False),  # case 1
        (_sprintb(1, 3) + _sprintb(256, 16) + "1" + _sprintb(0, 12), False),  # case 6
        (_sprintb(1, 3) + _sprintb(256, 16) + "1" + _sprintb(1, 12) + "0" + _sprintb(123, 16), True),
        (_sprintb(1, 3) + _sprintb(256, 16) + "1" + _sprintb(1, 12) + "0" + _sprintb(124, 16), False),
        (
            _sprintb(1, 3)
            + _sprintb(256, 16)
            + "1"
            + _sprintb(1, 12)
            + "1"
            + _sprintb(120, 16)
            + _sprintb(127, 16),
            True,
        ),
        (
            _sprintb(1, 3)
            + _sprintb(256, 16)
            + "1"
            + _sprintb(1, 12)
            + "1"
            + _sprintb(130, 16)
            + _sprintb(137, 16),
            False,
        ),
        (
            _sprintb(1, 3)
            + _sprintb(256, 16)
            + "1"
            + _sprintb(2, 12)
            + "1"
            + _sprintb(130, 16)
            + _sprintb(137, 16)
            + "0"
            + _sprintb(123, 16),
            True,
        ),
        (
            _sprintb(1, 3)
            + _sprintb(256, 16)
            + "1"
            + _sprintb(2, 12)
            + "0"
            + _sprintb(124, 16)
            + "1"
            + _sprintb(120, 16)
            + _sprintb(123, 16),
            True,
        ),  # case 12
    ],
)
def test_go_disclosed_vendor_blocks(block: str, has_123: bool) -> None:
    # disclosed_vendors_test.go cases 1 and 6-12, after a valid core (go-iabtcf uses a dummy core
    # this decoder would call truncated). Its cases 2-5 are bit fields shorter than MaxVendorId,
    # which go-iabtcf reads leniently and iabtcf-es (issue 142) and this decoder refuse.
    padded = block + "0" * (-len(block) % 8)
    segment = base64.urlsafe_b64encode(int(padded, 2).to_bytes(len(padded) // 8, "big")).decode().rstrip("=")
    tc = decode(SPEC_CORE + "." + segment)
    assert tc.disclosed_vendors is not None
    assert (123 in tc.disclosed_vendors) is has_123


# ---------------------------------------------------------------- SirDataFR/iabtcfv2, IAB spec

SIRDATA = (
    "COxR03kOxR1CqBcABCENAgCMAP_AAH_AAAqIF3EXySoGY2thI2YVFxBEIYwfJxyigMgChgQIsSwNQIeFLBoGLiAAHBGYJAQAGB"
    "AEEACBAQIkHGBMCQAAgAgBiRCMQEGMCzNIBIBAggEbY0FACCVmHkHSmZCY7064O__QLuIJEFQMAkSBAIACLECIQwAQDiAAAYAl"
    "AAABAhIaAAgIWBQEeAAAACAwAAgAAABBAAACAAQAAICIAAABAAAgAiAQAAAAGgIQAACBABACRIAAAEANCAAgiCEAQg4EAo4AAA"
    ".IF3EXySoGY2tho2YVFzBEIYwfJxyigMgShgQIsS0NQIeFLBoGPiAAHBGYJAQAGBAkkACBAQIsHGBMCQABgAgRiRCMQEGMDzNIB"
    "IBAggkbY0FACCVmnkHS3ZCY70-6u__QA.elAAAAAAAWA"
)


def test_sirdata_segments() -> None:
    tc = decode(SIRDATA)
    assert tc.disclosed_vendors is not None and tc.publisher_tc is not None
    assert 1 not in tc.disclosed_vendors and 9 in tc.disclosed_vendors
    assert 1 in tc.publisher_tc.purposes_consent
    assert tc.publisher_tc.num_custom_purposes == 2
    allowed = decode(SPEC_CORE + ".QF3QAgABAA1A").allowed_vendors  # TestDecodeAllowedVendors
    assert allowed is not None and 10 not in allowed and 53 in allowed
    # TestDecodeInvalid: a string that starts with a disclosed-vendors segment
    assert decode_tc_string(SIRDATA.split(".", 1)[1]) is None


def test_spec_example_decodes() -> None:
    tc = decode("CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA.YAAAAAAAAAAA")
    assert tc.disclosed_vendors is not None and tc.publisher_tc is not None


# ---------------------------------------------------------------- refusals

PUBLISHED = [
    "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
    CORE_BITFIELDS + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=",
    GO_V2_SMALL,
    GO_V2_BIG,
    ES_201,
    SIRDATA,
]


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "C",
        "=",
        "A" * (MAX_TC_STRING_LENGTH + 1),
        "C" + "A" * 10 * 1024,  # a 10 KB string
        CORE_BITFIELDS.replace("-", "+"),  # standard base64, not base64url
        CORE_BITFIELDS.replace("-", "/"),
        CORE_BITFIELDS[:20] + "!" + CORE_BITFIELDS[21:],
        CORE_BITFIELDS[:20] + "é" + CORE_BITFIELDS[21:],
        CORE_BITFIELDS[:20] + "=" + CORE_BITFIELDS[21:],  # padding inside a segment
        " " + CORE_BITFIELDS,
        CORE_BITFIELDS + ".",  # empty segment
        CORE_BITFIELDS + "..QAagAQAgAIAwgA",
        CORE_BITFIELDS + ".QAagAQAgAIAwgA.QAagAQAgAIAwgA",  # the same segment twice
        CORE_BITFIELDS + ".8AAAAAAA",  # segment type 7
        "D" + CORE_BITFIELDS[1:],  # version 3
        "A" + CORE_BITFIELDS[1:],  # version 0
        CORE_BITFIELDS[:40],  # truncated inside the vendor bit field
        GO_V2_BIG[: len(GO_V2_BIG) // 2],
    ],
)
def test_unreadable_strings_give_none(text: str) -> None:
    assert decode_tc_string(text) is None


def test_non_strings_give_none() -> None:
    for value in (None, b"COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA", 42, ["C"]):
        assert decode_tc_string(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("text", PUBLISHED)
def test_every_truncation_of_a_published_vector_is_safe(text: str) -> None:
    for n in range(len(text)):
        got = decode_tc_string(text[:n])
        assert got is None or isinstance(got, TCString)
    # cutting into the core's fixed fields is always unreadable
    core = text.split(".")[0]
    for n in range(1, 36):
        assert decode_tc_string(core[:n]) is None


def test_language_letters_outside_a_to_z_are_refused() -> None:
    model = Model()
    assert decode_tc_string(encode(model)) is not None
    assert decode_tc_string(encode(model, language_raw=(4, 26))) is None
    assert decode_tc_string(encode(model, cc_raw=(63, 0))) is None


def test_bad_ranges_are_refused() -> None:
    assert decode_tc_string(encode(Model(consents=Vendors(frozenset({5}), 5, True)))) is not None
    for start, end in ((0, 0), (6, 5), (5, 6)):  # vendor 0, backwards, past MaxVendorId 5
        assert (
            decode_tc_string(encode(Model(consents=Vendors(frozenset(), 5, True)), raw_range=(start, end)))
            is None
        )


def test_restriction_type_3_is_refused() -> None:
    ok = Model(restrictions=((1, 0, ((1, 1),)),))
    assert decode_tc_string(encode(ok)) is not None
    assert decode_tc_string(encode(Model(restrictions=((1, 3, ((1, 1),)),)))) is None


# ---------------------------------------------------------------- VendorIds


def test_vendor_ids_set_behaviour() -> None:
    ids = VendorIds.from_ranges([(10, 12), (1, 1), (11, 20), (21, 21), (40, 40)])
    assert ids.ranges == ((1, 1), (10, 21), (40, 40))
    assert list(ids) == [1, *range(10, 22), 40]
    assert len(ids) == 14
    assert ids == frozenset(ids) and frozenset(ids) == ids and hash(ids) == hash(frozenset(ids))
    assert ids == VendorIds([40, *range(10, 22), 1])
    assert 0 not in ids and 9 not in ids and 22 not in ids and not ids.__contains__("1")
    assert ids != {1}
    field = VendorIds.from_bit_field("0110001000")
    assert list(field) == [2, 3, 7] and len(field) == 3 and field.ranges == ((2, 3), (7, 7))
    assert field == VendorIds([7, 3, 2]) == frozenset({2, 3, 7}) and hash(field) == hash(frozenset({2, 3, 7}))
    assert 0 not in field and 1 not in field and 7 in field and 10 not in field and 11 not in field
    assert VendorIds.from_bit_field("") == VendorIds() == frozenset()
    huge = VendorIds.from_ranges([(1, 65535)] * 2000)
    assert len(huge) == 65535 and huge.ranges == ((1, 65535),)


# ---------------------------------------------------------------- vendor_allowed


def test_vendor_allowed_needs_a_usable_string() -> None:
    assert not vendor_allowed(None, 1, [1])
    tc = decode(CORE_BITFIELDS)  # vendor 23 and purpose 3 consented, but IsServiceSpecific=0
    assert 23 in tc.vendor_consents and 3 in tc.purposes_consent
    assert not is_usable(tc)
    assert not vendor_allowed(tc, 23, [3])
    # policy version 2 after 30 September 2023 is invalid; before, still read
    assert not is_usable(decode(encode(Model(policy=2, created=1_700_000_000))))
    assert is_usable(decode(encode(Model(policy=2, created=1_600_000_000))))
    assert is_usable(decode(encode(Model(policy=4, created=1_700_000_000))))


def allowed(model: Model, vendor: int, purposes: list[int], li: tuple[int, ...] = ()) -> bool:
    return vendor_allowed(decode(encode(model)), vendor, purposes, legitimate_interest=li)


def test_vendor_allowed_consent_and_legitimate_interest() -> None:
    base = Model(
        purposes=frozenset({1, 2, 3, 4}),
        purposes_li=frozenset({7, 8}),
        consents=Vendors(frozenset({5, 9}), 9, False),
        li_vendors=Vendors(frozenset({5, 6}), 6, True),
    )
    assert allowed(base, 5, [1, 3, 4])
    assert allowed(base, 5, [])  # no purposes: the vendor's consent decides
    assert not allowed(base, 6, [])
    assert not allowed(base, 5, [1, 7])  # purpose 7 has no consent
    assert allowed(base, 5, [1, 7], li=(7,))  # ... but LI for 7, declared by the caller
    assert allowed(base, 6, [7, 8], li=(7, 8))  # LI only: no vendor consent needed
    assert not allowed(base, 9, [7], li=(7,))  # vendor 9 has no LI
    assert not allowed(base, 5, [2, 9], li=(9,))  # purpose 9 has no LI transparency
    # purposes 1 and 3-6 can never rest on LI (TCF v2.2): declaring them changes nothing
    li_only = Model(purposes_li=frozenset({3}), li_vendors=Vendors(frozenset({5}), 5, False))
    assert not allowed(li_only, 5, [3], li=(3,))
    assert not allowed(base, 0, [])
    assert not allowed(base, 5, [25])


def test_vendor_allowed_respects_publisher_restrictions() -> None:
    def with_restriction(kind: int, vendors: tuple[tuple[int, int], ...] = ((4, 6),)) -> Model:
        return Model(
            purposes=frozenset({1, 2}),
            purposes_li=frozenset({2}),
            consents=Vendors(frozenset({5, 9}), 9, False),
            li_vendors=Vendors(frozenset({5, 9}), 9, False),
            restrictions=((2, kind, vendors),),
        )

    not_allowed = with_restriction(0)
    assert not allowed(not_allowed, 5, [2]) and not allowed(not_allowed, 5, [2], li=(2,))
    assert allowed(not_allowed, 9, [2])  # vendor 9 is not restricted
    assert allowed(not_allowed, 5, [1])  # other purposes are not restricted
    require_consent = with_restriction(1)
    assert allowed(require_consent, 5, [2])
    no_consent_purpose = Model(
        purposes_li=frozenset({2}),
        consents=Vendors(frozenset({5}), 5, False),
        li_vendors=Vendors(frozenset({5}), 5, False),
        restrictions=((2, 1, ((5, 5),)),),
    )
    assert allowed(replace(no_consent_purpose, restrictions=()), 5, [2], li=(2,))
    assert not allowed(no_consent_purpose, 5, [2], li=(2,))  # LI no longer enough
    require_li = with_restriction(2)
    assert not allowed(require_li, 5, [2])  # consent-based: refused
    assert allowed(require_li, 5, [2], li=(2,))
    contradictory = replace(require_li, restrictions=((2, 1, ((5, 5),)), (2, 2, ((5, 5),))))
    assert not allowed(contradictory, 5, [2], li=(2,)) and not allowed(contradictory, 5, [2])


# ---------------------------------------------------------------- a tiny test-only encoder (from the spec)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Vendors:
    ids: frozenset[int] = frozenset()
    max_id: int = 0
    use_range: bool = False


@dataclass(frozen=True)
class Publisher:
    consent: frozenset[int] = frozenset()
    li: frozenset[int] = frozenset()
    custom_consent: frozenset[int] = frozenset()
    custom_li: frozenset[int] = frozenset()
    num_custom: int = 0


@dataclass(frozen=True)
class Model:
    created: int = 1_750_000_000  # epoch seconds
    last_updated: int = 1_750_000_000
    cmp_id: int = 7
    cmp_version: int = 1
    consent_screen: int = 0
    language: str = "EN"
    vendor_list_version: int = 100
    policy: int = 5
    service_specific: bool = True
    non_standard_texts: bool = False
    special_features: frozenset[int] = frozenset()
    purposes: frozenset[int] = frozenset()
    purposes_li: frozenset[int] = frozenset()
    purpose_one_treatment: bool = False
    publisher_cc: str = "DE"
    consents: Vendors = Vendors()
    li_vendors: Vendors = Vendors()
    restrictions: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...] = ()  # purpose, type, ranges
    disclosed: Vendors | None = None
    allowed: Vendors | None = None
    publisher: Publisher | None = None
    segment_order: tuple[int, ...] = (1, 2, 3)


def _n(value: int, width: int) -> str:
    assert 0 <= value < 1 << width
    return format(value, f"0{width}b")


def _field(ids: frozenset[int], width: int) -> str:
    return "".join("1" if i in ids else "0" for i in range(1, width + 1))


def _runs(ids: frozenset[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _range_entries(ranges: list[tuple[int, int]]) -> str:
    out = _n(len(ranges), 12)
    for a, b in ranges:
        out += "0" + _n(a, 16) if a == b else "1" + _n(a, 16) + _n(b, 16)
    return out


def _vendor_section(v: Vendors, raw_range: tuple[int, int] | None = None) -> str:
    if raw_range is not None:
        return _n(v.max_id, 16) + "1" + _n(1, 12) + "1" + _n(raw_range[0], 16) + _n(raw_range[1], 16)
    if v.use_range:
        return _n(v.max_id, 16) + "1" + _range_entries(_runs(v.ids))
    return _n(v.max_id, 16) + "0" + _field(v.ids, v.max_id)


def _letters(text: str) -> str:
    return "".join(_n(ord(c) - 65, 6) for c in text)


def _chars(bits: str) -> str:
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def encode(
    m: Model,
    *,
    language_raw: tuple[int, int] | None = None,
    cc_raw: tuple[int, int] | None = None,
    raw_range: tuple[int, int] | None = None,
) -> str:
    core = (
        _n(2, 6)
        + _n(m.created * 10, 36)
        + _n(m.last_updated * 10, 36)
        + _n(m.cmp_id, 12)
        + _n(m.cmp_version, 12)
        + _n(m.consent_screen, 6)
        + (_n(language_raw[0], 6) + _n(language_raw[1], 6) if language_raw else _letters(m.language))
        + _n(m.vendor_list_version, 12)
        + _n(m.policy, 6)
        + _n(m.service_specific, 1)
        + _n(m.non_standard_texts, 1)
        + _field(m.special_features, 12)
        + _field(m.purposes, 24)
        + _field(m.purposes_li, 24)
        + _n(m.purpose_one_treatment, 1)
        + (_n(cc_raw[0], 6) + _n(cc_raw[1], 6) if cc_raw else _letters(m.publisher_cc))
        + _vendor_section(m.consents, raw_range)
        + _vendor_section(m.li_vendors)
        + _n(len(m.restrictions), 12)
        + "".join(_n(p, 6) + _n(t, 2) + _range_entries(list(r)) for p, t, r in m.restrictions)
    )
    segments = [_chars(core)]
    for kind in m.segment_order:
        if kind == 1 and m.disclosed is not None:
            segments.append(_chars(_n(1, 3) + _vendor_section(m.disclosed)))
        elif kind == 2 and m.allowed is not None:
            segments.append(_chars(_n(2, 3) + _vendor_section(m.allowed)))
        elif kind == 3 and m.publisher is not None:
            p = m.publisher
            segments.append(
                _chars(
                    _n(3, 3)
                    + _field(p.consent, 24)
                    + _field(p.li, 24)
                    + _n(p.num_custom, 6)
                    + _field(p.custom_consent, p.num_custom)
                    + _field(p.custom_li, p.num_custom)
                )
            )
    return ".".join(segments)


# ---------------------------------------------------------------- Hypothesis

LETTERS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


def id_sets(hi: int, max_size: int = 24) -> st.SearchStrategy[frozenset[int]]:
    return st.frozensets(st.integers(1, hi), max_size=max_size)


@st.composite
def vendor_sets(draw: st.DrawFn) -> Vendors:
    if draw(st.booleans()):
        ids = draw(id_sets(1200, 40))
    else:  # a few dense runs, where range encoding pays
        ids = frozenset()
        for start, length in draw(st.lists(st.tuples(st.integers(1, 1100), st.integers(0, 100)), max_size=5)):
            ids |= set(range(start, start + length + 1))
    max_id = (max(ids) if ids else 0) + draw(st.integers(0, 30))
    return Vendors(ids, max_id, draw(st.booleans()))


restriction_ranges = st.lists(
    st.tuples(st.integers(1, 3000), st.integers(0, 200)).map(lambda t: (t[0], t[0] + t[1])), max_size=6
).map(tuple)


@st.composite
def publishers(draw: st.DrawFn) -> Publisher:
    n = draw(st.integers(0, 63))
    return Publisher(
        draw(id_sets(24)),
        draw(id_sets(24)),
        draw(id_sets(n)) if n else frozenset(),
        draw(id_sets(n)) if n else frozenset(),
        n,
    )


models = st.builds(
    Model,
    created=st.integers(0, (1 << 36) // 10 - 1),
    last_updated=st.integers(0, (1 << 36) // 10 - 1),
    cmp_id=st.integers(0, 4095),
    cmp_version=st.integers(0, 4095),
    consent_screen=st.integers(0, 63),
    language=LETTERS,
    vendor_list_version=st.integers(0, 4095),
    policy=st.integers(0, 63),
    service_specific=st.booleans(),
    non_standard_texts=st.booleans(),
    special_features=id_sets(12),
    purposes=id_sets(24),
    purposes_li=id_sets(24),
    purpose_one_treatment=st.booleans(),
    publisher_cc=LETTERS,
    consents=vendor_sets(),
    li_vendors=vendor_sets(),
    restrictions=st.lists(
        st.tuples(st.integers(0, 63), st.integers(0, 2), restriction_ranges), max_size=5
    ).map(tuple),
    disclosed=st.none() | vendor_sets(),
    allowed=st.none() | vendor_sets(),
    publisher=st.none() | publishers(),
    segment_order=st.permutations([1, 2, 3]).map(tuple),
)


def _ids(ranges: tuple[tuple[int, int], ...]) -> frozenset[int]:
    return frozenset(i for a, b in ranges for i in range(a, b + 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models)
def test_round_trip(m: Model) -> None:
    text = encode(m)
    assert len(text) <= MAX_TC_STRING_LENGTH
    tc = decode(text)
    assert (tc.version, tc.created, tc.last_updated) == (2, m.created, m.last_updated)
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (m.cmp_id, m.cmp_version, m.consent_screen)
    assert (tc.consent_language, tc.publisher_cc) == (m.language, m.publisher_cc)
    assert (tc.vendor_list_version, tc.tcf_policy_version) == (m.vendor_list_version, m.policy)
    assert (tc.is_service_specific, tc.use_non_standard_texts) == (m.service_specific, m.non_standard_texts)
    assert tc.purpose_one_treatment == m.purpose_one_treatment
    assert tc.special_feature_opt_ins == m.special_features
    assert tc.purposes_consent == m.purposes
    assert tc.purposes_li_transparency == m.purposes_li
    assert tc.vendor_consents == m.consents.ids
    assert tc.vendor_legitimate_interests == m.li_vendors.ids
    assert [
        (r.purpose_id, int(r.restriction_type), frozenset(r.vendors)) for r in tc.publisher_restrictions
    ] == [(p, t, _ids(r)) for p, t, r in m.restrictions]
    assert (tc.disclosed_vendors is None) == (m.disclosed is None)
    if m.disclosed is not None:
        assert tc.disclosed_vendors == m.disclosed.ids
    assert (tc.allowed_vendors is None) == (m.allowed is None)
    if m.allowed is not None:
        assert tc.allowed_vendors == m.allowed.ids
    assert (tc.publisher_tc is None) == (m.publisher is None)
    if m.publisher is not None and tc.publisher_tc is not None:
        p = tc.publisher_tc
        assert (p.purposes_consent, p.purposes_li_transparency) == (m.publisher.consent, m.publisher.li)
        assert p.num_custom_purposes == m.publisher.num_custom
        assert (p.custom_purposes_consent, p.custom_purposes_li_transparency) == (
            m.publisher.custom_consent,
            m.publisher.custom_li,
        )
    assert decode(text) == tc  # deterministic, and equal field by field


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models, st.data())
def test_truncations_never_raise(m: Model, data: st.DataObject) -> None:
    text = encode(m)
    cut = data.draw(st.integers(0, len(text)))
    got = decode_tc_string(text[:cut])
    assert got is None or isinstance(got, TCString)
    # dropping whole characters from the core's fixed 213 bits is always unreadable
    assert decode_tc_string(text[: data.draw(st.integers(0, 35))]) is None


@settings(max_examples=500, deadline=None)
@given(st.text() | st.text(alphabet=ALPHABET + ".=", max_size=400) | st.sampled_from(PUBLISHED))
def test_any_text_gives_a_tc_string_or_none(text: str) -> None:
    got = decode_tc_string(text)
    assert got is None or isinstance(got, TCString)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PUBLISHED), st.data())
def test_mutated_published_vectors_never_raise(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text) - 1))
    c = data.draw(st.sampled_from(ALPHABET + ".=+/ "))
    got = decode_tc_string(text[:i] + c + text[i + 1 :])
    assert got is None or isinstance(got, TCString)
