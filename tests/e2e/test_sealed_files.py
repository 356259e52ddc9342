"""kekctl seal / open against the real kekd and SoftHSM: a 200 MB round trip in constant memory, a
tampered file and a wrong context refused without leaving plaintext behind, the grants that each
side needs, and an independent opening of a sealed file with Python's `cryptography` package and
the decoder printed in docs/sealed-file.md."""
import base64
import hashlib
import os
import pty
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, KEKCTL_BIN, SOURCE_DIR, Deployment  # noqa: E402

MiB = 1024 * 1024


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def doc_decoder():
    """The open_sealed() function printed in docs/sealed-file.md, so the doc is what is tested."""
    with open(os.path.join(SOURCE_DIR, "docs", "sealed-file.md")) as f:
        code = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    scope = {}
    exec(code, scope)  # noqa: S102 - our own documentation
    return scope["open_sealed"]


class SealedFiles(E2ETest):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment().start()
        cls.d.ceremony("create-key", "demo")
        cls.app = cls.d.client([{"key": "demo", "operations": ["datakey", "unwrap"]}])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def setUp(self):
        self.work = os.path.join(self.d.dir, self._testMethodName)  # one directory per test
        os.makedirs(self.work)

    def path(self, name):
        return os.path.join(self.work, name)

    def kekctl(self, *args, token=None):
        env = dict(self.d.env, KEKD_ADDR=self.d.addr, KEKD_TOKEN=token or self.app)
        return subprocess.run([KEKCTL_BIN, *args], env=env, capture_output=True, text=True, timeout=300)

    def kekctl_measured(self, *args):
        """Runs kekctl and returns (returncode, stderr, peak RSS in KiB of that process alone)."""
        env = dict(self.d.env, KEKD_ADDR=self.d.addr, KEKD_TOKEN=self.app)
        proc = subprocess.Popen([KEKCTL_BIN, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, stderr, usage.ru_maxrss

    def test_200_mb_round_trip_in_constant_memory(self):
        plain, sealed, opened = self.path("big"), self.path("big.sealed"), self.path("big.opened")
        write_random(plain, 200 * MiB)
        code, err, rss_seal = self.kekctl_measured("seal", "--key", "demo", plain, sealed)
        self.assertEqual(code, 0, err)
        code, err, rss_open = self.kekctl_measured("open", sealed, opened)
        self.assertEqual(code, 0, err)
        self.assertEqual(sha256(plain), sha256(opened))
        # 64 KiB chunks: the overhead is one 16-byte tag per chunk plus the header.
        self.assertLess(os.path.getsize(sealed) - os.path.getsize(plain), 200 * 16 * 16 + 1024)
        print(f"\npeak RSS: seal {rss_seal // 1024} MiB, open {rss_open // 1024} MiB (200 MiB file)",
              file=sys.stderr)
        self.assertLess(rss_seal, 64 * 1024)
        self.assertLess(rss_open, 64 * 1024)
        for p in (plain, sealed, opened):
            os.remove(p)

    def test_tampered_file_is_refused_and_leaves_nothing(self):
        plain, sealed, out = self.path("t"), self.path("t.sealed"), self.path("t.opened")
        write_random(plain, 3 * MiB + 7)
        self.assertEqual(self.kekctl("seal", "--key", "demo", plain, sealed).returncode, 0)
        with open(sealed, "rb") as f:
            data = bytearray(f.read())
        for where in (len(data) // 2, len(data) - 1, 20):  # a middle chunk, the last tag, the header
            bad = bytearray(data)
            bad[where] ^= 0x01
            with open(self.path("bad.sealed"), "wb") as f:
                f.write(bad)
            r = self.kekctl("open", self.path("bad.sealed"), out)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertRegex(r.stderr, "tampered|invalid_ciphertext|not a kekd sealed file")
            self.assertFalse(os.path.exists(out))
            self.assertEqual(sorted(os.listdir(self.work)), ["bad.sealed", "t", "t.sealed"])
        truncated = self.path("bad.sealed")
        with open(truncated, "wb") as f:
            f.write(data[:-(64 * 1024 + 16)])  # drop the last chunk, at a chunk boundary
        r = self.kekctl("open", truncated, out)
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(out))
        r = self.kekctl("open", plain, out)  # not a sealed file at all
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a kekd sealed file", r.stderr)
        for p in (plain, sealed, truncated):
            os.remove(p)

    def test_context_binds_the_file(self):
        plain, sealed, out = self.path("c"), self.path("c.sealed"), self.path("c.opened")
        with open(plain, "wb") as f:
            f.write(b"card 4111 1111 1111 1111\n")
        r = self.kekctl("seal", "--key", "demo", "--context", "tenant=acme", "--context", "record=42", plain, sealed)
        self.assertEqual(r.returncode, 0, r.stderr)
        for wrong in (["--context", "tenant=evil", "--context", "record=42"], ["--context", "tenant=acme"], []):
            r = self.kekctl("open", *wrong, sealed, out)
            self.assertEqual(r.returncode, 1, wrong)
            self.assertFalse(os.path.exists(out))
        self.assertIn("context", self.kekctl("open", sealed, out).stderr)  # says a context is needed
        r = self.kekctl("open", "--context", "record=42", "--context", "tenant=acme", sealed, out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(open(out, "rb").read(), open(plain, "rb").read())
        self.assertEqual(oct(os.stat(out).st_mode & 0o777), "0o600")

    def test_each_side_needs_its_grant(self):
        plain, sealed = self.path("g"), self.path("g.sealed")
        with open(plain, "wb") as f:
            f.write(b"x" * 1000)
        sealer = self.d.client([{"key": "demo", "operations": ["datakey"]}])
        opener = self.d.client([{"key": "demo", "operations": ["unwrap"]}])
        self.assertEqual(self.kekctl("seal", "--key", "demo", plain, sealed, token=opener).returncode, 1)
        self.assertFalse(os.path.exists(sealed))
        self.assertEqual(self.kekctl("seal", "--key", "demo", plain, sealed, token=sealer).returncode, 0)
        r = self.kekctl("open", sealed, self.path("g.opened"), token=sealer)
        self.assertEqual(r.returncode, 1)
        self.assertIn("403", r.stderr)
        self.assertEqual(self.kekctl("open", sealed, self.path("g.opened"), token=opener).returncode, 0)

    def test_independent_decoder_from_the_docs_opens_kekctl_output(self):
        plain, sealed = self.path("o"), self.path("o.sealed")
        write_random(plain, 3 * 64 * 1024 + 123)
        r = self.kekctl("seal", "--key", "demo", "--context", "tenant=acme", plain, sealed)
        self.assertEqual(r.returncode, 0, r.stderr)
        data = open(sealed, "rb").read()
        n = data[14]
        self.assertEqual(data[15:15 + n], b"demo")
        m = int.from_bytes(data[15 + n:17 + n], "big")
        wrapped = data[17 + n:17 + n + m]
        answer = self.d.request("POST", "/v1/keys/demo/unwrap", token=self.app,
                                body={"ciphertext": base64.b64encode(wrapped).decode(),
                                      "context": {"tenant": "acme"}})
        self.assertEqual(answer.status, 200, answer.body)
        data_key = base64.b64decode(answer.json()["plaintext"])
        self.assertEqual(len(data_key), 32)
        self.assertEqual(doc_decoder()(data, data_key), open(plain, "rb").read())

    def test_progress_bar_on_a_terminal_only(self):
        plain, sealed = self.path("p"), self.path("p.sealed")
        write_random(plain, 24 * MiB)
        env = dict(self.d.env, KEKD_ADDR=self.d.addr, KEKD_TOKEN=self.app)
        primary, secondary = pty.openpty()
        proc = subprocess.Popen([KEKCTL_BIN, "seal", "--key", "demo", plain, sealed], env=env,
                                stdout=secondary, stderr=secondary)
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        self.assertEqual(proc.wait(timeout=120), 0, shown)
        os.close(primary)
        self.assertIn(b"100%", shown)
        quiet = self.kekctl("seal", "--key", "demo", plain, sealed + "2")  # stderr is a pipe: no bar
        self.assertEqual((quiet.returncode, quiet.stderr), (0, ""))
        for p in (plain, sealed, sealed + "2"):
            os.remove(p)


if __name__ == "__main__":
    unittest.main()
