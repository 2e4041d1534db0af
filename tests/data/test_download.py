"""The download path against a real HTTP server on 127.0.0.1: verified files pass, anything else is
refused before it is written."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pandas as pd
import pytest

from dorl.config import load
from dorl.data.download import digest_file, fetch
from dorl.data.simulate import simulate
from dorl.data.sources import BASE_URL_ENV, RawFile, Source, resolve_base_url
from dorl.errors import DataError
from dorl.stages import data as prepare_mod
from tests.conftest import SHARED_DATA

COMMIT = "6b8700ce67c6b37b062dd7a60abc76d7ef832a97"
# asappresearch/abcd data/abcd_sample.json: size, git blob id and sha256 as listed in ../shared/data/MANIFEST.tsv
SAMPLE = RawFile(
    "abcd_sample.json",
    "1dc76afbcf02768691bc91e2244bac9845c972d9",
    38934,
    "151e0c487493ab376bb5115538f3bfd6d2f460c94f9daa5cdf04e55bccdf4808",
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 over `tmp_path/www`: yields (root folder, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("H", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    httpd.shutdown()
    httpd.server_close()


def _source(files=(SAMPLE,)) -> Source:
    return Source("abcd", "asappresearch/abcd", COMMIT, "data", tuple(files), "MIT")


def _publish(root, rel: str, data: bytes) -> None:
    path = root / "asappresearch" / "abcd" / COMMIT / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")
def test_real_file_is_verified_and_cached(server, tmp_path):
    root, url, requests = server
    _publish(root, "abcd_sample.json", (SHARED_DATA / "abcd" / "abcd_sample.json").read_bytes())
    cache = tmp_path / "cache"
    files = fetch(_source(), base_url=url, cache_dir=cache)
    assert requests == [f"/asappresearch/abcd/{COMMIT}/data/abcd_sample.json"]
    d = digest_file(files["abcd_sample.json"])
    assert (d.size, d.blob, d.sha256) == (SAMPLE.size, SAMPLE.blob, SAMPLE.sha256)
    again = fetch(_source(), base_url=url, cache_dir=cache)  # verified from the cache: no new request
    assert again == files and len(requests) == 1
    files["abcd_sample.json"].write_bytes(b"tampered")  # a damaged cache is fetched again
    fetch(_source(), base_url=url, cache_dir=cache)
    assert len(requests) == 2 and digest_file(files["abcd_sample.json"]).blob == SAMPLE.blob


def test_corrupted_file_is_refused_and_nothing_written(server, tmp_path):
    root, url, _ = server
    good = b'{"train": [], "dev": [], "test": []}'
    rf = RawFile("x.json", digest_file(_write(tmp_path / "good", good)).blob, len(good))
    _publish(root, "x.json", good.replace(b"train", b"tra1n"))  # same size, other bytes
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"x.json .*does not match asappresearch/abcd@6b8700ce67c6: git blob id"):
        fetch(_source([rf]), base_url=url, cache_dir=cache)
    assert not [p for p in cache.rglob("*") if p.is_file()]
    _publish(root, "x.json", good + b"\n")
    with pytest.raises(DataError, match="size 37 bytes, expected 36"):
        fetch(_source([rf]), base_url=url, cache_dir=cache)
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_missing_file_and_unreachable_server(server, tmp_path):
    _, url, _ = server
    with pytest.raises(DataError, match=r"cannot download abcd file abcd_sample.json from .*: HTTP 404"):
        fetch(_source(), base_url=url, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="offline"):
        fetch(_source(), base_url="http://127.0.0.1:9", cache_dir=tmp_path / "cache", timeout=2, retries=1)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_base_url_precedence(monkeypatch):
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert resolve_base_url() == "https://raw.githubusercontent.com"
    monkeypatch.setenv(BASE_URL_ENV, "http://mirror/")
    assert resolve_base_url() == "http://mirror"
    assert resolve_base_url("http://config") == "http://config"
    assert _source().url(SAMPLE, "http://m") == f"http://m/asappresearch/abcd/{COMMIT}/data/abcd_sample.json"


def test_prepare_downloads_verifies_and_records(server, tmp_path, monkeypatch):
    """prepare without --source: fetch from the (local) mirror given by $DORL_DATA_BASE_URL, verify, parse."""
    root, url, _ = server
    sim = simulate("abcd", 20, 0, tmp_path / "sim")
    blob = (sim / "abcd_v1.1.json.gz").read_bytes()
    _publish(root, "abcd_v1.1.json.gz", blob)
    d = digest_file(sim / "abcd_v1.1.json.gz")
    monkeypatch.setitem(prepare_mod.SOURCES, "abcd", _source([RawFile("abcd_v1.1.json.gz", d.blob, d.size, d.sha256)]))
    monkeypatch.setenv(BASE_URL_ENV, url)
    cfg = load(sets=[f"data.cache_dir={tmp_path / 'cache'}"])
    art = prepare_mod.prepare(cfg, dataset="abcd", out_uri=str(tmp_path / "data")).artifact
    assert art.info["source"] == "download"
    assert art.info["raw_files"]["abcd_v1.1.json.gz"] == {
        "file": "abcd_v1.1.json.gz",
        "size": d.size,
        "sha256": d.sha256,
        "git_blob": d.blob,
        "upstream": True,
    }
    assert (
        sum(len(pd.read_parquet(art.path(f"conversations/{s}.parquet"))) for s in ("train", "validation", "test")) == 20
    )
    # a corrupted mirror: refused, and the stage writes nothing at all
    shutil.rmtree(tmp_path / "cache")
    _publish(root, "abcd_v1.1.json.gz", blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(DataError, match="does not match"):
        prepare_mod.prepare(cfg, dataset="abcd", out_uri=str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Serves `body` with HTTP Range support (unless `ranges_ok` is False); the first response stops half-way."""

    body = b""
    ranges_ok = True
    seen: list = []

    def do_GET(self):
        asked = self.headers.get("Range") if self.ranges_ok else None
        type(self).seen.append(self.headers.get("Range"))
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        data = self.body[start:]
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if len(type(self).seen) == 1:
            data = data[: len(data) // 2]  # then the connection drops
            self.close_connection = True
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("ranges_ok", [True, False])
def test_a_dropped_download_resumes_where_it_stopped(tmp_path, monkeypatch, ranges_ok):
    import hashlib

    from dorl.data import download as dl

    body = bytes(range(256)) * 4000
    handler = type("H", (_Flaky,), {"body": body, "ranges_ok": ranges_ok, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    want = hashlib.sha256(body).hexdigest()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/release.zip"
        got = dl.download(url, tmp_path / "release.zip", what="release x", check=lambda d: None)
        # the second request asks for the rest only; a server that ignores it sends the whole file again
        assert handler.seen == [None, f"bytes={len(body) // 2}-"]
        assert got.sha256 == want and (tmp_path / "release.zip").read_bytes() == body
        bad = lambda d: None if d.sha256 == "0" * 64 else f"has sha256 {d.sha256}"  # noqa: E731
        with pytest.raises(DataError, match=f"release y downloaded from {url} has sha256 {want}; nothing was written"):
            dl.download(url, tmp_path / "other.zip", what="release y", check=bad)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["release.zip"]
    finally:
        httpd.shutdown()
        httpd.server_close()
