"""The audit log end to end (issue 5, docs/audit.md): every operation of the application and
ceremony APIs leaves exactly its records, no record (nor the store, nor the log file) holds a
secret, and `kekctl audit verify` catches every kind of tampering with an export or the store and
names the place."""
import base64
import collections
import json
import os
import shutil
import sqlite3
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


def b64(data):
    return base64.b64encode(data).decode()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class AuditLog(E2ETest):
    def entries(self, d):
        """The whole log through GET /v1/audit (reads leave no record), paged."""
        out, after = [], 0
        while True:
            page = d.admin("GET", f"/v1/audit?after={after}&limit=7")
            self.assertEqual(page.status, 200, page.body)
            page = page.json()
            out.extend(page["entries"])
            if not page["entries"]:
                return out
            after = page["next"]

    def records(self, d):
        return [e for e in self.entries(d) if e["type"] == "record"]

    def public_key(self, d):
        path = os.path.join(d.dir, "audit.pem")
        with open(path, "w") as f:
            f.write(d.admin("GET", "/v1/audit/public-key").body)
        return path

    def test_every_operation_leaves_exactly_its_records_and_no_secret(self):
        d = self.deployment(ttl="10s").start()
        expected = collections.Counter()

        def expect(action, outcome="ok", n=1):
            expected[(action, outcome)] += n

        # kekd init: the operator set, then the admin client.
        expect("operators.init")
        expect("client.create")

        # A key through a ceremony: propose, two approvals, and the execution the second set off.
        d.ceremony("create-key", "demo")
        expect("ceremony.propose")
        expect("ceremony.approve", n=2)
        expect("ceremony.execute")

        # Clients.
        created = d.admin("POST", "/v1/clients",
                          {"grants": [{"key": "demo", "operations": ["datakey", "wrap", "unwrap", "rewrap"]}]})
        self.assertEqual(created.status, 201, created.body)
        app, app_token, app_secret = created.json()["client_id"], created.json()["token"], created.json()["secret"]
        expect("client.create")
        self.assertEqual(d.admin("POST", "/v1/clients", {"grants": "all"}).status, 400)
        expect("client.create", "invalid_argument")
        other = d.admin("POST", "/v1/clients", {"grants": []}).json()
        expect("client.create")
        self.assertEqual(d.admin("DELETE", f"/v1/clients/{other['client_id']}").status, 200)
        expect("client.delete")
        self.assertEqual(d.admin("DELETE", "/v1/clients/cli_00000000000000000000").status, 404)
        expect("client.delete", "not_found")

        # Key operations, single and batched: one record per item.
        secrets = [app_token.encode(), app_secret.encode(), other["token"].encode(), d.admin_token.encode()]
        request_ids = {}

        def op(name, body=None, token=app_token, key="demo", raw=None):
            response = d.request("POST", f"/v1/keys/{key}/{name}", body=body, token=token, raw=raw)
            request_ids.setdefault(response.headers["X-Request-Id"], (name, response.status))
            return response

        dk = op("datakey", {"context": {"tenant": "t1"}})
        self.assertEqual(dk.status, 200, dk.body)
        dek = base64.b64decode(dk.json()["plaintext"])
        secrets.append(dek)
        expect("key.datakey")
        plaintext = os.urandom(32)
        secrets.append(plaintext)
        wrapped = op("wrap", {"plaintext": b64(plaintext), "context": {"tenant": "t1"}}).json()["ciphertext"]
        expect("key.wrap")
        self.assertEqual(op("unwrap", {"ciphertext": wrapped, "context": {"tenant": "t1"}}).status, 200)
        expect("key.unwrap")
        self.assertEqual(op("unwrap", {"ciphertext": wrapped, "context": {"tenant": "t2"}}).status, 400)
        expect("key.unwrap", "invalid_ciphertext")
        self.assertEqual(op("rewrap", {"ciphertext": wrapped, "context": {"tenant": "t1"}}).status, 200)
        expect("key.rewrap")
        batch_plaintexts = [os.urandom(16), os.urandom(24)]
        secrets.extend(batch_plaintexts)
        batch = op("wrap", {"items": [{"plaintext": b64(batch_plaintexts[0])}, {"plaintext": "not base64!"},
                                      {"plaintext": b64(batch_plaintexts[1])}]})
        self.assertEqual(batch.status, 200, batch.body)
        expect("key.wrap", n=2)
        expect("key.wrap", "invalid_argument")
        batch = op("unwrap", {"items": [{"ciphertext": wrapped, "context": {"tenant": "t1"}},
                                        {"ciphertext": b64(b"\x00" * 60)}]})
        self.assertEqual(batch.status, 200, batch.body)
        expect("key.unwrap")
        expect("key.unwrap", "invalid_ciphertext")
        self.assertEqual(op("wrap", {"plaintext": b64(b"x" * 32)}, key="payments").status, 403)
        expect("key.wrap", "permission_denied")
        self.assertEqual(op("wrap", raw=b"{not json").status, 400)
        expect("key.wrap", "invalid_argument")

        # Refused credentials and rights: one auth.failure each.
        self.assertEqual(d.get("/v1/clients", token=app_token).status, 403)
        self.assertEqual(d.get("/v1/keys/demo", token=app_token).status, 403)
        self.assertEqual(d.get("/v1/audit", token=app_token).status, 403)
        expect("auth.failure", "permission_denied", 3)
        wrong_secret = app + ".wrong-secret-guess-0123456789abcdefghij"
        secrets.append(b"wrong-secret-guess-0123456789abcdefghij")
        self.assertEqual(d.get("/v1/keys", token=wrong_secret).status, 401)
        self.assertEqual(d.get("/v1/keys").status, 401)
        self.assertEqual(d.get("/v1/keys", token="a-pasted-secret-without-an-id").status, 401)
        secrets.append(b"a-pasted-secret-without-an-id")
        expect("auth.failure", "unauthenticated", 3)

        # Ceremony steps that are refused, cancelled and expired.
        rotate = d.script("propose.sh", "rotate-key", "demo").stdout.strip()
        expect("ceremony.propose")
        statement = d.statement(rotate)
        mallory_key, _ = d.make_operator_key("mallory")
        mallory_sig = d.sign(statement, "mallory", key=mallory_key)
        with open(mallory_sig) as f:
            signature = f.read().strip()
        approvals = f"/v1/ceremonies/{rotate}/approvals"
        self.assertEqual(d.request("POST", approvals, body={"operator": "mallory", "signature": signature}).status, 400)
        expect("ceremony.approve", "unknown_operator")
        self.assertEqual(d.request("POST", approvals, body={"operator": "alice", "signature": signature}).status, 400)
        expect("ceremony.approve", "signature_rejected")
        self.assertEqual(d.admin("POST", f"/v1/ceremonies/{rotate}/cancel").status, 200)
        expect("ceremony.cancel")
        self.assertEqual(d.admin("POST", f"/v1/ceremonies/{rotate}/cancel").status, 409)
        expect("ceremony.cancel", "failed_precondition")
        self.assertEqual(d.admin("POST", "/v1/ceremonies", {"action": "launch-missiles"}).status, 400)
        expect("ceremony.propose", "invalid_argument")
        late = d.script("propose.sh", "create-key", "late").stdout.strip()
        expect("ceremony.propose")
        expect("ceremony.expire")

        # A backup is recorded too (its body is a SQLite file, not text).
        backup = urllib.request.Request(d.addr + "/v1/backup", headers={"Authorization": f"Bearer {d.admin_token}"})
        with urllib.request.urlopen(backup, timeout=30) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.read().startswith(b"SQLite format 3\0"))
        expect("store.backup")

        deadline = time.time() + 30
        while d.admin("GET", f"/v1/ceremonies/{late}").json()["state"] != "expired":
            self.assertLess(time.time(), deadline, "the ceremony did not expire")
            time.sleep(0.5)

        records = self.records(d)
        got = collections.Counter((r["action"], r["error"] or "ok") for r in records)
        self.assertEqual(got, expected, "\n".join(json.dumps(r) for r in records))
        self.assertEqual([r["seq"] for r in records], list(range(1, len(records) + 1)))

        # Who and what, for a sample of each kind.
        by_action = collections.defaultdict(list)
        for r in records:
            by_action[r["action"]].append(r)
        self.assertEqual({r["principal"] for r in by_action["operators.init"]}, {"kekd-init"})
        for r in by_action["key.wrap"] + by_action["key.unwrap"] + by_action["key.datakey"] + by_action["key.rewrap"]:
            self.assertEqual(r["principal"], app)
            self.assertIn(r["request_id"], request_ids)
            if r["outcome"] == "ok":
                self.assertEqual((r["key"], r["version"]), ("demo", 1))
        self.assertIn(("payments", "permission_denied"), {(r["key"], r["error"]) for r in by_action["key.wrap"]})
        failures = {(r["principal"], r["subject"], r["error"]) for r in by_action["auth.failure"]}
        self.assertEqual(failures, {(app, "GET /v1/clients", "permission_denied"),
                                    (app, "GET /v1/keys/{name}", "permission_denied"),
                                    (app, "GET /v1/audit", "permission_denied"),
                                    (app, "GET /v1/keys", "unauthenticated"),  # the id it claimed
                                    ("", "GET /v1/keys", "unauthenticated")})
        self.assertEqual({r["principal"] for r in by_action["ceremony.approve"]},
                         {"operator:alice", "operator:bob", "operator:mallory"})
        self.assertEqual({r["subject"] for r in by_action["ceremony.expire"]}, {late})
        self.assertEqual({r["principal"] for r in by_action["ceremony.expire"] + by_action["ceremony.execute"]}, {"kekd"})
        self.assertIn(other["client_id"], {r["subject"] for r in by_action["client.delete"]})

        # No secret anywhere: not in a record, the store (WAL included) or kekd's log.
        with open(d.pin_file, "rb") as f:
            secrets.append(f.read().strip())
        self.assertEqual(d.stop(), 0)
        haystacks = {"log": read_bytes(d.log_path)}
        for name in os.listdir(os.path.join(d.dir, "var")):
            haystacks[name] = read_bytes(os.path.join(d.dir, "var", name))
        self.assertIn("kekd.db", haystacks)
        for secret in secrets:
            forms = {secret, base64.b64encode(secret), secret.hex().encode()}
            for where, data in haystacks.items():
                for form in forms:
                    self.assertNotIn(form, data, f"a secret ({len(secret)} bytes) is in {where}")

        # After a clean stop the final checkpoint covers every record.
        pem = self.public_key_after_stop(d)
        result = d.kekctl("audit", "verify", "--public-key", pem, "--require-checkpoint", "--store",
                          os.path.join(d.dir, "var", "kekd.db"))
        summary = json.loads(result.stdout)
        self.assertTrue(summary["valid"])
        self.assertEqual(summary["records"], len(records))
        self.assertEqual(summary["uncovered_records"], 0)

    def public_key_after_stop(self, d):
        d.start()
        pem = self.public_key(d)
        self.assertEqual(d.stop(), 0)
        return pem


class AuditTampering(E2ETest):
    @classmethod
    def setUpClass(cls):
        from kekd_e2e import Deployment
        cls.d = Deployment().start()
        d = cls.d
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["wrap", "unwrap"]}])
        # Records spread over a few seconds, so that there are several checkpoints.
        for i in range(6):
            for _ in range(5):
                d.request("POST", "/v1/keys/demo/wrap", body={"plaintext": b64(os.urandom(32))}, token=token)
            time.sleep(1.1)
        cls.pem = os.path.join(d.dir, "audit.pem")
        with open(cls.pem, "w") as f:
            f.write(d.admin("GET", "/v1/audit/public-key").body)
        cls.export = os.path.join(d.dir, "audit.jsonl")
        d.kekctl("audit", "export", "--out", cls.export)
        with open(cls.export) as f:
            cls.lines = f.read().splitlines()

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def verify_lines(self, lines, *args):
        path = os.path.join(self.d.dir, "tampered.jsonl")
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return self.d.kekctl("audit", "verify", "--public-key", self.pem, *args, path, check=False)

    def assertRefused(self, lines, place):
        result = self.verify_lines(lines)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(place, result.stderr)
        self.assertTrue(json.loads(result.stdout)["failure"].startswith(place), result.stdout)

    def index(self, kind, seq):
        for i, line in enumerate(self.lines):
            j = json.loads(line)
            if j["type"] == kind and j["seq"] == seq:
                return i
        raise AssertionError(f"no {kind} {seq}")

    def checkpoint_seqs(self):
        return [json.loads(line)["seq"] for line in self.lines if '"type":"checkpoint"' in line]

    def test_the_export_verifies(self):
        result = self.verify_lines(self.lines)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        summary = json.loads(result.stdout)
        self.assertTrue(summary["valid"])
        self.assertGreaterEqual(summary["records"], 30)
        self.assertGreaterEqual(summary["checkpoints"], 3)
        # The export is exactly the log in the store, which verifies as well.
        store = self.d.kekctl("audit", "verify", "--public-key", self.pem, "--store",
                              os.path.join(self.d.dir, "var", "kekd.db"))
        self.assertEqual(json.loads(store.stdout)["records"], summary["records"])

    def test_a_changed_record_is_named(self):
        for seq in (1, 10, 20):
            lines = list(self.lines)
            i = self.index("record", seq)
            j = json.loads(lines[i])
            j["principal"] = "someone-else"
            lines[i] = json.dumps(j, separators=(",", ":"), sort_keys=True)
            self.assertRefused(lines, f"record {seq}: hash does not match")

    def uncovered_seq(self, at_least):
        """A record no checkpoint names, so that the failure is the record's own."""
        covered = set(self.checkpoint_seqs())
        return next(seq for seq in range(at_least, 10_000) if seq not in covered and seq + 1 not in covered)

    def test_a_deleted_record_is_named(self):
        seq = self.uncovered_seq(12)
        lines = list(self.lines)
        del lines[self.index("record", seq)]
        self.assertRefused(lines, f"record {seq} missing")
        # A record that a checkpoint covers: the checkpoint names it.
        seq = self.checkpoint_seqs()[1]
        lines = list(self.lines)
        del lines[self.index("record", seq)]
        self.assertRefused(lines, f"checkpoint at {seq}: record {seq} is not in the log before it")

    def test_reordered_records_are_named(self):
        seq = self.uncovered_seq(14)
        lines = list(self.lines)
        i, k = self.index("record", seq), self.index("record", seq + 1)
        lines[i], lines[k] = lines[k], lines[i]
        self.assertRefused(lines, f"record {seq} missing (seq jumps from {seq - 1} to {seq + 1})")

    def test_an_inserted_record_is_named(self):
        lines = list(self.lines)
        i = self.index("record", 8)
        lines.insert(i + 1, lines[i])
        self.assertRefused(lines, "record 8")

    def test_changed_deleted_reordered_or_inserted_checkpoints_are_named(self):
        seqs = self.checkpoint_seqs()
        self.assertGreaterEqual(len(seqs), 3, seqs)
        middle = seqs[len(seqs) // 2]
        after = seqs[len(seqs) // 2 + 1]
        # Changed signature.
        lines = list(self.lines)
        i = self.index("checkpoint", middle)
        j = json.loads(lines[i])
        sig = bytearray(base64.b64decode(j["signature"]))
        sig[-1] ^= 1
        j["signature"] = b64(bytes(sig))
        lines[i] = json.dumps(j, separators=(",", ":"), sort_keys=True)
        self.assertRefused(lines, f"checkpoint at {middle}: signature does not verify")
        # Changed time (the signature covers it).
        j = json.loads(self.lines[i])
        j["time"] = "2020-01-01T00:00:00.000Z"
        lines = list(self.lines)
        lines[i] = json.dumps(j, separators=(",", ":"), sort_keys=True)
        self.assertRefused(lines, f"checkpoint at {middle}: signature does not verify")
        # Deleted: the next one names it as its predecessor.
        lines = list(self.lines)
        del lines[i]
        self.assertRefused(lines, f"checkpoint at {after}: the checkpoint before it, at {middle}, is missing")
        # Moved after a later record.
        lines = list(self.lines)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        self.assertRefused(lines, f"checkpoint at {middle}: not right after record {middle}")
        # Inserted twice.
        lines = list(self.lines)
        lines.insert(i, lines[i])
        self.assertRefused(lines, f"checkpoint at {middle}: not after the previous checkpoint")
        # The last one deleted: its records are no longer covered, which --require-checkpoint refuses.
        lines = [line for line in self.lines if line != self.lines[self.index("checkpoint", seqs[-1])]]
        result = self.verify_lines(lines, "--require-checkpoint")
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("not yet covered by a checkpoint", result.stderr)

    def test_a_rolled_back_tail_is_caught_by_the_anchor(self):
        last = json.loads([line for line in self.lines if '"type":"record"' in line][-1])
        anchor = f"{last['seq']}:{last['hash']}"
        self.assertEqual(self.verify_lines(self.lines, "--anchor", anchor).returncode, 0)
        # The last records and the checkpoints after them removed: the chain alone cannot see it.
        cut = self.index("record", last["seq"] - 3)
        lines = self.lines[:cut]
        while json.loads(lines[-1])["type"] == "checkpoint":
            lines.pop()
        self.assertEqual(self.verify_lines(lines).returncode, 0)
        result = self.verify_lines(lines, "--anchor", anchor)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn(f"record {last['seq']}", result.stderr)

    def test_tampering_with_the_store_itself_is_named(self):
        copy_dir = os.path.join(self.d.dir, "store-copy")
        os.makedirs(copy_dir, exist_ok=True)
        backup = os.path.join(copy_dir, "kekd.db")
        if os.path.exists(backup):
            os.unlink(backup)
        # A consistent copy of the live store, then changed behind kekd's back.
        src = sqlite3.connect(os.path.join(self.d.dir, "var", "kekd.db"))
        dst = sqlite3.connect(backup)
        src.backup(dst)
        src.close()
        row = dst.execute("SELECT record FROM audit_records WHERE seq = 9").fetchone()[0]
        dst.execute("UPDATE audit_records SET record = ? WHERE seq = 9",
                    (row.replace('"outcome":"ok"', '"outcome":"error"'),))
        dst.commit()
        dst.close()
        result = self.d.kekctl("audit", "verify", "--public-key", self.pem, "--store", backup, check=False)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("record 9", result.stderr)
        dst = sqlite3.connect(backup)
        dst.execute("DELETE FROM audit_records WHERE seq = 9")
        dst.commit()
        dst.close()
        result = self.d.kekctl("audit", "verify", "--public-key", self.pem, "--store", backup, check=False)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("record 9 missing", result.stderr)
        shutil.rmtree(copy_dir)

    def test_a_wrong_public_key_is_refused(self):
        other = os.path.join(self.d.dir, "other.pem")
        key = os.path.join(self.d.dir, "other.key")
        from kekd_e2e import run
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
        run(["openssl", "pkey", "-in", key, "-pubout", "-out", other])
        path = os.path.join(self.d.dir, "untampered.jsonl")
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in self.lines))
        result = self.d.kekctl("audit", "verify", "--public-key", other, path, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("signature does not verify", result.stderr)


if __name__ == "__main__":
    unittest.main()
