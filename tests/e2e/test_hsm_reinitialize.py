"""hsm.reinitialize_after through the real daemon (docs/operations.md, "SoftHSM's memory"): kekd
re-initialises the PKCS#11 module after so many wraps and unwraps, counts it in /metrics, logs it,
stays ready, and every data key made before unwraps after. The HSM layer's own tests are in
tests/integration/hsm/module_reinitialize_test.cc."""
import base64
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


def metric(d, name):
    r = d.get("/metrics")
    found = re.search(rf"^{name} (\S+)$", r.body, re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_for_metric(d, name, value, timeout=5):
    """kekd's ticker re-initialises the module once a second: the metric gets there within ~1 s."""
    deadline = time.monotonic() + timeout
    while metric(d, name) != value and time.monotonic() < deadline:
        time.sleep(0.05)
    return metric(d, name)


class HsmReinitialize(E2ETest):
    def test_the_module_is_reinitialised_after_the_configured_objects_and_nothing_is_lost(self):
        d = self.deployment()
        d.start()
        # The default on SoftHSM: every 100000 transient objects ("auto").
        self.assertIn("re-initialised every 100000 transient objects", d.read_log())
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["datakey", "unwrap"]}])
        d.stop()
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("sessions = 4", "sessions = 4\nreinitialize_after = 1000"))
        d.start()
        self.assertIn("re-initialised every 1000 transient objects", d.read_log())
        self.assertEqual(metric(d, "kekd_hsm_reinitializations_total"), 0)

        # 1000 data keys (one wrap each), then their 1000 unwraps: a re-initialisation within a
        # second of each thousand. Each thousand ends with a batch, so the re-initialisation comes
        # after it: one in the middle of a batch waits for the batch's next HSM call, and gives
        # up (as designed, until as many objects more) if that is 500 ms away on a loaded machine.
        # The integration tests cover re-initialisations between the calls of held sessions.
        keys = []
        for _ in range(2):
            r = d.request("POST", "/v1/keys/demo/datakey", {"items": [{"bytes": 32}] * 500}, token=token)
            self.assertEqual(r.status, 200, r.body)
            keys += [(i["plaintext"], i["ciphertext"]) for i in r.json()["items"]]
        self.assertEqual(wait_for_metric(d, "kekd_hsm_reinitializations_total", 1), 1)
        self.assertEqual(d.get("/v1/ready").status, 200)
        for start in (0, 500):
            r = d.request("POST", "/v1/keys/demo/unwrap",
                          {"items": [{"ciphertext": c} for _, c in keys[start:start + 500]]}, token=token)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual([i.get("plaintext") for i in r.json()["items"]],
                             [p for p, _ in keys[start:start + 500]])
        self.assertEqual(wait_for_metric(d, "kekd_hsm_reinitializations_total", 2), 2)
        self.assertEqual(metric(d, "kekd_hsm_reinitialize_failures_total"), 0)
        self.assertEqual(metric(d, "kekd_hsm_sessions_broken"), 0)
        self.assertEqual(d.get("/v1/ready").status, 200)
        # A single item right after still works (sessions logged in again, key looked up again).
        r = d.request("POST", "/v1/keys/demo/unwrap", {"ciphertext": keys[0][1]}, token=token)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["plaintext"], keys[0][0])
        self.assertEqual(len(base64.b64decode(keys[0][0])), 32)
        # The ticker logs them, right after it has done them.
        logged = "re-initialised the PKCS#11 module (2 so far"
        deadline = time.monotonic() + 5
        while logged not in d.read_log() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn(logged, d.read_log())


if __name__ == "__main__":
    unittest.main()
