"""kill -9 of kekd under a load of mixed key operations, then restart (issue 5): every ciphertext a
client received before the kill still unwraps, every acknowledged operation has its audit records
(one per item, with the right action, key, version and outcome), and the chain verifies.

Several threads, each with its own keep-alive connection, send single and batch datakey, wrap,
unwrap and rewrap requests, plus a few that are refused on purpose (a wrong context, a plaintext
that is not base64, a batch item with a wrong context), for about 21 seconds; then kekd is killed
with SIGKILL while they are still sending. A request whose answer the client read completely is
acknowledged: kekd answers only after its records are durable (docs/audit.md, "Storage and
durability"), so the log after the restart must hold them all. Requests in flight at the kill get
connection errors and are not acknowledged; they may or may not have left records.
"""
import base64
import collections
import concurrent.futures
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402

THREADS = 6
LOAD_SECONDS = 21
MIN_ACKNOWLEDGED = 500
GRANTS = [{"key": "demo", "operations": ["datakey", "wrap", "unwrap", "rewrap"]}]


def b64(data):
    return base64.b64encode(data).decode()


def log(message):
    print(message, file=sys.stderr, flush=True)


class Load:
    """What the client threads saw: acknowledged requests, ciphertexts, and anything unexpected."""

    def __init__(self):
        self.lock = threading.Lock()
        # (request id, action, Counter of the (outcome, error code) of its items)
        self.acknowledged = []
        self.ciphertexts = []  # (ciphertext, context, plaintext base64)
        self.problems = []  # unexpected answers: the test fails on any
        self.errors_before_kill = []  # connection errors while kekd was meant to be up
        self.in_flight_at_kill = 0
        self.killed = threading.Event()
        self.counts = collections.Counter()  # per kind of request


class Worker(threading.Thread):
    def __init__(self, load, port, token, seed):
        super().__init__(daemon=True)
        self.load = load
        self.port = port
        self.token = token
        self.rng = random.Random(seed)
        self.n = seed * 1_000_000
        self.mine = []  # this thread's ciphertexts: (ciphertext, context, plaintext)

    # --- helpers ----------------------------------------------------------------------------------
    def context(self):
        self.n += 1
        return {"tenant": f"t{self.rng.randrange(8)}", "record": str(self.n)}

    def post(self, operation, body):
        self.conn.request("POST", f"/v1/keys/demo/{operation}", body=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "application/json"})
        response = self.conn.getresponse()
        raw = response.read()
        request_id = response.getheader("X-Request-Id")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):  # reported as a problem by the caller, with what came
            parsed = {"unexpected body": raw[:300].decode(errors="replace")}
        return response.status, request_id, parsed

    def problem(self, what, status, request_id, body):
        with self.load.lock:
            self.load.problems.append(f"{what}: status {status}, request {request_id}: {str(body)[:300]}")

    def ack(self, request_id, action, items, kind):
        with self.load.lock:
            self.load.acknowledged.append((request_id, action, collections.Counter(items)))
            self.load.counts[kind] += 1

    def keep(self, ciphertext, context, plaintext):
        self.mine.append((ciphertext, context, plaintext))

    def earlier(self):
        return self.rng.choice(self.mine)

    def wrong(self, context):
        return dict(context, tenant=context["tenant"] + "-other")

    # --- the operations -----------------------------------------------------------------------------
    def wrap(self):
        plaintext, context = b64(os.urandom(32)), self.context()
        status, rid, body = self.post("wrap", {"plaintext": plaintext, "context": context})
        if status != 200 or body.get("version") != 1 or body.get("key") != "demo":
            return self.problem("wrap", status, rid, body)
        self.keep(body["ciphertext"], context, plaintext)
        self.ack(rid, "key.wrap", [("ok", None)], "wrap")

    def datakey(self):
        context = self.context()
        status, rid, body = self.post("datakey", {"bytes": 32, "context": context})
        if status != 200 or len(base64.b64decode(body.get("plaintext", ""))) != 32:
            return self.problem("datakey", status, rid, body)
        self.keep(body["ciphertext"], context, body["plaintext"])
        self.ack(rid, "key.datakey", [("ok", None)], "datakey")

    def unwrap(self):
        ciphertext, context, plaintext = self.earlier()
        status, rid, body = self.post("unwrap", {"ciphertext": ciphertext, "context": context})
        if status != 200 or body.get("plaintext") != plaintext:
            return self.problem("unwrap", status, rid, body)
        self.ack(rid, "key.unwrap", [("ok", None)], "unwrap")

    def rewrap(self):
        ciphertext, context, plaintext = self.earlier()
        status, rid, body = self.post("rewrap", {"ciphertext": ciphertext, "context": context})
        if status != 200 or "plaintext" in body or body.get("version") != 1:
            return self.problem("rewrap", status, rid, body)
        self.keep(body["ciphertext"], context, plaintext)
        self.ack(rid, "key.rewrap", [("ok", None)], "rewrap")

    def wrong_context_unwrap(self):
        ciphertext, context, _ = self.earlier()
        status, rid, body = self.post("unwrap", {"ciphertext": ciphertext, "context": self.wrong(context)})
        if status != 400 or body.get("error", {}).get("code") != "invalid_ciphertext" or \
                body["error"].get("request_id") != rid:
            return self.problem("wrong-context unwrap", status, rid, body)
        self.ack(rid, "key.unwrap", [("error", "invalid_ciphertext")], "unwrap (wrong context)")

    def bad_plaintext_wrap(self):
        status, rid, body = self.post("wrap", {"plaintext": "-_8=", "context": self.context()})
        if status != 400 or body.get("error", {}).get("code") != "invalid_argument":
            return self.problem("wrap of bad base64", status, rid, body)
        self.ack(rid, "key.wrap", [("error", "invalid_argument")], "wrap (bad base64)")

    def batch_wrap(self):
        items = [{"plaintext": b64(os.urandom(32)), "context": self.context()} for _ in range(10)]
        status, rid, body = self.post("wrap", {"items": items})
        results = body.get("items", [])
        if status != 200 or len(results) != 10 or any(r.get("version") != 1 for r in results):
            return self.problem("batch wrap", status, rid, body)
        for item, result in zip(items, results):
            self.keep(result["ciphertext"], item["context"], item["plaintext"])
        self.ack(rid, "key.wrap", [("ok", None)] * 10, "batch wrap (10)")

    def batch_datakey(self):
        contexts = [self.context() for _ in range(5)]
        status, rid, body = self.post("datakey", {"items": [{"bytes": 32, "context": c} for c in contexts]})
        results = body.get("items", [])
        if status != 200 or len(results) != 5 or any("plaintext" not in r for r in results):
            return self.problem("batch datakey", status, rid, body)
        for context, result in zip(contexts, results):
            self.keep(result["ciphertext"], context, result["plaintext"])
        self.ack(rid, "key.datakey", [("ok", None)] * 5, "batch datakey (5)")

    def batch_unwrap(self):
        """Up to 8 earlier ciphertexts, one of them with a wrong context: 200, one item failed."""
        chosen = [self.earlier() for _ in range(self.rng.randint(2, 8))]
        bad = self.rng.randrange(len(chosen))
        items = [{"ciphertext": c, "context": self.wrong(ctx) if i == bad else ctx}
                 for i, (c, ctx, _) in enumerate(chosen)]
        status, rid, body = self.post("unwrap", {"items": items})
        results = body.get("items", [])
        good = status == 200 and len(results) == len(chosen)
        for i, ((_, _, plaintext), result) in enumerate(zip(chosen, results)):
            if i == bad:
                good = good and result.get("error", {}).get("code") == "invalid_ciphertext"
            else:
                good = good and result.get("plaintext") == plaintext
        if not good:
            return self.problem("batch unwrap", status, rid, body)
        self.ack(rid, "key.unwrap", [("ok", None)] * (len(chosen) - 1) + [("error", "invalid_ciphertext")],
                 "batch unwrap (2-8, one bad)")

    def batch_rewrap(self):
        chosen = [self.earlier() for _ in range(5)]
        status, rid, body = self.post("rewrap", {"items": [{"ciphertext": c, "context": ctx}
                                                           for c, ctx, _ in chosen]})
        results = body.get("items", [])
        if status != 200 or len(results) != 5 or any(r.get("version") != 1 for r in results):
            return self.problem("batch rewrap", status, rid, body)
        for (_, context, plaintext), result in zip(chosen, results):
            self.keep(result["ciphertext"], context, plaintext)
        self.ack(rid, "key.rewrap", [("ok", None)] * 5, "batch rewrap (5)")

    def run(self):
        operations = [(self.wrap, 24), (self.datakey, 14), (self.unwrap, 20), (self.rewrap, 10),
                      (self.wrong_context_unwrap, 5), (self.bad_plaintext_wrap, 2), (self.batch_wrap, 10),
                      (self.batch_datakey, 5), (self.batch_unwrap, 6), (self.batch_rewrap, 4)]
        functions = [f for f, _ in operations]
        weights = [w for _, w in operations]
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.wrap()  # something to unwrap from the start
            while True:
                self.rng.choices(functions, weights)[0]()
        except (OSError, http.client.HTTPException) as e:
            with self.load.lock:
                if self.load.killed.is_set():
                    self.load.in_flight_at_kill += 1  # the request in flight: not acknowledged
                else:
                    self.load.errors_before_kill.append(repr(e))
        finally:
            self.conn.close()
            with self.load.lock:
                self.load.ciphertexts.extend(self.mine)


class CrashAudit(E2ETest):
    def kekctl_json(self, d, *args):
        result = d.kekctl(*args, check=False)
        self.assertEqual(result.returncode, 0, f"kekctl {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout)

    def metric(self, d, name):
        found = re.search(r"^" + re.escape(name) + r" (\S+)$", d.get("/metrics").body, re.M)
        return float(found.group(1)) if found else None

    def export(self, d, name):
        path = os.path.join(d.dir, name)
        d.kekctl("audit", "export", "--out", path)
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        records = [e for e in lines if e["type"] == "record"]
        return path, records, len(lines) - len(records)

    def check_records(self, records, request_id, action, expected, principal):
        """The records of one acknowledged request: one per item, the right action, key, version
        and outcome."""
        mine = records.get(request_id, [])
        found = collections.Counter((r["outcome"], r["error"]) for r in mine)
        message = (f"acknowledged request {request_id} ({action}, expected {dict(expected)}) has the records "
                   f"{[(r['seq'], r['action'], r['outcome'], r['error']) for r in mine]}")
        self.assertEqual(len(mine), sum(expected.values()), message)
        self.assertEqual(found, expected, message)
        for r in mine:
            self.assertEqual((r["action"], r["key"], r["principal"], r["subject"]),
                             (action, "demo", principal, None), r)
            self.assertEqual(r["version"], 1 if r["outcome"] == "ok" else None, r)

    def test_kill_under_mixed_load_loses_no_acknowledged_record(self):
        started = time.monotonic()
        d = self.deployment().start()
        d.ceremony("create-key", "demo")
        app = d.client(GRANTS)
        principal = app.split(".", 1)[0]

        # --- the load, and the kill in the middle of it ----------------------------------------------
        load = Load()
        workers = [Worker(load, d.port, app, seed + 1) for seed in range(THREADS)]
        load_started = time.monotonic()
        for w in workers:
            w.start()
        time.sleep(LOAD_SECONDS - 2)
        during = {name: self.metric(d, name) for name in (
            "kekd_audit_records_total", "kekd_audit_transactions_total", "kekd_audit_checkpoints_total",
            "kekd_audit_failed_records_total", "kekd_audit_failed_checkpoints_total",
            "kekd_audit_unsigned_records", "kekd_audit_last_seq")}
        time.sleep(2)
        self.assertEqual([w.name for w in workers if not w.is_alive()], [],
                         f"client threads ended before the kill: {load.errors_before_kill} {load.problems[:5]}")
        load.killed.set()
        d.proc.kill()
        d.proc.wait()
        self.assertEqual(d.proc.returncode, -9)
        d.proc = None
        d.log.close()
        killed_at = time.monotonic()
        for w in workers:
            w.join(timeout=30)
        self.assertFalse(any(w.is_alive() for w in workers), "a client thread hangs after the kill")
        ciphertexts = load.ciphertexts
        expected_records = sum(sum(e.values()) for _, _, e in load.acknowledged)
        log(f"\nload: {THREADS} connections for {killed_at - load_started:.1f} s, "
            f"{len(load.acknowledged)} acknowledged requests ({expected_records} items), "
            f"{load.in_flight_at_kill} in flight at the kill, {len(ciphertexts)} ciphertexts")
        log("  per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(load.counts.items())))
        log(f"  metrics 2 s before the kill: {during}")

        self.assertEqual(load.errors_before_kill, [], "connection errors while kekd was up")
        self.assertEqual(load.problems, [], "unexpected answers during the load")
        self.assertGreater(len(load.acknowledged), MIN_ACKNOWLEDGED)
        self.assertEqual(len({rid for rid, _, _ in load.acknowledged}), len(load.acknowledged),
                         "request ids are not unique")

        # --- restart: the start-up checkpoint covers what the crash left uncovered ------------------
        phases = {"set-up": load_started - started, "load": killed_at - load_started}
        mark = time.monotonic()
        d.start()
        deadline = time.monotonic() + 10
        while self.metric(d, "kekd_audit_unsigned_records") != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.metric(d, "kekd_audit_unsigned_records"), 0,
                         "no checkpoint after the restart covers the records of before the crash")
        pem = os.path.join(d.dir, "audit.pem")
        response = d.get("/v1/audit/public-key", token=app)
        self.assertEqual(response.status, 200, response.body)
        with open(pem, "w") as f:
            f.write(response.body)

        # --- every acknowledged operation has its records -------------------------------------------
        export_path, records, checkpoints = self.export(d, "audit-after-crash.jsonl")
        by_request = collections.defaultdict(list)
        for r in records:
            by_request[r["request_id"]].append(r)
        for rid, action, expected in load.acknowledged:
            self.check_records(by_request, rid, action, expected, principal)
        acknowledged_ids = {rid for rid, _, _ in load.acknowledged}
        # Records of the client that no acknowledged request explains: only the requests that were
        # in flight at the kill (one per connection at most) may have left some.
        app_records = [r for r in records if r["principal"] == principal]
        unacknowledged = {r["request_id"] for r in app_records} - acknowledged_ids
        self.assertLessEqual(len(unacknowledged), load.in_flight_at_kill,
                             [by_request[rid] for rid in unacknowledged])
        self.assertEqual(len(app_records) - sum(len(by_request[rid]) for rid in unacknowledged),
                         expected_records)
        for rid in unacknowledged:
            for r in by_request[rid]:
                self.assertEqual((r["key"], r["subject"]), ("demo", None), r)
                self.assertIn(r["action"], ("key.wrap", "key.unwrap", "key.datakey", "key.rewrap"), r)

        # --- the chain verifies: the export, and the store while kekd runs ---------------------------
        verified = self.kekctl_json(d, "audit", "verify", "--public-key", pem, "--require-checkpoint", export_path)
        self.assertTrue(verified["valid"], verified)
        self.assertEqual(verified["records"], len(records), verified)
        self.assertEqual(verified["checkpoints"], checkpoints, verified)
        store = os.path.join(d.dir, "var", "kekd.db")
        store_verified = self.kekctl_json(d, "audit", "verify", "--public-key", pem, "--store", store)
        self.assertTrue(store_verified["valid"], store_verified)
        self.assertGreaterEqual(store_verified["records"], len(records), store_verified)

        phases["restart, export, verify"] = time.monotonic() - mark
        mark = time.monotonic()

        # --- every ciphertext received before the kill unwraps, with its context ----------------------
        chunks = [ciphertexts[i:i + 1000] for i in range(0, len(ciphertexts), 1000)]

        def unwrap_all(chunk):
            return d.request("POST", "/v1/keys/demo/unwrap", token=app, body={
                "items": [{"ciphertext": c, "context": ctx} for c, ctx, _ in chunk]})

        unwrap_batches = []
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for chunk, response in zip(chunks, pool.map(unwrap_all, chunks)):
                self.assertEqual(response.status, 200, response.body[:500])
                results = response.json()["items"]
                self.assertEqual(len(results), len(chunk))
                for (c, ctx, plaintext), result in zip(chunk, results):
                    self.assertEqual(result.get("plaintext"), plaintext, f"{c} {ctx}: {result}")
                unwrap_batches.append((response.headers["X-Request-Id"], len(chunk)))
        phases["unwrap all"] = time.monotonic() - mark
        mark = time.monotonic()
        # ... and those unwraps were audited too, one record per item
        _, records_after, _ = self.export(d, "audit-after-unwraps.jsonl")
        by_request_after = collections.defaultdict(list)
        for r in records_after:
            by_request_after[r["request_id"]].append(r)
        for rid, n in unwrap_batches:
            self.check_records(by_request_after, rid, "key.unwrap", collections.Counter({("ok", None): n}),
                               principal)
        self.assertEqual(records_after[:len(records)], records, "the log changed under the export")

        phases["export again"] = time.monotonic() - mark
        mark = time.monotonic()

        # --- a clean stop: the final checkpoint covers everything -------------------------------------
        self.assertEqual(d.stop(), 0, d.read_log()[-2000:])
        final = self.kekctl_json(d, "audit", "verify", "--public-key", pem, "--require-checkpoint", "--store", store)
        self.assertTrue(final["valid"], final)
        self.assertEqual(final["records"], len(records_after), final)
        self.assertEqual(final["uncovered_records"], 0, final)

        phases["stop, verify the store"] = time.monotonic() - mark

        # --- the summary ---------------------------------------------------------------------------------
        complaints = [line for line in d.read_log().splitlines()
                      if re.match(r"\S+ (warning|error|critical) ", line)]
        log(f"after the restart: {len(records)} records and {checkpoints} checkpoints exported, "
            f"{len(app_records)} of the client, {len(unacknowledged)} unacknowledged request(s) with "
            f"{len(app_records) - expected_records} record(s); verify: {verified}")
        log(f"  {len(ciphertexts)} ciphertexts unwrapped in {len(unwrap_batches)} batches; "
            f"final store verify: {final}")
        log(f"  kekd's warnings and errors: {len(complaints)} {complaints[:5]}")
        log(f"total {time.monotonic() - started:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))


if __name__ == "__main__":
    unittest.main()
