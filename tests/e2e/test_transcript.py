"""A ceremony transcript verifies offline with the script; altering any byte makes it fail."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


class Transcript(E2ETest):
    def test_transcript_verifies_and_every_altered_byte_fails(self):
        d = self.deployment().start()
        ceremony_id = d.script("propose.sh", "create-key", "demo").stdout.strip()
        statement = d.statement(ceremony_id)
        for name in ("alice", "carol"):
            d.script("approve.sh", ceremony_id, name, d.sign(statement, name))

        transcript = os.path.join(d.dir, "transcript.json")
        d.script("transcript.sh", ceremony_id, "--out", transcript)
        audit_key = os.path.join(d.dir, "kekd-audit.pem")
        response = d.get("/v1/audit/public-key", token=d.admin_token)
        self.assertEqual(response.status, 200)
        with open(audit_key, "w") as f:
            f.write(response.body)
        operator_args = []
        for name in ("alice", "bob", "carol"):
            operator_args += ["--operator", f"{name}={d.operator_keys[name][1]}"]

        ok = d.script("verify-transcript.sh", transcript, "--kekd-key", audit_key, *operator_args)
        self.assertIn(f"transcript verified: {ceremony_id} executed", ok.stdout)

        with open(transcript, "rb") as f:
            original = f.read()
        altered = os.path.join(d.dir, "altered.json")
        # Every byte position would take minutes through openssl; take positions spread over the
        # whole file (every section of the document, the signature, the JSON framing) and every
        # one of the last 100 (signature and framing). The offline selftest covers every byte.
        positions = sorted(set(list(range(0, len(original), max(1, len(original) // 60))) +
                               list(range(max(0, len(original) - 100), len(original)))))
        for i in positions:
            data = bytearray(original)
            data[i] = data[i] ^ 0x01 if data[i] not in (0x0a,) else 0x20
            with open(altered, "wb") as f:
                f.write(data)
            result = d.script("verify-transcript.sh", altered, "--kekd-key", audit_key, *operator_args,
                              check=False)
            self.assertNotEqual(result.returncode, 0, f"byte {i} altered and still verified")


if __name__ == "__main__":
    unittest.main()
