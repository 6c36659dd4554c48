"""The gateway's side of Datafly.js: serving the built file with caching, an ETag and gzip."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from datafly.gateway.collector_asset import DEFAULT_PATH, CollectorAsset


@pytest.fixture
def asset(tmp_path: Path) -> CollectorAsset:
    path = tmp_path / "d.js"
    path.write_text("/*! test */(()=>{window.datafly=1})();" * 20)
    return CollectorAsset(str(path))


def headers_of(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), "no header twice"
    assert all(name == name.lower() for name in names), "ASGI header names are lower case"
    return {name.decode(): value.decode() for name, value in pairs}


def test_plain_answer(asset: CollectorAsset) -> None:
    status, pairs, body = asset.respond(None, "")
    headers = headers_of(pairs)
    assert status == 200
    assert body == asset.path.read_bytes()
    assert headers["content-type"] == "application/javascript; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=300"
    assert headers["vary"] == "accept-encoding"
    assert headers["content-length"] == str(len(body))
    assert "content-encoding" not in headers
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")


def test_gzip_when_accepted(asset: CollectorAsset) -> None:
    status, pairs, body = asset.respond(None, "gzip, deflate, br")
    headers = headers_of(pairs)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "accept-encoding"
    assert gzip.decompress(body) == asset.path.read_bytes()
    assert len(body) < len(asset.path.read_bytes())
    assert headers["content-length"] == str(len(body))
    # precompressed once: the same bytes every time
    assert asset.respond(None, "gzip")[2] is body


@pytest.mark.parametrize("accept", ["", "br", "identity", "gzip;q=0", "deflate, gzip;q=0.0", "gzip;q=x"])
def test_no_gzip_unless_accepted(asset: CollectorAsset, accept: str) -> None:
    _, pairs, body = asset.respond(None, accept)
    assert "content-encoding" not in headers_of(pairs)
    assert body == asset.path.read_bytes()


@pytest.mark.parametrize("accept", ["GZIP", "gzip;q=0.5", "*", "x-gzip"])
def test_gzip_spellings(asset: CollectorAsset, accept: str) -> None:
    assert headers_of(asset.respond(None, accept)[1])["content-encoding"] == "gzip"


def test_etag_is_strong_and_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "d.js"
    path.write_text("one")
    first = headers_of(CollectorAsset(str(path)).respond(None, "")[1])["etag"]
    assert headers_of(CollectorAsset(str(path)).respond(None, "")[1])["etag"] == first
    path.write_text("two")
    assert headers_of(CollectorAsset(str(path)).respond(None, "")[1])["etag"] != first


def test_each_representation_has_its_own_etag(asset: CollectorAsset) -> None:
    plain = headers_of(asset.respond(None, "")[1])["etag"]
    zipped = headers_of(asset.respond(None, "gzip")[1])["etag"]
    assert plain != zipped


@pytest.mark.parametrize("accept", ["", "gzip"])
def test_not_modified(asset: CollectorAsset, accept: str) -> None:
    etag = headers_of(asset.respond(None, accept)[1])["etag"]
    for candidate in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, pairs, body = asset.respond(candidate, accept)
        headers = headers_of(pairs)
        assert status == 304, candidate
        assert body == b""
        assert headers["etag"] == etag
        assert headers["cache-control"] == "public, max-age=300"
        assert "content-encoding" not in headers


def test_either_etag_revalidates(asset: CollectorAsset) -> None:
    plain = headers_of(asset.respond(None, "")[1])["etag"]
    assert asset.respond(plain, "gzip")[0] == 304


def test_stale_etag_gets_the_file(asset: CollectorAsset) -> None:
    status, _, body = asset.respond('"0123456789abcdef"', "")
    assert status == 200
    assert body == asset.path.read_bytes()


def test_default_path_is_the_built_collector() -> None:
    asset = CollectorAsset()
    assert asset.path == DEFAULT_PATH
    assert asset.body.startswith(b"/*! Datafly.js ")
