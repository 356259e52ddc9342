"""The application API over HTTP: data keys, wrap, unwrap, rewrap, batches, clients and grants."""
import base64
import os
import re
import sys
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, PKCS11_HELPER, SOFTHSM, SOURCE_DIR, run  # noqa: E402

ALL = ["datakey", "wrap", "unwrap", "rewrap", "describe"]
CONTEXT = {"tenant": "acme", "purpose": "card"}


def b64(data):
    return base64.b64encode(data).decode()


class ApplicationApi(E2ETest):
    @classmethod
    def setUpClass(cls):
        from kekd_e2e import Deployment
        cls.d = Deployment().start()
        cls.d.ceremony("create-key", "demo")
        cls.d.ceremony("create-key", "payments")
        cls.app = cls.d.client([{"key": "demo", "operations": ALL}])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def op(self, name, body, token=None, key="demo"):
        return self.d.request("POST", f"/v1/keys/{key}/{name}", body=body, token=token or self.app)

    def test_datakey_round_trips_with_and_without_plaintext(self):
        for n in (1, 16, 32, 1024):
            dk = self.op("datakey", {"bytes": n, "context": CONTEXT})
            self.assertEqual(dk.status, 200, dk.body)
            dk = dk.json()
            self.assertEqual(len(base64.b64decode(dk["plaintext"])), n)
            self.assertEqual((dk["key"], dk["version"]), ("demo", 1))
            back = self.op("unwrap", {"ciphertext": dk["ciphertext"], "context": CONTEXT}).json()
            self.assertEqual(back["plaintext"], dk["plaintext"])
            hidden = self.op("datakey", {"bytes": n, "plaintext": False}).json()
            self.assertNotIn("plaintext", hidden)
            self.assertEqual(len(base64.b64decode(self.op("unwrap", {"ciphertext": hidden["ciphertext"]})
                                                  .json()["plaintext"])), n)
        self.assertEqual(len(base64.b64decode(self.op("datakey", {}).json()["plaintext"])), 32)

    def test_wrong_context_and_tampering_fail_alike(self):
        w = self.op("wrap", {"plaintext": b64(b"k" * 32), "context": CONTEXT}).json()
        wrong = self.op("unwrap", {"ciphertext": w["ciphertext"], "context": {"tenant": "acme"}})
        self.assertError(wrong, 400, "invalid_ciphertext")
        raw = bytearray(base64.b64decode(w["ciphertext"]))
        raw[-3] ^= 1
        tampered = self.op("unwrap", {"ciphertext": b64(bytes(raw)), "context": CONTEXT})
        self.assertError(tampered, 400, "invalid_ciphertext")
        self.assertEqual(wrong.json()["error"]["message"], tampered.json()["error"]["message"])

    def test_the_same_dek_and_context_wrap_to_the_same_bytes_and_another_context_does_not(self):
        """docs/ciphertext.md: RFC 5649 has no nonce, and the context hash is inside the payload."""
        dek = b64(os.urandom(32))
        first, again, other = (self.op("wrap", {"plaintext": dek, "context": c}).json()["ciphertext"]
                               for c in (CONTEXT, CONTEXT, {"tenant": "acme", "purpose": "file"}))
        self.assertEqual(first, again)
        header = 1 + 1 + len("demo") + 4
        wrapped = [base64.b64decode(c)[header:] for c in (first, other)]
        self.assertEqual(len(wrapped[0]), len(wrapped[1]))
        # Unrelated: AES key wrap diffuses a change anywhere in its input over every output block.
        self.assertTrue(all(a != b for a, b in zip(*(
            [w[i:i + 8] for i in range(0, len(w), 8)] for w in wrapped))), (first, other))

    def metric(self, name, labels):
        text = self.d.get("/metrics").body
        found = re.search(re.escape(name + "{" + labels + "}") + r" (\d+)", text)
        return int(found.group(1)) if found else 0

    def test_failed_unwraps_and_auth_failures_are_counted(self):
        failed = 'operation="unwrap",outcome="invalid_ciphertext"'
        before = (self.metric("kekd_key_operations_total", failed),
                  self.metric("kekd_auth_failures_total", 'reason="unauthenticated"'),
                  self.metric("kekd_auth_failures_total", 'reason="permission_denied"'))
        w = self.op("wrap", {"plaintext": b64(b"k" * 32), "context": CONTEXT}).json()
        self.op("unwrap", {"ciphertext": w["ciphertext"], "context": {"tenant": "other"}})
        self.op("unwrap", {"items": [{"ciphertext": "AAAA"}, {"ciphertext": w["ciphertext"], "context": CONTEXT}]})
        self.op("unwrap", {"ciphertext": w["ciphertext"]}, token="cli_nobody.secret")
        self.op("unwrap", {"ciphertext": w["ciphertext"]}, key="payments")
        after = (self.metric("kekd_key_operations_total", failed),
                 self.metric("kekd_auth_failures_total", 'reason="unauthenticated"'),
                 self.metric("kekd_auth_failures_total", 'reason="permission_denied"'))
        self.assertEqual([a - b for a, b in zip(after, before)], [2, 1, 1])
        # the alert rules of docs/operations.md parse and name only metrics that kekd exports
        with open(os.path.join(SOURCE_DIR, "docs", "operations.md")) as f:
            doc = f.read()
        rules = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.S).group(1))
        exported = set(re.findall(r"^# TYPE (\w+)", self.d.get("/metrics").body, re.M))
        for rule in rules["groups"][0]["rules"]:
            for name in re.findall(r"\bkekd_\w+", rule["expr"]):
                self.assertIn(name, exported, rule["alert"])

    def test_hsm_session_takes_are_counted(self):
        names = ("kekd_hsm_session_leases_total", "kekd_hsm_session_waits_total",
                 "kekd_audit_checkpoints_total", "kekd_audit_unsigned_records")

        def settled():
            # once every record is under a checkpoint, no checkpoint is half done (its signature
            # taken, its count not yet moved)
            deadline = time.monotonic() + 10
            while True:
                body = self.d.get("/metrics").body
                values = [float(re.search(r"^" + n + r" (\S+)$", body, re.M).group(1))
                          for n in names]
                if values[3] == 0 or time.monotonic() > deadline:
                    return values
                time.sleep(0.05)

        plaintext = {"plaintext": b64(b"k" * 32)}
        self.assertEqual(self.op("wrap", plaintext).status, 200)  # credentials cached
        leases, waits, checkpoints, _ = settled()
        for _ in range(3):
            self.assertEqual(self.op("wrap", plaintext).status, 200)
        single = settled()
        batch = self.op("wrap", {"items": [plaintext] * 3})
        self.assertEqual(batch.status, 200)
        self.assertEqual(len([i for i in batch.json()["items"] if "ciphertext" in i]), 3)
        after = settled()
        self.assertEqual([single[3], after[3]], [0, 0])
        # one take per single wrap, one for a whole batch (its items keep the session), and one
        # per checkpoint signed meanwhile
        self.assertEqual(single[0] - leases - (single[2] - checkpoints), 3)
        self.assertEqual(after[0] - single[0] - (after[2] - single[2]), 1)
        self.assertGreaterEqual(after[1], waits)

    def test_http_ciphertext_unwraps_with_independent_pkcs11_client(self):
        dek = os.urandom(32)
        w = self.op("wrap", {"plaintext": b64(dek), "context": CONTEXT}).json()
        canonical = b"".join(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v
                             for k, v in sorted((k.encode(), v.encode()) for k, v in CONTEXT.items()))
        out = run(["/usr/bin/python3", PKCS11_HELPER, "--module", SOFTHSM, "--token-label", "kekd",
                   "--pin-file", self.d.pin_file, "unwrap", "--ciphertext-b64", w["ciphertext"],
                   "--context-hex", canonical.hex()], env=self.d.env).stdout
        self.assertIn(dek.hex(), out)

    def test_authorization_matrix(self):
        d = self.d
        for op in ("datakey", "wrap", "unwrap", "rewrap"):
            granted = d.client([{"key": "demo", "operations": [op]}])
            other = d.client([{"key": "demo", "operations": [o for o in ALL if o != op]}])
            good = self.op("wrap", {"plaintext": b64(b"x" * 16)}).json()["ciphertext"]
            body = {"datakey": {}, "wrap": {"plaintext": b64(b"x" * 16)},
                    "unwrap": {"ciphertext": good}, "rewrap": {"ciphertext": good}}[op]
            self.assertEqual(self.op(op, body, token=granted).status, 200, op)
            self.assertError(self.op(op, body, token=other), 403, "permission_denied")
        # describe
        describer = d.client([{"key": "pay*", "operations": ["describe"]}])
        self.assertEqual(d.get("/v1/keys/payments", token=describer).status, 200)
        self.assertError(d.get("/v1/keys/demo", token=describer), 403, "permission_denied")
        self.assertEqual([k["name"] for k in d.get("/v1/keys", token=describer).json()["keys"]], ["payments"])
        # a pattern grant does not reach other keys, whatever the operation
        pay = d.client([{"key": "pay*", "operations": ALL}])
        self.assertEqual(self.op("wrap", {"plaintext": b64(b"x" * 16)}, token=pay, key="payments").status, 200)
        self.assertError(self.op("wrap", {"plaintext": b64(b"x" * 16)}, token=pay), 403, "permission_denied")
        # a wrong secret, and a deleted client
        client_id, _ = pay.split(".", 1)
        self.assertError(self.op("wrap", {"plaintext": b64(b"x")}, token=client_id + ".wrong", key="payments"),
                         401, "unauthenticated")
        self.assertEqual(d.admin("DELETE", f"/v1/clients/{client_id}").status, 200)
        self.assertError(self.op("wrap", {"plaintext": b64(b"x")}, token=pay, key="payments"), 401,
                         "unauthenticated")
        self.assertNotIn(client_id, [c["client_id"] for c in d.admin("GET", "/v1/clients").json()["clients"]])
        # the admin manages; it holds no grants
        self.assertError(self.op("wrap", {"plaintext": b64(b"x")}, token=d.admin_token), 403, "permission_denied")
        # a new client can do nothing
        nothing = d.client([])
        self.assertError(self.op("datakey", {}, token=nothing), 403, "permission_denied")

    def test_batches_answer_per_item_in_order(self):
        items = []
        for i in range(1000):
            items.append({"plaintext": b64(bytes([i % 256]) * (1 + i % 40))} if i % 3 else {"plaintext": "!!"})
        response = self.op("wrap", {"items": items})
        self.assertEqual(response.status, 200, response.body[:300])
        results = response.json()["items"]
        self.assertEqual(len(results), 1000)
        for i, r in enumerate(results):
            if i % 3:
                self.assertEqual(r["version"], 1)
            else:
                self.assertEqual(r["error"]["code"], "invalid_argument")
        unwrapped = self.op("unwrap", {"items": [{"ciphertext": r["ciphertext"]} for r in results if "ciphertext" in r]
                                       + [{"ciphertext": "AAAA"}]}).json()["items"]
        expected = [b64(bytes([i % 256]) * (1 + i % 40)) for i in range(1000) if i % 3]
        self.assertEqual([u["plaintext"] for u in unwrapped[:-1]], expected)
        self.assertEqual(unwrapped[-1]["error"]["code"], "invalid_ciphertext")
        self.assertError(self.op("wrap", {"items": [{"plaintext": "AA=="}] * 1001}), 413, "payload_too_large")


class RotationOverHttp(E2ETest):
    def test_old_ciphertexts_unwrap_and_rewrap_moves_them_forward(self):
        d = self.deployment().start()
        d.ceremony("create-key", "demo")
        app = d.client([{"key": "demo", "operations": ALL}])
        op = lambda name, body: d.request("POST", f"/v1/keys/demo/{name}", body=body, token=app)  # noqa: E731
        dek = b64(os.urandom(32))
        v1 = op("wrap", {"plaintext": dek, "context": CONTEXT}).json()
        self.assertEqual(v1["version"], 1)
        d.ceremony("rotate-key", "demo")
        self.assertEqual(op("unwrap", {"ciphertext": v1["ciphertext"], "context": CONTEXT}).json()["plaintext"], dek)
        moved = op("rewrap", {"ciphertext": v1["ciphertext"], "context": CONTEXT})
        self.assertEqual(moved.status, 200, moved.body)
        self.assertNotIn("plaintext", moved.json())
        self.assertEqual(moved.json()["version"], 2)
        back = op("unwrap", {"ciphertext": moved.json()["ciphertext"], "context": CONTEXT}).json()
        self.assertEqual((back["plaintext"], back["version"]), (dek, 2))
        self.assertEqual(op("wrap", {"plaintext": dek}).json()["version"], 2)


if __name__ == "__main__":
    unittest.main()
