"""IAB TCF v2 TC strings: a small, strict decoder and the consent check an integration needs.

Follows IAB Tech Lab's "Transparency and Consent String with Global Vendor List Format" (TCF
v2.2, and v2.3's mandatory Disclosed Vendors segment). A TC string is dot-separated
base64url segments: the core string first (version 2), then any of Disclosed Vendors (segment
type 1), Allowed Vendors (type 2, dropped from the spec but still found in old strings: parsed
and kept, never used for decisions) and Publisher TC (type 3), each at most once, in any order.

``decode_tc_string`` never raises: anything it cannot read gives ``None``, which callers treat as
"no consent" for TCF-gated integrations. It refuses:

- a non-string, an empty string, or one longer than ``MAX_TC_STRING_LENGTH`` (8 KiB; real strings
  are well under 2 KB, a bit field of every GVL vendor today is about 250 characters);
- any character outside the base64url alphabet (``A-Z a-z 0-9 - _``); trailing ``=`` padding on a
  segment is tolerated, as IAB's Java decoder does; an empty segment;
- a core version other than 2 (v1 strings are invalid since 2020);
- a field that runs past the end of its segment (truncated strings), a bit field shorter than its
  ``MaxVendorId``, a vendor range that is empty, starts at 0, runs backwards or (outside publisher
  restrictions) goes past ``MaxVendorId``;
- a language or country letter outside a..z, restriction type 3 (undefined);
- a second segment of a type already seen, segment type 0 after the core, or types 4..7.

Vendor id sets are ``VendorIds``: an immutable ``collections.abc.Set[int]`` (equal to the
``frozenset`` of the same ids) kept as the decoded bit field or as merged ranges, so that a
range-encoded ``1-65535`` costs one pair instead of a 65 535-element set: a crafted 8 KiB string
cannot make the decoder build millions of ints.

``vendor_allowed`` answers "may this vendor process for these purposes", see its docstring for
how legitimate interest and publisher restrictions are handled.
"""

from __future__ import annotations

import binascii
import bisect
import functools
import re
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "LI_ELIGIBLE_PURPOSES",
    "MAX_TC_STRING_LENGTH",
    "PublisherRestriction",
    "PublisherTC",
    "RestrictionType",
    "TCString",
    "VendorIds",
    "decode_tc_string",
    "is_usable",
    "vendor_allowed",
]

MAX_TC_STRING_LENGTH: Final = 8192
"""Longest text ``decode_tc_string`` reads (characters, all segments and dots included)."""

LI_ELIGIBLE_PURPOSES: Final = frozenset({2, 7, 8, 9, 10, 11})
"""Purposes a vendor may process under legitimate interest: TCF v2.2 policy forbids it for
purpose 1 (storage/access on a device) and purposes 3 to 6 (personalised ads and content)."""

_POLICY_V4_DEADLINE: Final = 1696118400  # 2023-10-01T00:00:00Z: policy < 4 created after is invalid

_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_TO_STANDARD_BASE64: Final = bytes.maketrans(b"-_", b"+/")
_RUNS: Final = re.compile("1+")


class _Unreadable(Exception):
    """Raised inside the decoder; never leaves this module."""


class RestrictionType(IntEnum):
    NOT_ALLOWED = 0
    REQUIRE_CONSENT = 1
    REQUIRE_LEGITIMATE_INTEREST = 2


class VendorIds(Set[int]):
    """An immutable set of vendor ids, kept as the string's own bit field or as merged ranges.

    A bit-field section stays the ``"0"``/``"1"`` string it was decoded from (character i is id
    i + 1; membership is one index); a range section is sorted, merged, inclusive
    ``(start, end)`` pairs (membership is a binary search), so a range-encoded ``1-65535`` costs
    one pair, not 65 535 ints. Iteration is ascending; it compares equal to any ``Set``
    (``frozenset`` included) holding the same ids and hashes like that frozenset.
    """

    __slots__ = ("_ends", "_field", "_len", "_ranges", "_starts")

    _field: str | None
    _ranges: tuple[tuple[int, int], ...] | None
    _starts: tuple[int, ...]
    _ends: tuple[int, ...]
    _len: int

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._field = None
        self._set_ranges(_merge((i, i) for i in ids))

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> VendorIds:
        """Inclusive ranges in any order, overlapping or not; ``start <= end`` for each."""
        out = cls.__new__(cls)
        out._field = None
        out._set_ranges(_merge(ranges))
        return out

    @classmethod
    def from_bit_field(cls, field: str) -> VendorIds:
        """A string of ``"0"`` and ``"1"``: character i set means id i + 1."""
        out = cls.__new__(cls)
        out._field = field
        out._ranges = None
        return out

    def _set_ranges(self, ranges: tuple[tuple[int, int], ...]) -> None:
        self._ranges = ranges
        self._starts = tuple([a for a, _ in ranges])
        self._ends = tuple([b for _, b in ranges])
        self._len = sum([b - a + 1 for a, b in ranges])

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The ids as sorted, merged, inclusive ``(start, end)`` pairs."""
        if self._ranges is None:
            assert self._field is not None
            self._ranges = tuple((m.start() + 1, m.end()) for m in _RUNS.finditer(self._field))
        return self._ranges

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        field = self._field
        if field is not None:
            return 0 < value <= len(field) and field[value - 1] == "1"
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self._ends[i]

    def __iter__(self) -> Iterator[int]:
        field = self._field
        if field is not None:
            i = field.find("1")
            while i >= 0:
                yield i + 1
                i = field.find("1", i + 1)
        else:
            for a, b in self.ranges:
                yield from range(a, b + 1)

    def __len__(self) -> int:
        return self._field.count("1") if self._field is not None else self._len

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VendorIds):
            return self.ranges == other.ranges
        return super().__eq__(other)

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return "VendorIds(" + ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges) + ")"


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """The publisher's restriction of ``purpose_id`` for ``vendors``."""

    purpose_id: int
    restriction_type: RestrictionType
    vendors: VendorIds


@dataclass(frozen=True, slots=True)
class PublisherTC:
    """Segment type 3: the publisher's own purposes (vendors should not rely on it)."""

    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    num_custom_purposes: int
    custom_purposes_consent: frozenset[int]
    custom_purposes_li_transparency: frozenset[int]


@dataclass(frozen=True, slots=True)
class TCString:
    """A decoded TC string. Ids are 1-based as in the spec; times are epoch seconds (UTC)."""

    version: int
    created: int
    last_updated: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str  # two upper-case letters, e.g. "EN"
    vendor_list_version: int
    tcf_policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_opt_ins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str  # two upper-case letters, e.g. "DE"
    vendor_consents: VendorIds
    vendor_legitimate_interests: VendorIds
    publisher_restrictions: tuple[PublisherRestriction, ...]
    disclosed_vendors: VendorIds | None = None  # segment type 1; None when absent
    allowed_vendors: VendorIds | None = None  # segment type 2 (deprecated); None when absent
    publisher_tc: PublisherTC | None = None  # segment type 3; None when absent


class _Reader:
    __slots__ = ("bits", "pos")

    def __init__(self, bits: str) -> None:
        self.bits = bits
        self.pos = 0

    def take(self, n: int) -> str:
        end = self.pos + n
        if end > len(self.bits):
            raise _Unreadable
        chunk = self.bits[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, n: int) -> int:
        return int(self.take(n), 2)

    def flag(self) -> bool:
        return self.take(1) == "1"

    def id_set(self, n: int) -> frozenset[int]:
        return _id_set(self.take(n))

    def ranges(self, limit: int | None) -> VendorIds:
        """NumEntries (12 bits), then entries of IsARange (1), StartOrOnlyVendorId (16) and, for
        a range, EndVendorId (16). Ids start at 1; ``limit`` is the section's MaxVendorId."""
        count = self.uint(12)
        bits, pos, size = self.bits, self.pos, len(self.bits)
        if pos + 17 * count > size:
            raise _Unreadable
        entries: list[tuple[int, int]] = []
        for _ in range(count):
            if pos + 17 > size:
                raise _Unreadable
            start = int(bits[pos + 1 : pos + 17], 2)
            if bits[pos] == "1":
                if pos + 33 > size:
                    raise _Unreadable
                end = int(bits[pos + 17 : pos + 33], 2)
                pos += 33
            else:
                end = start
                pos += 17
            if start < 1 or end < start or (limit is not None and end > limit):
                raise _Unreadable
            entries.append((start, end))
        self.pos = pos
        return VendorIds.from_ranges(entries)

    def vendor_section(self) -> VendorIds:
        max_vendor_id = self.uint(16)
        if self.flag():
            return self.ranges(max_vendor_id)
        return VendorIds.from_bit_field(self.take(max_vendor_id))


@functools.lru_cache(maxsize=4096)
def _id_set(field: str) -> frozenset[int]:
    """A fixed-width bit field (purposes, special features): character i set means id i + 1.
    Cached: these fields take few distinct values in practice."""
    return frozenset(i + 1 for i, c in enumerate(field) if c == "1")


def _letters(bits: str) -> str:
    """Two 6-bit letters, a=0 .. z=25, as upper case."""
    a, b = int(bits[:6], 2), int(bits[6:], 2)
    if a > 25 or b > 25:
        raise _Unreadable
    return chr(65 + a) + chr(65 + b)


def _segment_bits(segment: str) -> str:
    """A segment's bits as a string of "0" and "1", 6 per character."""
    segment = segment.rstrip("=")
    if _BASE64URL.fullmatch(segment) is None:
        raise _Unreadable
    n = len(segment)
    # "A" (zero bits) completes the last 4-character group; those bits are cut off again
    raw = binascii.a2b_base64((segment + "A" * (-n % 4)).encode().translate(_TO_STANDARD_BASE64))
    return format(int.from_bytes(raw, "big"), f"0{8 * len(raw)}b")[: 6 * n]


def _restriction_type(value: int) -> RestrictionType:
    if value == 3:
        raise _Unreadable
    return RestrictionType(value)


def _publisher_tc(r: _Reader) -> PublisherTC:
    consent = r.id_set(24)
    li = r.id_set(24)
    n = r.uint(6)
    return PublisherTC(consent, li, n, r.id_set(n), r.id_set(n))


def _decode(text: str) -> TCString:
    head, *rest = text.split(".")
    r = _Reader(_segment_bits(head))
    if r.uint(6) != 2:
        raise _Unreadable
    disclosed: VendorIds | None = None
    allowed: VendorIds | None = None
    publisher_tc: PublisherTC | None = None
    seen: set[int] = set()
    for segment in rest:
        s = _Reader(_segment_bits(segment))
        kind = s.uint(3)
        if kind in seen or kind not in (1, 2, 3):
            raise _Unreadable
        seen.add(kind)
        if kind == 1:
            disclosed = s.vendor_section()
        elif kind == 2:
            allowed = s.vendor_section()
        else:
            publisher_tc = _publisher_tc(s)
    # the core's fixed fields: 213 bits at fixed offsets (the spec's table, in order)
    h = r.bits
    if len(h) < 213:
        raise _Unreadable
    r.pos = 213
    return TCString(
        version=2,
        created=int(h[6:42], 2) // 10,  # deciseconds
        last_updated=int(h[42:78], 2) // 10,
        cmp_id=int(h[78:90], 2),
        cmp_version=int(h[90:102], 2),
        consent_screen=int(h[102:108], 2),
        consent_language=_letters(h[108:120]),
        vendor_list_version=int(h[120:132], 2),
        tcf_policy_version=int(h[132:138], 2),
        is_service_specific=h[138] == "1",
        use_non_standard_texts=h[139] == "1",
        special_feature_opt_ins=_id_set(h[140:152]),
        purposes_consent=_id_set(h[152:176]),
        purposes_li_transparency=_id_set(h[176:200]),
        purpose_one_treatment=h[200] == "1",
        publisher_cc=_letters(h[201:213]),
        # variable-length sections, read in order (keyword arguments are evaluated left to right)
        vendor_consents=r.vendor_section(),
        vendor_legitimate_interests=r.vendor_section(),
        publisher_restrictions=tuple(
            PublisherRestriction(r.uint(6), _restriction_type(r.uint(2)), r.ranges(None))
            for _ in range(r.uint(12))
        ),
        disclosed_vendors=disclosed,
        allowed_vendors=allowed,
        publisher_tc=publisher_tc,
    )


def decode_tc_string(text: str) -> TCString | None:
    """The decoded TC string, or ``None`` for anything unreadable (see the module docstring)."""
    if not isinstance(text, str) or not text or len(text) > MAX_TC_STRING_LENGTH:
        return None
    try:
        return _decode(text)
    except (_Unreadable, ValueError):
        return None


def is_usable(tc: TCString) -> bool:
    """False for strings the spec says vendors must treat as invalid: ``IsServiceSpecific=0``,
    or a policy version below 4 on a string created after 30 September 2023."""
    if not tc.is_service_specific:
        return False
    return not (tc.tcf_policy_version < 4 and tc.created >= _POLICY_V4_DEADLINE)


def vendor_allowed(
    tc: TCString | None,
    vendor_id: int,
    purposes: Iterable[int],
    *,
    legitimate_interest: Iterable[int] = (),
) -> bool:
    """May ``vendor_id`` process for every purpose in ``purposes`` under this TC string?

    ``None`` (an unreadable or missing string) and strings ``is_usable`` rejects give False.
    By default every purpose needs consent: the purpose in ``purposes_consent`` and the vendor in
    ``vendor_consents`` (with no purposes, the vendor's consent alone decides). Legitimate
    interest is only used for purposes the caller lists in ``legitimate_interest`` (the purposes
    the vendor registered under LI in the GVL; the gateway cannot know that itself) and only for
    ``LI_ELIGIBLE_PURPOSES``: such a purpose holds when it is in ``purposes_li_transparency`` and
    the vendor in ``vendor_legitimate_interests``. Publisher restrictions for the vendor win:
    "not allowed" refuses the purpose, "require consent" demands consent even for an LI purpose,
    and "require legitimate interest" refuses a purpose the caller treats as consent-based (a
    vendor not flexible on it must not process; a flexible one would need LI, which the caller
    has not declared). ``purpose_one_treatment`` is not a waiver: list purpose 1 only where
    its consent is required.
    """
    if tc is None or not is_usable(tc) or vendor_id < 1:
        return False
    li = frozenset(legitimate_interest) & LI_ELIGIBLE_PURPOSES
    needed = frozenset(purposes)
    if not needed:
        return vendor_id in tc.vendor_consents
    for purpose in needed:
        kinds = {
            r.restriction_type
            for r in tc.publisher_restrictions
            if r.purpose_id == purpose and vendor_id in r.vendors
        }
        if RestrictionType.NOT_ALLOWED in kinds or len(kinds) > 1:
            return False  # refused, or contradictory restrictions: refuse
        use_li = purpose in li and RestrictionType.REQUIRE_CONSENT not in kinds
        if RestrictionType.REQUIRE_LEGITIMATE_INTEREST in kinds and not use_li:
            return False
        if use_li:
            if purpose not in tc.purposes_li_transparency or vendor_id not in tc.vendor_legitimate_interests:
                return False
        elif purpose not in tc.purposes_consent or vendor_id not in tc.vendor_consents:
            return False
    return True
