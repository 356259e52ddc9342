"""HSM calls that hang while kekd serves a steady load (DESIGN §11, docs/operations.md "When the HSM
hangs"), through the PKCS#11 shim (tests/pkcs11_shim) whose control file makes calls sleep:

- C_WrapKey and C_UnwrapKey, then every call (`*`), hang for 3 s each while the hang lasts. Requests
  that cannot get a worker (an HSM session) within hsm.acquire_timeout get 503 `unavailable` at
  once, not when the HSM comes back; requests whose call was merely slow get their right answer
  (every unwrap compared byte for byte, every ciphertext opened afterwards); no other status.
- /v1/health stays fast, /v1/ready turns false once a call runs past hsm.stall_threshold and true
  again by itself within seconds of the hang's end; the session pool is whole again (metrics),
  and no session or session object leaked (the shim's call counts at exit).
- a request queued behind a hung call gets 503 after hsm.acquire_timeout in its own API's format
  (native `unavailable`, KMS `DependencyTimeoutException`) and never runs;
- SIGTERM while a call hangs: a call shorter than the drain finishes and is answered; one that
  does not return makes kekd exit with status 3 within drain_timeout + stall_threshold + 1 s.

The figures (requests ok / 503 during each hang, time from hang end to ready, health p99) are
printed for the issue note.
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, KEKD_BIN, SOFTHSM  # noqa: E402

SHIM = os.environ.get("KEKD_SHIM")
ACQUIRE_S = 1.0  # hsm.acquire_timeout in these tests
STALL_S = 1.0  # hsm.stall_threshold
HANG_US = 3_000_000  # each hung call sleeps 3 s


def configure(d, sessions=2, drain="5s"):
    """Points the deployment at the shim, with the bounds these tests rely on."""
    config = os.path.join(d.dir, "kekd.toml")
    with open(config) as f:
        text = f.read()
    text = re.sub(r'module = "[^"]*"', f'module = "{SHIM}"', text)
    text = re.sub(r"sessions = \d+(\nacquire_timeout = .*\nstall_threshold = .*)?",
                  f'sessions = {sessions}\nacquire_timeout = "{int(ACQUIRE_S * 1000)}ms"\n'
                  f'stall_threshold = "{int(STALL_S * 1000)}ms"', text)
    text = re.sub(r'listen = "127.0.0.1:0"(\ndrain_timeout = .*)?',
                  f'listen = "127.0.0.1:0"\ndrain_timeout = "{drain}"', text)
    with open(config, "w") as f:
        f.write(text)


def metrics(d):
    values = {}
    for line in d.get("/metrics").body.splitlines():
        m = re.match(r"^(kekd_[a-z_]+) ([0-9.e+-]+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


class HsmHangs(E2ETest):
    def setUp(self):
        self.assertTrue(SHIM and os.path.exists(SHIM), "KEKD_SHIM must name the built shim")

    def prepared(self, **kwargs):
        """A deployment with key "demo" and a client; then kekd is stopped and set up for the shim."""
        d = self.deployment()
        d.start()
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["datakey", "wrap", "unwrap"]}])
        seeds = []  # (plaintext, ciphertext) for the unwrap load
        for i in range(8):
            plaintext = os.urandom(32)
            r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()},
                          token=token)
            self.assertEqual(r.status, 200, r.body)
            seeds.append((plaintext, r.json()["ciphertext"]))
        d.stop()
        configure(d, **kwargs)
        d.write_shim_control("")
        return d, token, seeds

    def start(self, d, stats=None):
        env = {"KEKD_SHIM_CONTROL": d.shim_control}
        if stats:
            env["KEKD_SHIM_STATS"] = stats
        d.start(env_extra=env)

    def test_hung_calls_get_prompt_503s_right_answers_and_kekd_recovers_by_itself(self):
        d, token, seeds = self.prepared(sessions=2)
        stats = os.path.join(d.dir, "shim.stats")
        self.start(d, stats)
        t0 = time.monotonic()
        results = []  # (kind, started, ended, status, body, expected plaintext or None)
        probes = []  # (path, started, ended, status)
        stop = threading.Event()
        mismatches = []

        def call(kind, n):
            if kind == "wrap":
                plaintext = os.urandom(24) + n.to_bytes(8, "big")
                body = {"plaintext": base64.b64encode(plaintext).decode()}
            elif kind == "unwrap":
                plaintext, ciphertext = seeds[n % len(seeds)]
                body = {"ciphertext": ciphertext}
            else:
                plaintext, body = None, {"bytes": 32, "plaintext": True}
            started = time.monotonic()
            try:
                r = d.request("POST", f"/v1/keys/demo/{kind}", body, token=token)
                status, text = r.status, r.body
            except (OSError, urllib.error.URLError) as e:
                status, text = 0, repr(e)
            ended = time.monotonic()
            if status == 200:
                answer = json.loads(text)
                if kind == "unwrap" and base64.b64decode(answer["plaintext"]) != plaintext:
                    mismatches.append((kind, n))
                if kind == "datakey":
                    plaintext = base64.b64decode(answer["plaintext"])
            results.append((kind, started - t0, ended - t0, status, text, plaintext))

        def load(kind, worker):
            n = worker * 1_000_000
            while not stop.is_set():
                call(kind, n)
                n += 1

        def probe():
            while not stop.is_set():
                for path in ("/v1/health", "/v1/ready"):
                    started = time.monotonic()
                    status = d.get(path).status
                    probes.append((path, started - t0, time.monotonic() - t0, status))
                time.sleep(0.05)

        threads = [threading.Thread(target=load, args=(kind, i))
                   for i, kind in enumerate(["wrap", "wrap", "unwrap", "unwrap", "datakey", "datakey"])]
        threads.append(threading.Thread(target=probe))
        for t in threads:
            t.start()

        def ready_again_after(end):
            """Seconds from the hang's end until /v1/ready answers 200 and keeps answering 200 for
            longer than the stall threshold. (Right after a hang it can say 200 for a moment while
            a call that started just before the end still sleeps, younger than the threshold.)"""
            deadline = time.monotonic() + 12
            since = None
            while since is None or time.monotonic() - since < STALL_S + 0.5:
                self.assertLess(time.monotonic(), deadline, "not ready 10 s after the hang ended")
                now = time.monotonic()
                if d.get("/v1/ready").status != 200:
                    since = None
                elif since is None:
                    since = now
                time.sleep(0.05)
            return since - t0 - end

        phases = []  # (name, hang start, hang end, recovered at)
        try:
            time.sleep(1.5)
            for name, rules in [("C_WrapKey+C_UnwrapKey", f"hang C_WrapKey {HANG_US}\nhang C_UnwrapKey {HANG_US}\n"),
                                ("every call", f"hang * {HANG_US}\n")]:
                start = time.monotonic() - t0
                d.write_shim_control(rules)
                time.sleep(4)
                self.assertIsNone(d.proc.poll(), "kekd exited during the hang")
                end = time.monotonic() - t0
                d.write_shim_control("")
                recovered = end + ready_again_after(end)
                phases.append((name, start, end, recovered))
                time.sleep(1.5)  # served normally again
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertIsNone(d.proc.poll(), "kekd exited")

        print(f"\nhung calls: sessions=2, acquire_timeout={ACQUIRE_S}s, stall_threshold={STALL_S}s, "
              f"6 client threads, each hung call sleeps {HANG_US / 1e6:.0f}s", file=sys.stderr)
        statuses = {r[3] for r in results}
        self.assertLessEqual(statuses, {200, 503}, "statuses other than 200 and 503")
        self.assertEqual(mismatches, [], "an unwrap answered 200 with another plaintext")
        for _, _, _, status, body, _ in results:
            if status == 503:
                self.assertRegex(body, r'"code":"unavailable"')
                self.assertIn("no HSM session became free within 1000 ms", body)
        for name, start, end, recovered in phases:
            during = [r for r in results if start <= r[1] < end]
            # Answered 200 while the hang lasted: whether a request *sent* during it gets a session
            # depends on where the hang caught the calls in flight, so count every request that
            # overlapped the hang; those that sat in a hung call prove the slow path answers.
            ok = [r for r in results if r[1] < end and r[2] > start and r[3] == 200]
            slowed = [r for r in ok if r[2] - r[1] >= HANG_US / 1e6]
            refused = [r for r in during if r[3] == 503]
            refused_latency = [r[2] - r[1] for r in refused if r[0] != "datakey"]
            # A data key leases a session twice: for C_GenerateRandom, then for the wrap. One whose
            # random call hung waits that call out, and only then can its second wait time out.
            refused_datakey_latency = [r[2] - r[1] for r in refused if r[0] == "datakey"]
            all_latency = [r[2] - r[1] for r in during]
            health = [p[2] - p[1] for p in probes if p[0] == "/v1/health" and start <= p[1] < recovered]
            not_ready = [p for p in probes if p[0] == "/v1/ready" and start <= p[1] < recovered and p[3] == 503]
            first_not_ready = min((p[1] for p in not_ready), default=None)
            after = [r for r in results if recovered + 0.1 <= r[1] and r[1] < recovered + 1.4]
            print(f"  hang of {name} for {end - start:.1f}s: requests sent {len(during)}, "
                  f"ok while it lasted {len(ok)} ({len(slowed)} through a hung call), "
                  f"503 {len(refused)} (latency max {max(refused_latency, default=0):.2f}s, "
                  f"data keys {max(refused_datakey_latency, default=0):.2f}s), "
                  f"slowest request {max(all_latency, default=0):.2f}s; "
                  f"ready false after {first_not_ready - start if first_not_ready else float('nan'):.2f}s; "
                  f"ready again {recovered - end:.2f}s after the hang ended; "
                  f"health p99 {p99(health) * 1000:.1f} ms (max {max(health, default=0) * 1000:.1f} ms, "
                  f"{len(health)} probes); after recovery {sum(1 for r in after if r[3] == 200)}/{len(after)} ok",
                  file=sys.stderr)
            self.assertTrue(refused, f"no request was refused during the hang of {name}")
            self.assertTrue(slowed, f"no request that sat in a hung call was answered 200 ({name})")
            # Refused promptly: the wait for a worker, and at most once more for a session.
            self.assertLess(max(refused_latency, default=0), 2 * ACQUIRE_S + 1.0, f"a 503 came late ({name})")
            self.assertLess(max(refused_datakey_latency, default=0), 3 * ACQUIRE_S + HANG_US / 1e6 + 1.0,
                            f"a data key's 503 came late ({name})")
            # Bounded: at most the few hung calls of one operation (3 s each), never the whole fault.
            self.assertLess(max(all_latency), 3 * HANG_US / 1e6 + 3, f"a request waited too long ({name})")
            self.assertIsNotNone(first_not_ready, f"/v1/ready never turned false ({name})")
            self.assertLess(first_not_ready - start, STALL_S + 1.5, f"/v1/ready turned false late ({name})")
            self.assertLess(recovered - end, HANG_US / 1e6 + 2, f"not ready soon after the hang ({name})")
            self.assertLess(p99(health), 0.25, f"health slow during the hang ({name})")
            self.assertTrue(after, f"no requests after recovering from {name}")
            self.assertEqual({r[3] for r in after}, {200}, f"requests failed after recovering from {name}")

        # The pool is whole again: every session back, none lost, none stuck.
        m = metrics(d)
        self.assertEqual(m["kekd_hsm_sessions"], 2)
        self.assertEqual(m["kekd_hsm_sessions_in_use"], 0)
        self.assertEqual(m["kekd_hsm_sessions_broken"], 0)
        self.assertEqual(m["kekd_hsm_sessions_stalled"], 0)
        self.assertEqual(m["kekd_hsm_sessions_healthy"], 1)
        refused_total = sum(1 for r in results if r[3] == 503)
        self.assertGreaterEqual(m["kekd_http_queue_timeouts_total"] + m["kekd_hsm_acquire_timeouts_total"],
                                refused_total)
        print(f"  totals: {len(results)} requests, {sum(1 for r in results if r[3] == 200)} ok, {refused_total} 503 "
              f"(queue timeouts {m['kekd_http_queue_timeouts_total']:.0f}, "
              f"acquire timeouts {m['kekd_hsm_acquire_timeouts_total']:.0f})", file=sys.stderr)

        # Every ciphertext answered 200 opens to the plaintext that was sent (or that datakey gave).
        made = [r for r in results if r[0] in ("wrap", "datakey") and r[3] == 200]
        self.assertGreater(len(made), 20)
        for kind, _, _, _, body, plaintext in made:
            opened = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": json.loads(body)["ciphertext"]},
                               token=token)
            self.assertEqual(opened.status, 200, opened.body)
            self.assertEqual(base64.b64decode(opened.json()["plaintext"]), plaintext, kind)

        # No session and no session object leaked: at exit every opened session was closed, and
        # every payload object (created for a wrap, or by an unwrap) was destroyed.
        self.assertEqual(d.stop(), 0)
        with open(stats) as f:
            calls = {line.split()[0]: int(line.split()[1]) for line in f if line.strip()}
        print(f"  shim: {calls.get('C_OpenSession')} sessions opened, {calls.get('C_CloseSession')} closed; "
              f"{calls.get('C_CreateObject', 0) + calls.get('C_UnwrapKey', 0)} payload objects made, "
              f"{calls.get('C_DestroyObject', 0)} destroyed", file=sys.stderr)
        self.assertEqual(calls.get("C_OpenSession"), calls.get("C_CloseSession"), calls)
        self.assertEqual(calls.get("C_CreateObject", 0) + calls.get("C_UnwrapKey", 0), calls.get("C_DestroyObject"),
                         calls)

    def test_queued_requests_and_sigterm_while_a_call_hangs(self):
        d, token, _ = self.prepared(sessions=1, drain="4s")  # one session, one worker
        self.check_queued_request_gets_503_in_its_own_face(d, token)
        plaintext = os.urandom(32)
        answers = []

        def wrap():
            try:
                r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()},
                              token=token)
                answers.append((r.status, r.body))
            except (OSError, urllib.error.URLError) as e:
                answers.append((0, repr(e)))

        def sigterm_during_a_wrap_that_hangs(hang_us):
            """Starts kekd, hangs C_WrapKey, sends one wrap, and SIGTERM while it is inside the
            call. Returns kekd's exit status, how long it took to exit, and the client thread."""
            self.start(d)
            d.write_shim_control(f"hang C_WrapKey {hang_us}\n")
            time.sleep(0.2)
            t = threading.Thread(target=wrap)
            t.start()
            time.sleep(0.5)
            started = time.monotonic()
            code = d.stop(timeout=30)
            return code, time.monotonic() - started, t

        # A call that is slow but returns within the drain: the request is answered, kekd exits 0.
        code, took, t = sigterm_during_a_wrap_that_hangs(2_000_000)
        t.join(30)
        print(f"\nSIGTERM during a 2 s call (drain 4 s): exit {code} after {took:.2f}s, answer {answers[0][0]}",
              file=sys.stderr)
        self.assertEqual(code, 0)
        self.assertEqual(answers[0][0], 200, answers[0][1])
        self.assertLess(took, 4)

        # A call that does not return (60 s): kekd exits with status 3 at the bound, says why.
        configure(d, sessions=1, drain="1s")
        d.write_shim_control("")
        code, took, t = sigterm_during_a_wrap_that_hangs(60_000_000)
        bound = 1 + STALL_S + 1  # drain_timeout + stall_threshold + 1 s
        print(f"SIGTERM during a call that does not return (drain 1 s, stall_threshold {STALL_S:.0f} s): "
              f"exit {code} after {took:.2f}s (bound {bound:.0f}s)", file=sys.stderr)
        self.assertEqual(code, 3)
        self.assertGreater(took, 1)
        self.assertLess(took, bound + 1)
        self.assertIn("an HSM call has not returned", d.read_log())
        t.join(30)
        self.assertNotEqual(answers[1][0], 200)  # the connection was dropped: no answer, no wrong one

        # The next start is clean: ready, and wrapping works.
        d.write_shim_control("")
        self.start(d)
        r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()}, token=token)
        self.assertEqual(r.status, 200, r.body)
        opened = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": r.json()["ciphertext"]}, token=token)
        self.assertEqual(base64.b64decode(opened.json()["plaintext"]), plaintext)
        self.assertEqual(d.stop(), 0)

    def check_queued_request_gets_503_in_its_own_face(self, d, token):
        """With one session (one worker) held by a hung call, a KMS and a native request each get
        503 after acquire_timeout, in their own API's error format."""
        from kms_e2e import send, sign_kms, split_token
        self.start(d)
        d.write_shim_control(f"hang C_WrapKey {HANG_US}\n")
        time.sleep(0.2)
        plaintext = os.urandom(32)
        held = []
        t = threading.Thread(target=lambda: held.append(d.request(
            "POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()}, token=token)))
        t.start()
        time.sleep(0.3)  # the only worker is inside C_WrapKey now, for 3 s
        started = time.monotonic()
        url, headers, body = sign_kms(d.addr, "Encrypt", {"KeyId": "alias/demo", "Plaintext": "aGVsbG8="},
                                      *split_token(token))
        kms = send(url, headers, body)
        kms_took = time.monotonic() - started
        native = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": "AQ=="}, token=token)
        t.join(30)
        print(f"\nqueued behind a hung call: KMS {kms.status} after {kms_took:.2f}s", file=sys.stderr)
        self.assertEqual(kms.status, 503, kms.body)
        self.assertEqual(kms.json()["__type"], "DependencyTimeoutException", kms.body)
        self.assertIn("no HSM session became free", kms.json()["message"])
        self.assertGreaterEqual(kms_took, ACQUIRE_S)
        self.assertLess(kms_took, ACQUIRE_S + 1)
        self.assertError(native, 503, "unavailable")
        # The request that held the worker was only slow: it gets its right answer.
        self.assertEqual(held[0].status, 200, held[0].body)
        d.write_shim_control("")
        opened = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": held[0].json()["ciphertext"]}, token=token)
        self.assertEqual(base64.b64decode(opened.json()["plaintext"]), plaintext)
        m = metrics(d)
        self.assertEqual(m["kekd_http_queue_timeouts_total"], 2)
        self.assertEqual(d.stop(), 0)

    def test_config_refuses_out_of_range_bounds(self):
        base = tempfile.mkdtemp(prefix="kekd-e2e-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", base]))
        config = os.path.join(base, "kekd.toml")
        for key, value, message in [("acquire_timeout", '"5ms"', "hsm.acquire_timeout must be between"),
                                    ("stall_threshold", '"11m"', "hsm.stall_threshold must be between"),
                                    ("stall_threshold", '"soon"', "hsm.stall_threshold is not a duration"),
                                    ("acquire_timeout", "2", "hsm.acquire_timeout has the wrong type")]:
            with open(config, "w") as f:
                f.write(f'[hsm]\nmodule = "{SOFTHSM}"\npin_env = "KEKD_HSM_PIN"\n{key} = {value}\n')
            r = subprocess.run([KEKD_BIN, "serve", "--config", config], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main()
