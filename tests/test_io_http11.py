"""Every response the right one (issue 31): a raw loopback server speaking HTTP/1.1 as real
servers do, within their rights or not (every status class, every way to frame or cut a body,
bytes where none belong), in every mode. A response is never read from another's bytes: each
request below is followed by plain GETs on the same keep-alive connection (limit=1), which must
get their own answers."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib

import httpx
import pytest

from partally.io.fetch import MODES, fetch_all


def answer(status: str = "200 OK", headers: tuple[tuple[str, object], ...] = (), body: bytes = b"") -> bytes:
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status}\r\n{fields}\r\n".encode() + body


OK = answer(headers=(("Content-Length", 2),), body=b"ok")
LATE = 0.03  # seconds between two writes of one answer: the second arrives in a later segment
GZIPPED = gzip.compress(b"z" * 5000)
NOISE = bytes(range(256)) * 400  # compresses to ~10 KB: cut in half, half of it is missing
HALF_GZIP = gzip.compress(NOISE)[: len(gzip.compress(NOISE)) // 2]
HALF_DEFLATE = zlib.compress(NOISE)[: len(zlib.compress(NOISE)) // 2]
MEMBERS = gzip.compress(b"first,") + gzip.compress(b"second")

# NAME: what the server writes, in order, for a request of /NAME: bytes, LATE (a pause), or
# None (close the connection). A HEAD of any other name gets a plain head.
SCRIPTS: dict[str, list] = {
    "ok": [OK],
    # A body after a HEAD head (aiohttp#820), at once or later.
    "head-body": [answer(headers=(("Content-Length", 5),), body=b"HELLO")],
    "head-body-late": [answer(headers=(("Content-Length", 5),)), LATE, b"HELLO"],
    "head-chunked-body": [answer(headers=(("Transfer-Encoding", "chunked"),), body=b"5\r\nHELLO\r\n0\r\n\r\n")],
    # 204 and 304 have no body, whatever their headers say.
    "204-body": [answer("204 No Content", body=b"STRAY")],
    "204-length-body": [answer("204 No Content", (("Content-Length", 5),), b"STRAY")],
    "304-length-body": [answer("304 Not Modified", (("Content-Length", 5),), b"STRAY")],
    "304-length-late": [answer("304 Not Modified", (("Content-Length", 5),)), LATE, b"STRAY"],
    "204-plain": [answer("204 No Content")],
    "304-plain": [answer("304 Not Modified", (("ETag", '"x"'),))],
    "205": [answer("205 Reset Content", (("Content-Length", 0),))],
    # More bytes than Content-Length says, or after the last chunk: not the next response.
    "past-length": [answer(headers=(("Content-Length", 2),), body=b"okSTRAY")],
    "past-last-chunk": [answer(headers=(("Transfer-Encoding", "chunked"),), body=b"2\r\nok\r\n0\r\n\r\nSTRAY")],
    # Informational answers before the final one (http.client skipped only 100 Continue).
    "100": [b"HTTP/1.1 100 Continue\r\n\r\n" + OK],
    "100-late": [b"HTTP/1.1 100 Continue\r\n\r\n", LATE, OK],
    "102": [b"HTTP/1.1 102 Processing\r\n\r\n", LATE, OK],
    "103": [b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK],
    "103-twice": [b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n", LATE, OK],
    # A head's end split across two segments, and bare LF line ends (read by both parsers).
    "head-split": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r", LATE, b"\nok"],
    "head-split-2": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r", LATE, b"\n\r\nok"],
    "bare-lf": [b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
    # Framings.
    "trailers": [answer(headers=(("Transfer-Encoding", "chunked"), ("Trailer", "X-Sum")),
                        body=b"2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n")],
    "chunk-extensions": [answer(headers=(("Transfer-Encoding", "chunked"),), body=b"1;a=b\r\no\r\n1;c\r\nk\r\n0\r\n\r\n")],
    "chunks-late": [answer(headers=(("Transfer-Encoding", "chunked"),)), b"1\r\no", LATE, b"\r\n1\r\nk\r\n", LATE, b"0\r\n\r\n"],
    "length-and-chunked": [answer(headers=(("Content-Length", 100), ("Transfer-Encoding", "chunked")),
                                  body=b"2\r\nok\r\n0\r\n\r\n")],
    "close-delimited": [answer(headers=(("Connection", "close"),), body=b"until close"), None],
    "http10": [b"HTTP/1.0 200 OK\r\n\r\nten", None],
    "short": [answer(headers=(("Content-Length", 10),), body=b"short"), None],
    "gzip": [answer(headers=(("Content-Encoding", "gzip"), ("Content-Length", len(GZIPPED))), body=GZIPPED)],
    "deflate": [answer(headers=(("Content-Encoding", "deflate"), ("Content-Length", len(zlib.compress(b"d" * 99)))),
                       body=zlib.compress(b"d" * 99))],
    # Cut or odd compressed bodies: a stream cut before its end marker, with a Content-Length
    # that matches what was sent, chunked, or close-delimited; several gzip members.
    "gzip-cut": [answer(headers=(("Content-Encoding", "gzip"), ("Content-Length", len(HALF_GZIP))), body=HALF_GZIP)],
    "gzip-cut-chunked": [answer(headers=(("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")),
                                body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(HALF_GZIP), HALF_GZIP))],
    "gzip-cut-close": [answer(headers=(("Content-Encoding", "gzip"), ("Connection", "close")), body=HALF_GZIP), None],
    "deflate-cut": [answer(headers=(("Content-Encoding", "deflate"), ("Content-Length", len(HALF_DEFLATE))),
                           body=HALF_DEFLATE)],
    "gzip-members": [answer(headers=(("Content-Encoding", "gzip"), ("Content-Length", len(MEMBERS))), body=MEMBERS)],
    "gzip-trailing-garbage": [answer(headers=(("Content-Encoding", "gzip"), ("Content-Length", len(GZIPPED) + 4)),
                                     body=GZIPPED + b"\0\0\0\0")],
    # A bad chunk after the good ones, in a later segment.
    "bad-chunk-late": [answer(headers=(("Transfer-Encoding", "chunked"),), body=b"2\r\nok\r\n"), LATE, b"zz\r\n"],
    # More bytes than Content-Length says, arriving after the next request went out.
    "past-length-late": [answer(headers=(("Content-Length", 2),), body=b"ok"), LATE, b"STRAY"],
    # A HEAD and a 304 of a gzip-encoded resource: the encoding is named, there is no body.
    "head-gzip": [answer(headers=(("Content-Encoding", "gzip"), ("Content-Length", 1234)))],
    "304-gzip": [answer("304 Not Modified", (("Content-Encoding", "gzip"), ("ETag", '"g"')))],
    # A redirect with a body, whole or cut short.
    "moved": [answer("301 Moved Permanently", (("Location", "/ok"), ("Content-Length", 9)), b"moved: ok")],
    "moved-cut": [answer("302 Found", (("Location", "/ok"), ("Content-Length", 90)), b"cut"), None],
    # A HEAD of a large file, and a 304 of one: no body, whatever max_body is.
    "head-large": [answer(headers=(("Content-Length", 10**10),))],
    "304-large": [answer("304 Not Modified", (("Content-Length", 10**10),))],
    # A new connection closed without an answer.
    "drop": [None],
    # Answered before the request's body is read, then closed (a 413 to a large upload).
    "early": [answer("413 Content Too Large", (("Content-Length", 4), ("Connection", "close")), b"big!"), None],
}


class ScriptedServer:
    """A loopback HTTP/1.1 server answering /NAME with SCRIPTS[NAME], keep-alive; it records each
    request as (connection number, request line). Every socket has a 5 s timeout; `close` stops it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[tuple[int, str]] = []
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError):
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                line = head.split(b"\r\n")[0].decode()
                with self._lock:
                    self.seen.append((number, line))
                method, target = line.split(" ")[:2]
                name = target.split("?")[0].rsplit("/", 1)[-1]
                script = SCRIPTS.get(name, SCRIPTS["ok"])
                if method == "HEAD" and not name.startswith("head-"):
                    script = [answer(headers=(("Content-Length", 0),))]
                if name != "early":  # the others read the request's body
                    length = next((int(f.split(b":")[1]) for f in head.split(b"\r\n")
                                   if f.lower().startswith(b"content-length:")), 0)
                    while len(data) < length:
                        data += conn.recv(65536)
                    data = data[length:]
                for part in script:
                    if part is None:
                        conn.shutdown(socket.SHUT_WR)
                        time.sleep(0.05)
                        return
                    if part is LATE:
                        time.sleep(LATE)
                    else:
                        conn.sendall(part)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def scripted():
    running = ScriptedServer()
    yield running
    running.close()


def then_gets(scripted: ScriptedServer, mode: str, first: httpx.Request | str, **kwargs):
    """`first`, then two GETs of /ok, one at a time (one keep-alive connection where it may be
    reused), and one more GET later in a batch of its own; (the four results, how many
    connections the first three took)."""
    before = scripted.connections
    requests = [first, f"{scripted.url}/ok", f"{scripted.url}/ok"]
    results = fetch_all(requests, mode, limit=1, retries=0, timeout=5, **kwargs)
    connections = scripted.connections - before
    time.sleep(LATE * 2)  # a late stray has arrived: the GETs above did not wait for it
    again = fetch_all([f"{scripted.url}/ok"], mode, retries=0, timeout=5)
    return [*results, *again], connections


def assert_gets_answered(results) -> None:
    assert [(r.status, r.content, r.error) for r in results[1:]] == [(200, b"ok", None)] * 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["head-body", "head-body-late", "head-chunked-body"])
def test_a_head_answered_with_a_body_anyway_is_right_and_so_is_the_next_request(scripted, mode, name):
    # Issue 31, case 1 (aiohttp#820): asyncio gave 6 of 6 HEAD results as errors ("Bad status
    # line ... b'HE...'"): the stray body was read as the next response.
    requests = [httpx.Request("HEAD" if i % 2 == 0 else "GET", f"{scripted.url}/{name if i % 2 == 0 else 'ok'}")
                for i in range(12)]
    results = fetch_all(requests, mode, limit=1, retries=0, timeout=5)
    heads, gets = results[::2], results[1::2]
    assert [(r.status, r.error, r.bytes) for r in heads] == [(200, None, 0)] * 6, heads
    assert [(r.status, r.content) for r in gets] == [(200, b"ok")] * 6, gets


@pytest.mark.parametrize("mode", MODES)
def test_a_head_without_a_body_keeps_its_connection(scripted, mode):
    before = scripted.connections
    requests = [httpx.Request("HEAD", f"{scripted.url}/plain-{i}") for i in range(5)]
    results = fetch_all(requests, mode, limit=1, retries=0, timeout=5)
    assert [r.status for r in results] == [200] * 5
    assert scripted.connections - before == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["204-body", "204-length-body", "304-length-body", "304-length-late"])
def test_a_body_after_a_204_or_304_is_never_the_next_response(scripted, mode, name):
    # asyncio failed the 204/304 itself; "-late": threads and asyncio failed the next request.
    results, _ = then_gets(scripted, mode, f"{scripted.url}/{name}")
    status = int(name[:3])
    assert (results[0].status, results[0].bytes) == (status, 0), results[0]
    assert results[0].ok == (status < 400)
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["204-plain", "304-plain", "205"])
def test_204_304_and_205_without_a_body_keep_their_connection(scripted, mode, name):
    results, connections = then_gets(scripted, mode, f"{scripted.url}/{name}")
    assert (results[0].status, results[0].bytes) == (int(name[:3]), 0)
    assert_gets_answered(results)
    assert connections == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["past-length", "past-last-chunk"])
def test_bytes_past_the_end_of_a_body_are_never_parsed(scripted, mode, name):
    # asyncio failed the response itself ("Bad status line ... STRAY").
    results, _ = then_gets(scripted, mode, f"{scripted.url}/{name}")
    assert (results[0].status, results[0].content, results[0].error) == (200, b"ok", None)
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["100", "100-late", "102", "103", "103-twice"])
def test_informational_responses_before_the_final_one_are_skipped(scripted, mode, name):
    # threads and sequential took a 103 Early Hints (or a 102) as the answer, with no body.
    results, connections = then_gets(scripted, mode, f"{scripted.url}/{name}")
    assert (results[0].status, results[0].content, results[0].error) == (200, b"ok", None), results[0]
    assert_gets_answered(results)
    assert connections == 1


@pytest.mark.parametrize("mode", MODES)
def test_content_length_with_chunked_is_refused_in_every_mode(scripted, mode):
    # asyncio refused it (aiohttp) and threads read it by its chunks: one answer, two readings.
    results, _ = then_gets(scripted, mode, f"{scripted.url}/length-and-chunked")
    assert not results[0].ok and results[0].error.startswith("RemoteProtocolError"), results[0]
    assert "Transfer-Encoding" in results[0].error
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "body"), [
    ("trailers", b"ok"), ("chunk-extensions", b"ok"), ("chunks-late", b"ok"),
    ("close-delimited", b"until close"), ("http10", b"ten"), ("gzip", b"z" * 5000), ("deflate", b"d" * 99),
    ("gzip-members", b"first,second"), ("gzip-trailing-garbage", b"z" * 5000),
    ("head-split", b"ok"), ("head-split-2", b"ok"), ("bare-lf", b"ok"),
])
def test_every_framing_gives_its_body(scripted, mode, name, body):
    results, _ = then_gets(scripted, mode, f"{scripted.url}/{name}")
    assert (results[0].status, results[0].content, results[0].error) == (200, body, None)
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
def test_a_cut_body_is_an_error_and_the_next_request_is_answered(scripted, mode):
    results, _ = then_gets(scripted, mode, f"{scripted.url}/short")
    assert not results[0].ok and results[0].status is None and results[0].content is None
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_before_the_request_body_was_read_is_the_result(scripted, mode):
    upload = httpx.Request("POST", f"{scripted.url}/early", content=b"u" * 200_000)
    results, _ = then_gets(scripted, mode, upload)
    assert (results[0].status, results[0].content) == (413, b"big!"), results[0]
    assert results[0].error == "HTTP 413 Content Too Large"
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["gzip-cut", "gzip-cut-chunked", "gzip-cut-close", "deflate-cut"])
def test_a_compressed_body_cut_short_is_an_error_not_a_short_body(scripted, mode, name):
    # Every mode gave ok=True with 9,803 of 102,400 bytes: httpx's decoder returns what it has.
    results, _ = then_gets(scripted, mode, f"{scripted.url}/{name}")
    assert not results[0].ok and results[0].content is None, results[0]
    assert results[0].error.startswith("DecodingError") and "cut short" in results[0].error
    assert_gets_answered(results)


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_chunk_after_good_ones_fails_at_once(scripted, mode):
    start = time.monotonic()
    (result,) = fetch_all([f"{scripted.url}/bad-chunk-late"], mode, retries=0, timeout=30)
    assert not result.ok and result.error.startswith("RemoteProtocolError"), result
    assert time.monotonic() - start < 10  # not the 30 s read timeout


@pytest.mark.parametrize("mode", MODES)
def test_retries_0_sends_a_request_once_when_its_new_connection_drops(scripted, mode):
    # asyncio sent it four times (aiohttp's own resend, then partally's, each resent again).
    before = len(scripted.seen)
    (result,) = fetch_all([f"{scripted.url}/drop"], mode, retries=0, timeout=5)
    assert not result.ok and result.error.startswith("RemoteProtocolError")
    assert [line for _, line in scripted.seen[before:]] == ["GET /drop HTTP/1.1"]


@pytest.mark.parametrize("mode", MODES)
def test_a_head_or_304_of_a_large_file_is_not_too_large(scripted, mode):
    # Both were error results "body too large: Content-Length says 10,000,000,000 bytes".
    requests = [httpx.Request("HEAD", f"{scripted.url}/head-large"), f"{scripted.url}/304-large"]
    head, not_modified = fetch_all(requests, mode, retries=0, timeout=5, max_body=1000)
    assert (head.status, head.error, head.bytes) == (200, None, 0), head
    assert head.headers["content-length"] == str(10**10)
    assert (not_modified.status, not_modified.error) == (304, None), not_modified


@pytest.mark.parametrize("mode", MODES)
def test_late_bytes_past_a_body_never_answer_the_next_request(scripted, mode):
    # They reached the connection after the next GET went out on it: that GET failed ("Bad
    # status line ... STRAYHTTP/1.1") in every mode. It is sent again on a new connection.
    requests = [f"{scripted.url}/past-length-late", f"{scripted.url}/ok", f"{scripted.url}/ok"]
    results = fetch_all(requests, mode, limit=1, retries=0, timeout=5)
    assert [(r.status, r.content, r.error) for r in results] == [(200, b"ok", None)] * 3, results
    post = httpx.Request("POST", f"{scripted.url}/ok", content=b"once")
    results = fetch_all([f"{scripted.url}/past-length-late", post], mode, limit=1, retries=0, timeout=5)
    assert results[0].ok  # a POST is never sent twice: it may fail, never be answered by the stray
    assert results[1].ok or results[1].error.startswith("RemoteProtocolError"), results[1]
    assert results[1].content in (b"ok", None)


@pytest.mark.parametrize("mode", MODES)
def test_a_head_or_304_of_a_gzip_resource_is_no_decoding_error(scripted, mode):
    requests = [httpx.Request("HEAD", f"{scripted.url}/head-gzip"), f"{scripted.url}/304-gzip"]
    head, not_modified = fetch_all(requests, mode, retries=0, timeout=5)
    assert (head.status, head.error, head.content) == (200, None, b""), head
    assert (not_modified.status, not_modified.error, not_modified.content) == (304, None, b"")


@pytest.mark.parametrize("mode", MODES)
def test_a_redirect_body_is_read_and_its_connection_kept(scripted, mode):
    # threads and sequential closed the connection of every redirect with a body.
    results, connections = then_gets(scripted, mode, f"{scripted.url}/moved")
    assert (results[0].status, results[0].content, results[0].final_url) == (200, b"ok", f"{scripted.url}/ok")
    assert_gets_answered(results)
    assert connections == 1
    (cut,) = fetch_all([f"{scripted.url}/moved-cut"], mode, retries=0, timeout=5)
    assert (cut.status, cut.content) == (200, b"ok"), cut  # followed all the same
