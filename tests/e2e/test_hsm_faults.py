"""HSM faults while kekd serves a steady load (DESIGN §11), through the PKCS#11 shim
(tests/pkcs11_shim) whose control file switches faults on and off while kekd runs:

- every PKCS#11 call fails with CKR_DEVICE_ERROR, CKR_SESSION_HANDLE_INVALID, CKR_TOKEN_NOT_PRESENT
  or CKR_DEVICE_REMOVED for a while: affected requests are 503 (never another status, never a wrong
  result), /v1/ready turns false, kekd keeps running;
- the fault ends and no request arrives: readiness comes back by itself within seconds (the ticker
  reopens the lost sessions), and wraps work again;
- every ciphertext kekd answered 200 with, during or around the fault, opens to its plaintext;
- a wrong PIN at start is reported clearly and tried exactly once (the token would lock);
- an unwrap makes three PKCS#11 calls (counted by the shim), as docs/operations.md says.
"""
import base64
import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, KEKD_BIN, SOFTHSM  # noqa: E402

SHIM = os.environ.get("KEKD_SHIM")
FAULTS = ["CKR_DEVICE_ERROR", "CKR_SESSION_HANDLE_INVALID", "CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_REMOVED"]


def use_shim(d):
    config = os.path.join(d.dir, "kekd.toml")
    with open(config) as f:
        text = f.read()
    assert f'module = "{SOFTHSM}"' in text
    with open(config, "w") as f:
        f.write(text.replace(f'module = "{SOFTHSM}"', f'module = "{SHIM}"'))


class HsmFaults(E2ETest):
    def setUp(self):
        self.assertTrue(SHIM and os.path.exists(SHIM), "KEKD_SHIM must name the built shim")

    def control(self, d, text):
        d.write_shim_control(text)
        time.sleep(0.2)  # the shim looks at the file every 50 ms

    def ready(self, d):
        return d.get("/v1/ready").status

    def test_faults_answer_503_and_kekd_recovers_by_itself(self):
        d = self.deployment()
        d.start()
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["wrap", "unwrap"]}])
        d.stop()
        use_shim(d)
        self.control(d, "")
        d.start(env_extra={"KEKD_SHIM_CONTROL": d.shim_control})

        answered = []  # (plaintext, status, body) of every wrap the load sent
        stop = threading.Event()

        def load(worker):
            n = 0
            while not stop.is_set():
                plaintext = f"{worker}-{n}".encode().ljust(32, b".")
                n += 1
                r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()},
                              token=token)
                answered.append((plaintext, r.status, r.body))
                time.sleep(0.005)

        for fault in FAULTS:
            with self.subTest(fault=fault):
                start = len(answered)
                stop.clear()
                threads = [threading.Thread(target=load, args=(f"{fault}-{i}",)) for i in range(3)]
                for t in threads:
                    t.start()
                time.sleep(0.5)
                self.control(d, f"fail * {fault}\n")
                time.sleep(1.5)
                self.assertEqual(self.ready(d), 503, f"ready during {fault}")
                during = [s for _, s, _ in answered[start:]]
                self.assertIn(503, during, f"no request failed during {fault}")
                self.assertEqual(d.proc.poll(), None, "kekd exited")
                # The fault ends while nothing is sent: kekd must heal by itself.
                stop.set()
                for t in threads:
                    t.join(30)
                self.control(d, "")
                deadline = time.monotonic() + 6
                while self.ready(d) != 200:
                    self.assertLess(time.monotonic(), deadline, f"not ready again 6 s after {fault} ended")
                    time.sleep(0.1)
                statuses = {s for _, s, _ in answered[start:]}
                self.assertLessEqual(statuses, {200, 503}, f"statuses during {fault}")
                for _, status, body in answered[start:]:
                    if status == 503:
                        self.assertRegex(body, r'"code":"unavailable"')

        after = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(b"after").decode()}, token=token)
        self.assertEqual(after.status, 200, after.body)
        # Never a wrong result: every ciphertext answered 200 opens to the plaintext that was sent.
        ok = [(p, b) for p, s, b in answered if s == 200]
        self.assertGreater(len(ok), 20)
        for plaintext, body in ok:
            ciphertext = re.search(r'"ciphertext":"([^"]+)"', body).group(1)
            opened = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": ciphertext}, token=token)
            self.assertEqual(opened.status, 200, opened.body)
            self.assertEqual(base64.b64decode(opened.json()["plaintext"]), plaintext)

    def test_an_unwrap_makes_three_pkcs11_calls(self):
        """docs/operations.md ("How many HSM sessions") counts an unwrap as C_UnwrapKey, one
        C_GetAttributeValue and C_DestroyObject: kekd reads the payload in one call, into a buffer
        as long as the payload can be. The shim counts the calls of two runs that differ only in
        the number of unwraps, so that start-up's and shutdown's own calls cancel out."""
        d = self.deployment()
        d.start()
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["wrap", "unwrap"]}])
        sealed = []
        for n in (1, 32, 1000):  # the one-call read must also get the length right
            plaintext = os.urandom(n)
            r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(plaintext).decode()},
                          token=token)
            self.assertEqual(r.status, 200, r.body)
            sealed.append((plaintext, r.json()["ciphertext"]))
        d.stop()
        use_shim(d)

        def calls_with(rounds):
            stats = os.path.join(d.dir, f"shim-{rounds}.stats")
            d.start(env_extra={"KEKD_SHIM_STATS": stats})
            for _ in range(rounds):
                for plaintext, ciphertext in sealed:
                    r = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": ciphertext}, token=token)
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(base64.b64decode(r.json()["plaintext"]), plaintext)
            d.stop()
            with open(stats) as f:
                return {line.split()[0]: int(line.split()[1]) for line in f if line.strip()}

        few, many = calls_with(1), calls_with(5)
        more = {name: many.get(name, 0) - few.get(name, 0) for name in set(few) | set(many)}
        unwraps = 4 * len(sealed)
        for name in ("C_UnwrapKey", "C_GetAttributeValue", "C_DestroyObject"):
            self.assertEqual(more.get(name), unwraps, f"{name}: {few} then {many}")

    def test_a_wrong_pin_is_reported_and_tried_once(self):
        d = self.deployment()
        use_shim(d)
        with open(d.pin_file) as f:
            right = f.read()
        with open(d.pin_file, "w") as f:
            f.write("999999")
        stats = os.path.join(d.dir, "shim.stats")
        env = dict(d.env, KEKD_SHIM_STATS=stats)
        r = subprocess.run([KEKD_BIN, "serve", "--config", os.path.join(d.dir, "kekd.toml")], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        output = r.stdout + r.stderr
        self.assertRegex(output, r"(?i)pin")
        self.assertNotIn("999999", output)
        with open(stats) as f:
            calls = {line.split()[0]: int(line.split()[1]) for line in f if line.strip()}
        self.assertEqual(calls.get("C_Login"), 1, calls)
        # The token was not locked by that one attempt: the right PIN still works.
        with open(d.pin_file, "w") as f:
            f.write(right)
        d.start()
        self.assertEqual(self.ready(d), 200)


if __name__ == "__main__":
    unittest.main()
