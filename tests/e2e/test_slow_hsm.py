"""A slow HSM does not stall kekd's I/O: with every worker inside a 3-second C_WrapKey (the
PKCS#11 shim, tests/pkcs11_shim), health and readiness still answer at once, and the wraps
complete correctly afterwards. DESIGN §10: PKCS#11 calls block, so they run on the worker pool;
the I/O threads never wait for the HSM."""
import base64
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, SOFTHSM  # noqa: E402

SHIM = os.environ.get("KEKD_SHIM")


class SlowHsm(E2ETest):
    def test_health_answers_while_every_worker_waits_for_the_hsm(self):
        self.assertTrue(SHIM and os.path.exists(SHIM), "KEKD_SHIM must name the built shim")
        d = self.deployment()
        d.start()
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["wrap", "unwrap"]}])
        d.stop()
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            # An HSM slow by configuration rather than stuck: the bounds are set above its 3 s calls,
            # so the two wraps queued behind the busy workers wait and succeed (with the default
            # 2 s they would get 503: tests/e2e/test_hsm_hangs.py, docs/operations.md).
            text = text.replace("sessions = 4", 'sessions = 4\nacquire_timeout = "10s"\nstall_threshold = "10s"')
            f.write(text.replace(f'module = "{SOFTHSM}"', f'module = "{SHIM}"'))
        d.start(env_extra={"KEKD_SHIM_DELAY": "C_WrapKey=3000000"})

        # sessions = 4, so 4 workers: 6 wraps keep every one of them inside the HSM.
        results = []

        def wrap(i):
            r = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": base64.b64encode(bytes([i]) * 32).decode()},
                          token=token)
            results.append((i, r))

        threads = [threading.Thread(target=wrap, args=(i,)) for i in range(6)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(0.5)  # the wraps are on the workers now, each for 3 s
        for path in ("/v1/health", "/v1/ready"):
            before = time.monotonic()
            r = d.get(path)
            elapsed = time.monotonic() - before
            self.assertEqual(r.status, 200, r.body)
            # Generous: a request queued behind the wraps would take at least 2.5 s.
            self.assertLess(elapsed, 1.0, f"{path} waited {elapsed:.2f} s behind the HSM")
        for t in threads:
            t.join(30)
        self.assertGreater(time.monotonic() - started, 3.0, "the shim's delay did not apply")
        self.assertEqual(sorted(r.status for _, r in results), [200] * 6, [r.body for _, r in results])
        for i, r in results:
            opened = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": r.json()["ciphertext"]}, token=token)
            self.assertEqual(base64.b64decode(opened.json()["plaintext"]), bytes([i]) * 32)


if __name__ == "__main__":
    unittest.main()
