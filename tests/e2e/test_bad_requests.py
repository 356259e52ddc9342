"""A table of bad requests: each gets its documented status and error code (DESIGN §7, §11,
docs/api.md), a JSON error envelope whose request_id equals X-Request-Id, and changes nothing.

Requests go over raw sockets, byte for byte as written in the table, so that malformed HTTP,
invalid UTF-8 in a path, NUL bytes and oversized headers can be expressed. After the table kekd
must still be healthy and ready, wrap and unwrap must still round-trip, and neither the store
(`.dump` of the SQLite file, WAL included) nor the token's objects may have changed.

Run with -v for a summary of the table.
"""
import base64
import json
import os
import socket
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import Deployment, E2ETest, Response  # noqa: E402

ALL = ["datakey", "wrap", "unwrap", "rewrap", "describe"]
CONTEXT = {"tenant": "acme", "purpose": "card"}
VERBOSE = "-v" in sys.argv or "--verbose" in sys.argv
DEFAULT = object()  # "the client token of the table" (as opposed to None: no Authorization at all)


def b64(data):
    return base64.b64encode(data).decode()


def body(obj):
    return json.dumps(obj).encode()


class Row:
    def __init__(self, name, method, path, status, code, data=b"", token=DEFAULT, headers=(), raw=None):
        self.name, self.method, self.path, self.status, self.code = name, method, path, status, code
        self.data, self.token, self.headers, self.raw = data, token, list(headers), raw


def http_exchange(port, request, timeout=30):
    """Sends request bytes on a new connection; returns (status, headers, body bytes) of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # kekd answered early (413) and stopped reading; its answer is still there
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed without a complete answer: {buf[:300]!r}")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
        length = int(headers["Content-Length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:length]
    finally:
        sock.close()


AUDIT_ROWS = ('INSERT INTO "audit_records"', 'INSERT INTO "audit_checkpoints"')


def store_dump(path):
    """Every row of the store as SQL text, except the audit log's: refused requests are recorded
    there by design (test_audit.py counts those records). sqlite3 reads the WAL, so uncheckpointed
    commits count."""
    con = sqlite3.connect(path)
    try:
        return "\n".join(line for line in con.iterdump() if not line.startswith(AUDIT_ROWS))
    finally:
        con.close()


class BadRequests(E2ETest):
    @classmethod
    def setUpClass(cls):
        cls.d = d = Deployment().start()
        d.ceremony("create-key", "demo")
        d.ceremony("create-key", "payments")
        cls.star = d.client([{"key": "*", "operations": ALL}])        # reaches every key
        cls.demo_only = d.client([{"key": "demo", "operations": ALL}])

        def op(key, name, b):
            return d.request("POST", f"/v1/keys/{key}/{name}", body=b, token=cls.star).json()
        # The URL-safe row needs a '+' or '/' to replace; without one (about 1 run in 27) that row
        # would send valid standard base64. Draw another DEK until the ciphertext has one: wrapping
        # the same DEK again gives the same bytes (RFC 5649 has no nonce, docs/ciphertext.md), so a
        # loop that only wrapped again never ended in those runs (CI timed out at 600 s).
        for _ in range(100):  # all 100 without one: about 1 run in 10^143
            cls.dek = os.urandom(32)
            cls.ct = base64.b64decode(op("demo", "wrap", {"plaintext": b64(cls.dek), "context": CONTEXT})["ciphertext"])
            if set(b64(cls.ct)) & {"+", "/"}:
                break
        else:
            raise AssertionError("100 wraps of random DEKs and no '+' or '/' in any ciphertext")
        cls.ct_plain = base64.b64decode(op("demo", "wrap", {"plaintext": b64(cls.dek)})["ciphertext"])
        cls.ct_payments = base64.b64decode(
            op("payments", "wrap", {"plaintext": b64(cls.dek), "context": CONTEXT})["ciphertext"])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def send(self, row, star):
        if row.raw is not None:
            request = row.raw
        else:
            lines = [f"{row.method} ".encode() + (row.path if isinstance(row.path, bytes) else row.path.encode())
                     + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
            token = star if row.token is DEFAULT else row.token
            if token is not None:
                lines.append(b"Authorization: Bearer " + token.encode())
            for name, value in row.headers:
                lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
            if row.data or row.method in ("POST", "PUT", "PATCH", "DELETE"):
                lines.append(b"Content-Length: " + str(len(row.data)).encode())
            request = b"\r\n".join(lines) + b"\r\n\r\n" + row.data
        status, headers, data = http_exchange(self.d.port, request)
        return Response(status, data.decode("utf-8"), headers)  # strict: a body must be UTF-8

    def unwrap_row(self, name, ciphertext, context=CONTEXT, key="demo", op="unwrap"):
        return Row(name, "POST", f"/v1/keys/{key}/{op}", 400, "invalid_ciphertext",
                   body({"ciphertext": ciphertext if isinstance(ciphertext, str) else b64(ciphertext),
                         "context": context}))

    def table(self):
        d, ct = self.d, self.ct
        admin, demo_only = d.admin_token, self.demo_only
        star_id = self.star.split(".", 1)[0]
        ok_wrap = body({"plaintext": b64(b"k" * 16)})
        ok_unwrap = body({"ciphertext": b64(ct), "context": CONTEXT})
        flipped, header_flipped = bytearray(ct), bytearray(ct)
        flipped[-1] ^= 0x01
        header_flipped[9] ^= 0x01  # the low byte of the version: 1 -> 0
        v99 = bytearray(ct)
        v99[6:10] = (99).to_bytes(4, "big")
        name_upper = bytearray(ct)
        name_upper[2:6] = b"Demo"
        no_id = "0" * 32
        wrap, unwrap, datakey = "/v1/keys/demo/wrap", "/v1/keys/demo/unwrap", "/v1/keys/demo/datakey"
        R = Row
        return [
            # --- methods and paths
            R("PUT on wrap", "PUT", wrap, 405, "method_not_allowed", ok_wrap),
            R("DELETE on unwrap", "DELETE", unwrap, 405, "method_not_allowed"),
            R("PATCH on datakey", "PATCH", datakey, 405, "method_not_allowed", b"{}"),
            R("GET on rewrap", "GET", "/v1/keys/demo/rewrap", 405, "method_not_allowed"),
            R("OPTIONS on wrap", "OPTIONS", wrap, 405, "method_not_allowed"),
            R("POST on a key", "POST", "/v1/keys/demo", 405, "method_not_allowed", b"{}"),
            R("DELETE on /v1/clients", "DELETE", "/v1/clients", 405, "method_not_allowed", token=admin),
            R("POST on health", "POST", "/v1/health", 405, "method_not_allowed", b"{}"),
            R("unknown endpoint", "GET", "/v1/nope", 404, "not_found"),
            R("unknown key operation", "POST", "/v1/keys/demo/encrypt", 404, "not_found", ok_wrap),
            R("trailing slash", "POST", wrap + "/", 404, "not_found", ok_wrap),
            R("empty key segment", "POST", "/v1/keys//wrap", 404, "not_found", ok_wrap),
            R("dot-dot segments", "POST", "/v1/keys/../etc/wrap", 404, "not_found", ok_wrap),
            R("key name in upper case", "POST", "/v1/keys/Demo/wrap", 404, "not_found", ok_wrap),
            R("key name outside the grant", "POST", "/v1/keys/Demo/wrap", 403, "permission_denied", ok_wrap,
              token=demo_only),
            R("percent-encoded slash", "POST", "/v1/keys/..%2Fetc/wrap", 404, "not_found", ok_wrap),
            R("percent-encoded name", "POST", "/v1/keys/%64emo/wrap", 404, "not_found", ok_wrap),
            R("percent-encoded name, demo grant", "POST", "/v1/keys/%64emo/wrap", 403, "permission_denied",
              ok_wrap, token=demo_only),
            R("key name of 65 characters", "POST", f"/v1/keys/{'a' * 65}/wrap", 404, "not_found", ok_wrap),
            R("key name of 5000 characters", "POST", f"/v1/keys/{'a' * 5000}/wrap", 404, "not_found", ok_wrap),
            R("invalid UTF-8 in the key name", "POST", b"/v1/keys/d\xffmo/wrap", 404, "not_found", ok_wrap),
            R("invalid UTF-8 in an unknown path", "GET", b"/v1/\xc3(", 404, "not_found"),
            R("unknown key, unwrap", "POST", "/v1/keys/nokey/unwrap", 404, "not_found", ok_unwrap),
            R("unknown key, describe", "GET", "/v1/keys/nokey", 404, "not_found", token=admin),
            R("unknown ceremony", "GET", f"/v1/ceremonies/{no_id}", 404, "not_found", token=admin),
            R("unknown ceremony, approval", "POST", f"/v1/ceremonies/{no_id}/approvals", 404, "not_found",
              body({"operator": "alice", "signature": "AAAA"}), token=None),
            R("unknown client, delete", "DELETE", "/v1/clients/cli_00000000000000000000", 404, "not_found",
              token=admin),
            R("unknown ceremony state filter", "GET", "/v1/ceremonies?state=bogus", 400, "invalid_argument",
              token=admin),
            # --- credentials
            R("no Authorization", "POST", wrap, 401, "unauthenticated", ok_wrap, token=None),
            R("Basic scheme", "POST", wrap, 401, "unauthenticated", ok_wrap, token=None,
              headers=[("Authorization", "Basic " + b64(self.star.encode()))]),
            R("lower-case bearer", "POST", wrap, 401, "unauthenticated", ok_wrap, token=None,
              headers=[("Authorization", "bearer " + self.star)]),
            R("empty bearer", "POST", wrap, 401, "unauthenticated", ok_wrap, token=""),
            R("token without '.'", "POST", wrap, 401, "unauthenticated", ok_wrap, token=star_id),
            R("token with empty id", "POST", wrap, 401, "unauthenticated", ok_wrap,
              token="." + self.star.split(".", 1)[1]),
            R("token with empty secret", "POST", wrap, 401, "unauthenticated", ok_wrap, token=star_id + "."),
            R("unknown client", "POST", wrap, 401, "unauthenticated", ok_wrap,
              token="cli_00000000000000000000." + self.star.split(".", 1)[1]),
            R("wrong secret", "POST", wrap, 401, "unauthenticated", ok_wrap, token=star_id + ".wrong"),
            R("token over 256 characters", "POST", wrap, 401, "unauthenticated", ok_wrap,
              token=self.star + "x" * 300),
            R("oversized header", "POST", wrap, 413, "payload_too_large", ok_wrap, headers=[("X-Pad", "a" * 9000)]),
            R("oversized request line", "GET", "/v1/keys/" + "a" * 9000, 413, "payload_too_large"),
            # --- permissions: admin-only routes for an application client, grants for the admin
            R("client creates a client", "POST", "/v1/clients", 403, "permission_denied", body({"grants": []})),
            R("client lists clients", "GET", "/v1/clients", 403, "permission_denied"),
            R("client deletes a client", "DELETE", f"/v1/clients/{star_id}", 403, "permission_denied"),
            R("client proposes a ceremony", "POST", "/v1/ceremonies", 403, "permission_denied",
              body({"action": "rotate-key", "key": "demo"})),
            R("client cancels a ceremony", "POST", f"/v1/ceremonies/{no_id}/cancel", 403, "permission_denied",
              b"{}"),
            R("admin wraps", "POST", wrap, 403, "permission_denied", ok_wrap, token=admin),
            R("demo client on payments", "POST", "/v1/keys/payments/wrap", 403, "permission_denied", ok_wrap,
              token=demo_only),
            R("demo client describes payments", "GET", "/v1/keys/payments", 403, "permission_denied",
              token=demo_only),
            # --- bodies
            R("empty body", "POST", wrap, 400, "invalid_argument", b""),
            R("not JSON", "POST", wrap, 400, "invalid_argument", b"plaintext=AA=="),
            R("JSON array", "POST", wrap, 400, "invalid_argument", b'[{"plaintext":"AA=="}]'),
            R("JSON string", "POST", wrap, 400, "invalid_argument", b'"AA=="'),
            R("trailing garbage", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA=="} x'),
            R("two objects", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA=="}{}'),
            R("unterminated object", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA=="'),
            R("comment", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==" /* x */}'),
            R("unknown member", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==","contxt":{}}'),
            R("member of another operation", "POST", wrap, 400, "invalid_argument", body({"ciphertext": b64(ct)})),
            R("unknown member, datakey", "POST", datakey, 400, "invalid_argument", b'{"byts":32}'),
            R("bytes as string", "POST", datakey, 400, "invalid_argument", b'{"bytes":"32"}'),
            R("bytes 0", "POST", datakey, 400, "invalid_argument", b'{"bytes":0}'),
            R("bytes 1025", "POST", datakey, 400, "invalid_argument", b'{"bytes":1025}'),
            R("bytes -1", "POST", datakey, 400, "invalid_argument", b'{"bytes":-1}'),
            R("bytes 1.5", "POST", datakey, 400, "invalid_argument", b'{"bytes":1.5}'),
            R("bytes 32.0", "POST", datakey, 400, "invalid_argument", b'{"bytes":32.0}'),
            R("bytes 2^64", "POST", datakey, 400, "invalid_argument", b'{"bytes":18446744073709551616}'),
            R("bytes true", "POST", datakey, 400, "invalid_argument", b'{"bytes":true}'),
            R("datakey plaintext flag as string", "POST", datakey, 400, "invalid_argument", b'{"plaintext":"no"}'),
            R("plaintext as number", "POST", wrap, 400, "invalid_argument", b'{"plaintext":1234}'),
            R("plaintext as array", "POST", wrap, 400, "invalid_argument", b'{"plaintext":["AA=="]}'),
            R("context as array", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==","context":["a"]}'),
            R("context as string", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==","context":"a=b"}'),
            R("context value as number", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"a":1}}'),
            R("context value as object", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"a":{"b":"c"}}}'),
            R("context with an empty key", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"":"x"}}'),
            R("context over 8192 bytes", "POST", wrap, 400, "invalid_argument",
              body({"plaintext": "AA==", "context": {"a": "x" * 8192}})),
            R("invalid base64", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"!!!!"}'),
            R("URL-safe base64", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"-_8="}'),
            R("unpadded base64", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA"}'),
            R("base64 with a line break", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AAAA\\nAAAA"}'),
            R("base64 with inner padding", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==AA=="}'),
            R("missing plaintext", "POST", wrap, 400, "invalid_argument", b'{"context":{}}'),
            R("null plaintext", "POST", wrap, 400, "invalid_argument", b'{"plaintext":null}'),
            R("empty plaintext", "POST", wrap, 400, "invalid_argument", b'{"plaintext":""}'),
            R("plaintext of 4097 bytes", "POST", wrap, 400, "invalid_argument", body({"plaintext": b64(b"p" * 4097)})),
            R("missing ciphertext", "POST", unwrap, 400, "invalid_argument", body({"context": CONTEXT})),
            R("ciphertext as number", "POST", unwrap, 400, "invalid_argument", b'{"ciphertext":12}'),
            R("empty items", "POST", wrap, 400, "invalid_argument", b'{"items":[]}'),
            R("items as object", "POST", wrap, 400, "invalid_argument", b'{"items":{"plaintext":"AA=="}}'),
            R("items beside other members", "POST", wrap, 400, "invalid_argument",
              b'{"items":[{"plaintext":"AA=="}],"context":{}}'),
            R("1001 items", "POST", wrap, 413, "payload_too_large", body({"items": [{"plaintext": "AA=="}] * 1001})),
            R("body over the 1 MiB limit", "POST", wrap, 413, "payload_too_large",
              b'{"plaintext":"' + b"A" * (1024 * 1024) + b'"}'),
            R("chunked body over the limit", "POST", wrap, 413, "payload_too_large", raw=(
                b"POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + self.star.encode()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
                    b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n" for _ in range(17)) + b"0\r\n\r\n")),
            R("nesting 100000 deep", "POST", wrap, 400, "invalid_argument",
              b'{"context":' + b"[" * 100000 + b"]" * 100000 + b"}"),
            R("nesting 100000 deep in grants", "POST", "/v1/clients", 400, "invalid_argument",
              b'{"grants":' + b"[" * 100000 + b"]" * 100000 + b"}", token=admin),
            R("unknown grant operation", "POST", "/v1/clients", 400, "invalid_argument",
              body({"grants": [{"key": "demo", "operations": ["decrypt"]}]}), token=admin),
            R("grant pattern with '/'", "POST", "/v1/clients", 400, "invalid_argument",
              body({"grants": [{"key": "../etc", "operations": ["wrap"]}]}), token=admin),
            R("proposal with an invalid key name", "POST", "/v1/ceremonies", 400, "invalid_argument",
              body({"action": "create-key", "key": "Demo"}), token=admin),
            R("proposal with an unknown action", "POST", "/v1/ceremonies", 400, "invalid_argument",
              body({"action": "delete-key", "key": "demo"}), token=admin),
            R("proposal for an existing key", "POST", "/v1/ceremonies", 409, "already_exists",
              body({"action": "create-key", "key": "demo"}), token=admin),
            R("proposal for an unknown version", "POST", "/v1/ceremonies", 404, "not_found",
              body({"action": "disable-version", "key": "demo", "version": 7}), token=admin),
            # --- encodings
            R("invalid UTF-8 in a string", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"a":"\xff"}}'),
            R("overlong UTF-8", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"a":"\xc0\xaf"}}'),
            R("lone surrogate escape", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA==","context":{"a":"\\ud800"}}'),
            R("UTF-16 body", "POST", wrap, 400, "invalid_argument", '{"plaintext":"AA=="}'.encode("utf-16")),
            R("raw NUL inside a string", "POST", wrap, 400, "invalid_argument", b'{"plaintext":"AA==\x00"}'),
            R("NUL, then garbage, after the object", "POST", wrap, 400, "invalid_argument",
              b'{"plaintext":"AA=="}\x00garbage'),
            R("NUL after the object, admin route", "POST", "/v1/clients", 400, "invalid_argument",
              b'{"grants":[]}\x00', token=admin),
            # --- ciphertexts
            self.unwrap_row("truncated ciphertext", ct[:-8]),
            self.unwrap_row("ciphertext cut in the header", ct[:5]),
            self.unwrap_row("bit-flipped ciphertext", bytes(flipped)),
            self.unwrap_row("bit-flipped version", bytes(header_flipped)),
            self.unwrap_row("version that never existed", bytes(v99)),
            self.unwrap_row("invalid key name inside", bytes(name_upper)),
            self.unwrap_row("8 extra bytes", ct + bytes(8)),
            self.unwrap_row("5000 extra bytes", ct + bytes(5000)),
            self.unwrap_row("unknown format byte", b"\x02" + ct[1:]),
            self.unwrap_row("name length 0", b"\x01\x00" + ct[2:]),
            self.unwrap_row("empty ciphertext", ""),
            self.unwrap_row("ciphertext not base64", "%%%%"),
            self.unwrap_row("ciphertext in URL-safe base64", b64(ct).replace("+", "-").replace("/", "_")),
            self.unwrap_row("payments ciphertext on demo", self.ct_payments),
            self.unwrap_row("demo ciphertext on payments", ct, key="payments"),
            self.unwrap_row("another context", ct, context={"tenant": "acme"}),
            self.unwrap_row("no context for a ciphertext with one", ct, context=None),
            self.unwrap_row("a context for a ciphertext without", self.ct_plain),
            self.unwrap_row("bit-flipped ciphertext, rewrap", bytes(flipped), op="rewrap"),
            # --- malformed HTTP (answered by the server itself; the connection is closed)
            R("garbage request line", None, None, 400, "invalid_argument", raw=b"GARBAGE\r\n\r\n"),
            R("HTTP/2.0 in the request line", None, None, 400, "invalid_argument",
              raw=b"GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n"),
            R("control character in a header", None, None, 400, "invalid_argument",
              raw=b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
            R("Content-Length not a number", None, None, 400, "invalid_argument",
              raw=b"POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
            R("bad chunk size", None, None, 400, "invalid_argument",
              raw=b"POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"zz\r\n{}\r\n0\r\n\r\n"),
            R("Content-Length and chunked", None, None, 400, "invalid_argument",
              raw=b"POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ]

    def test_bad_requests_get_their_errors_and_change_nothing(self):
        d = self.d
        store = os.path.join(d.dir, "var", "kekd.db")
        dump_before, labels_before = store_dump(store), d.token_labels()
        rows = self.table()
        self.assertGreaterEqual(len(rows), 40)
        summary, sent = [], None
        for row in rows:
            if d.proc.poll() is not None:
                self.fail(f"kekd exited ({d.proc.returncode}) by the time of {sent!r} (see the rows before):\n"
                          + d.read_log()[-3000:])
            sent = row.name
            with self.subTest(row.name):
                response = self.send(row, self.star)
                summary.append((row.name, response.status, row.status,
                                response.json()["error"]["code"] if response.status >= 400 else "-"))
                self.assertError(response, row.status, row.code)
                if row.status == 405:
                    self.assertTrue(response.headers.get("Allow"), row.name)
        if VERBOSE:
            width = max(len(name) for name, *_ in summary)
            print(f"\n{'request':<{width}}  got  want  code", file=sys.stderr)
            for name, got, want, code in summary:
                print(f"{name:<{width}}  {got}  {want}   {code}{'' if got == want else '  <-- MISMATCH'}",
                      file=sys.stderr)
            print(f"{len(summary)} bad requests, {sum(g == w for _, g, w, _ in summary)} answered as expected",
                  file=sys.stderr)

        # kekd is alive, healthy and ready, and still does its job
        self.assertIsNone(d.proc.poll(), "kekd exited during the table:\n" + d.read_log()[-3000:])
        self.assertEqual(d.get("/v1/health").status, 200)
        self.assertEqual(d.get("/v1/ready").status, 200)
        dek = os.urandom(24)
        w = d.request("POST", "/v1/keys/demo/wrap", body={"plaintext": b64(dek), "context": CONTEXT}, token=self.star)
        self.assertEqual(w.status, 200, w.body)
        u = d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": w.json()["ciphertext"], "context": CONTEXT},
                      token=self.star)
        self.assertEqual((u.status, u.json().get("plaintext")), (200, b64(dek)), u.body)
        old = d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": b64(self.ct), "context": CONTEXT},
                        token=self.star)
        self.assertEqual(old.json()["plaintext"], b64(self.dek))
        # and nothing changed: the store and the token's objects are as before the table
        self.assertEqual(store_dump(store), dump_before)
        self.assertEqual(d.token_labels(), labels_before)

    def test_documented_leniencies(self):
        """What docs/api.md says is accepted: Content-Type is not checked, a duplicate member's last value
        counts, non-canonical base64 padding bits are ignored, a context value may hold U+0000, a UTF-8
        byte-order mark before the body is skipped."""
        d, star = self.d, self.star
        bom = d.request("POST", "/v1/keys/demo/wrap", raw=b'\xef\xbb\xbf{"plaintext":"AA=="}', token=star)
        self.assertEqual(bom.status, 200, bom.body)
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            r = d.request("POST", "/v1/keys/demo/wrap", raw=b'{"plaintext":"AA=="}', token=star,
                          headers={"Content-Type": content_type})
            self.assertEqual(r.status, 200, r.body)
        dup = d.request("POST", "/v1/keys/demo/wrap", raw=b'{"plaintext":"AQ==","plaintext":"Ag=="}', token=star)
        back = d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": dup.json()["ciphertext"]}, token=star)
        self.assertEqual(back.json()["plaintext"], "Ag==")
        loose = d.request("POST", "/v1/keys/demo/wrap", raw=b'{"plaintext":"AB=="}', token=star)
        back = d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": loose.json()["ciphertext"]}, token=star)
        self.assertEqual(back.json()["plaintext"], "AA==")
        nul = {"a": "x\u0000y"}
        w = d.request("POST", "/v1/keys/demo/wrap", body={"plaintext": "AA==", "context": nul}, token=star)
        self.assertEqual(w.status, 200, w.body)
        self.assertEqual(d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": w.json()["ciphertext"],
                                                                          "context": nul}, token=star).status, 200)
        self.assertError(d.request("POST", "/v1/keys/demo/unwrap", body={"ciphertext": w.json()["ciphertext"],
                                                                          "context": {"a": "x"}}, token=star),
                         400, "invalid_ciphertext")


if __name__ == "__main__":
    unittest.main()
