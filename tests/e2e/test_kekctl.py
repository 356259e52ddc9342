"""kekctl against the real kekd and SoftHSM: every command and its output, the error lines and exit
statuses scripts rely on, where the credential comes from, and TLS with server and client
certificates (checked against curl as an independent client)."""
import base64
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, Deployment, run  # noqa: E402

ALL = ["datakey", "wrap", "unwrap", "rewrap", "describe"]
CONTEXT = ["--context", "tenant=acme", "--context", "purpose=card=1"]  # '=' in a value is kept
ERROR_LINE = r"^kekctl: {status} {code}: .+ \(request [0-9a-f]+\)\n$"


def out(result):
    return json.loads(result.stdout)


class Kekctl(E2ETest):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment().start()
        cls.d.ceremony("create-key", "demo")
        cls.d.ceremony("create-key", "payments")
        cls.app = cls.d.client([{"key": "demo", "operations": ALL}, {"key": "payments", "operations": ALL}])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def kekctl(self, *args, **kwargs):
        kwargs.setdefault("token", self.app)
        return self.d.kekctl(*args, **kwargs)

    def path(self, name):
        return os.path.join(self.d.dir, f"{self.id().rsplit('.', 1)[-1]}-{name}")

    def assertErrorLine(self, result, status, code):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertRegex(result.stderr, ERROR_LINE.format(status=status, code=code))

    def test_keys_lists_and_describes(self):
        listed = self.d.kekctl("keys")  # the admin
        self.assertEqual(listed.returncode, 0)
        self.assertTrue(listed.stdout.startswith('{\n  "keys": ['), listed.stdout)  # pretty, 2 spaces
        self.assertEqual(sorted(k["name"] for k in out(listed)["keys"]), ["demo", "payments"])
        demo = out(self.kekctl("keys", "demo"))  # a client with a describe grant
        self.assertEqual((demo["name"], demo["primary_version"]), ("demo", 1))
        self.assertEqual([(v["version"], v["state"]) for v in demo["versions"]], [(1, "enabled")])
        self.assertEqual(demo, self.d.request("GET", "/v1/keys/demo", token=self.app).json())

    def test_datakey_then_unwrap_gives_the_same_bytes(self):
        dk = out(self.kekctl("datakey", "demo", "--bytes", "24", *CONTEXT))
        self.assertEqual((dk["key"], dk["version"]), ("demo", 1))
        self.assertEqual(len(base64.b64decode(dk["plaintext"])), 24)
        back = out(self.kekctl("unwrap", "demo", "--ciphertext", dk["ciphertext"], *CONTEXT))
        self.assertEqual((back["plaintext"], back["key"], back["version"]), (dk["plaintext"], "demo", 1))
        # The ciphertext from a file: base64 text (with a newline, as `jq -r` writes it) or raw bytes.
        text_file, raw_file = self.path("ct.b64"), self.path("ct.bin")
        with open(text_file, "w") as f:
            f.write(dk["ciphertext"] + "\n")
        with open(raw_file, "wb") as f:
            f.write(base64.b64decode(dk["ciphertext"]))
        for ct_file in (text_file, raw_file):
            again = out(self.kekctl("unwrap", "demo", "--ciphertext-file", ct_file, *CONTEXT))
            self.assertEqual(again["plaintext"], dk["plaintext"])
        # The context is part of the ciphertext: without it, unwrapping fails as tampering would.
        self.assertErrorLine(self.kekctl("unwrap", "demo", "--ciphertext", dk["ciphertext"],
                                         check=False), 400, "invalid_ciphertext")

    def test_datakey_without_plaintext(self):
        dk = out(self.kekctl("datakey", "demo", "--no-plaintext"))
        self.assertEqual(sorted(dk), ["ciphertext", "key", "version"])
        back = out(self.kekctl("unwrap", "demo", "--ciphertext", dk["ciphertext"]))
        self.assertEqual(len(base64.b64decode(back["plaintext"])), 32)  # the default size

    def test_wrap_from_stdin_and_unwrap_into_a_private_file(self):
        secret = os.urandom(61) + b"\n\x00\r\n"  # binary, with what text handling would mangle
        wrapped = out(self.kekctl("wrap", "demo", *CONTEXT, input=secret))
        self.assertEqual(sorted(wrapped), ["ciphertext", "key", "version"])
        target = self.path("dek")
        with open(target, "w") as f:  # an existing, world-readable file is made private too
            f.write("old contents, longer than the key that replaces them" * 4)
        os.chmod(target, 0o644)
        result = self.kekctl("unwrap", "demo", "--ciphertext", wrapped["ciphertext"], *CONTEXT, "--out", target)
        self.assertEqual(out(result), {"key": "demo", "version": 1})  # no plaintext member
        with open(target, "rb") as f:
            self.assertEqual(f.read(), secret)
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        fresh = self.path("dek2")
        self.kekctl("unwrap", "demo", "--ciphertext", wrapped["ciphertext"], *CONTEXT, "--out", fresh)
        self.assertEqual(stat.S_IMODE(os.stat(fresh).st_mode), 0o600)
        # --in FILE reads the same bytes as stdin.
        source = self.path("plain")
        with open(source, "wb") as f:
            f.write(secret)
        from_file = out(self.kekctl("wrap", "demo", "--in", source))
        back = out(self.kekctl("unwrap", "demo", "--ciphertext", from_file["ciphertext"]))
        self.assertEqual(base64.b64decode(back["plaintext"]), secret)

    def test_rewrap_moves_to_the_new_primary_version(self):
        secret = os.urandom(32)
        v1 = out(self.kekctl("wrap", "payments", *CONTEXT, input=secret))
        self.assertEqual(v1["version"], 1)
        self.d.ceremony("rotate-key", "payments")
        moved = out(self.kekctl("rewrap", "payments", "--ciphertext", v1["ciphertext"], *CONTEXT))
        self.assertEqual((sorted(moved), moved["version"]), (["ciphertext", "key", "version"], 2))
        ct_file = self.path("v2.b64")
        with open(ct_file, "w") as f:
            f.write(moved["ciphertext"])
        back = out(self.kekctl("unwrap", "payments", "--ciphertext-file", ct_file, *CONTEXT))
        self.assertEqual((base64.b64decode(back["plaintext"]), back["version"]), (secret, 2))
        again = out(self.kekctl("rewrap", "payments", "--ciphertext-file", "-", *CONTEXT, input=moved["ciphertext"]))
        self.assertEqual(again["version"], 2)

    def test_client_lifecycle(self):
        created = self.d.kekctl("clients", "create", "--grant", "demo:datakey,unwrap", "--grant", "pay*:describe")
        client = out(created)
        self.assertEqual(client["token"], f"{client['client_id']}.{client['secret']}")
        self.assertEqual(client["grants"], [{"key": "demo", "operations": ["datakey", "unwrap"]},
                                            {"key": "pay*", "operations": ["describe"]}])
        token = client["token"]
        dk = out(self.d.kekctl("datakey", "demo", token=token))
        self.assertEqual(out(self.d.kekctl("unwrap", "demo", "--ciphertext", dk["ciphertext"], token=token))
                         ["plaintext"], dk["plaintext"])
        self.assertEqual(out(self.d.kekctl("keys", "payments", token=token))["name"], "payments")
        self.assertErrorLine(self.d.kekctl("wrap", "demo", token=token, input=b"k" * 16, check=False),
                             403, "permission_denied")
        listed = {c["client_id"]: c for c in out(self.d.kekctl("clients", "list"))["clients"]}
        self.assertEqual(listed[client["client_id"]]["grants"], client["grants"])
        self.assertNotIn("secret", json.dumps(listed[client["client_id"]]))
        deleted = out(self.d.kekctl("clients", "delete", client["client_id"]))
        self.assertEqual(deleted, {"client_id": client["client_id"], "deleted": True})
        self.assertErrorLine(self.d.kekctl("datakey", "demo", token=token, check=False), 401, "unauthenticated")
        remaining = out(self.d.kekctl("clients", "list"))["clients"]
        self.assertNotIn(client["client_id"], [c["client_id"] for c in remaining])
        self.assertErrorLine(self.d.kekctl("clients", "delete", client["client_id"], check=False), 404, "not_found")
        # No --grant: least privilege, the new client can do nothing.
        nothing = out(self.d.kekctl("clients", "create"))
        self.assertEqual(nothing["grants"], [])
        self.assertErrorLine(self.d.kekctl("datakey", "demo", token=nothing["token"], check=False),
                             403, "permission_denied")

    def test_errors_and_exit_statuses(self):
        wrong = self.kekctl("keys", token="cli_nobody.not-a-secret", check=False)
        self.assertErrorLine(wrong, 401, "unauthenticated")
        self.assertNotIn("not-a-secret", wrong.stderr)
        # Unknown keys: kekd tells only those who may know (the admin, a client granted every name).
        self.assertErrorLine(self.d.kekctl("keys", "nope", check=False), 404, "not_found")
        anything = self.d.client([{"key": "*", "operations": ["datakey"]}])
        self.assertErrorLine(self.kekctl("datakey", "nope", token=anything, check=False), 404, "not_found")
        self.assertErrorLine(self.kekctl("keys", "nope", check=False), 403, "permission_denied")
        self.assertErrorLine(self.kekctl("datakey", "demo", "--bytes", "5000", check=False), 400, "invalid_argument")
        self.assertErrorLine(self.kekctl("unwrap", "demo", "--ciphertext", "bm90IGEgY2lwaGVydGV4dA==",
                                         check=False), 400, "invalid_ciphertext")
        # Usage errors: exit 2, before anything is sent.
        for args in [("datakey", "demo", "--context", "tenant"), ("datakey", "demo", "--context", "=x"),
                     ("datakey", "demo", "--context", "a=1", "--context", "a=2"), ("unwrap", "demo"),
                     ("unwrap", "demo", "--ciphertext", "x", "--ciphertext-file", "f"), ("datakey",),
                     ("clients", "create", "--grant", "demo"), ("clients", "create", "--grant", "demo:wrap,"),
                     ("frobnicate",), ("keys", "--token", "x"), ()]:
            result = self.kekctl(*args, check=False)
            self.assertEqual(result.returncode, 2, f"{args}: {result.stderr}")
            self.assertEqual(result.stdout, "", args)
        self.assertIn("KEY=VALUE", self.kekctl("datakey", "demo", "--context", "tenant", check=False).stderr)
        # Nothing listens on a socket that is bound but not listening: the connection is refused.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            addr = f"http://127.0.0.1:{s.getsockname()[1]}"
            refused = self.kekctl("keys", "--addr", addr, check=False)
        self.assertEqual(refused.returncode, 1)
        self.assertEqual(refused.stderr, f"kekctl: cannot connect to {addr}: Connection refused\n")
        bad_addr = self.kekctl("keys", "--addr", "127.0.0.1:8200", check=False)
        self.assertEqual(bad_addr.returncode, 1)
        self.assertIn("http:// or https://", bad_addr.stderr)

    def test_global_options_and_the_credential(self):
        # --addr before or after the subcommand, over KEKD_ADDR.
        nowhere = {"KEKD_ADDR": "http://127.0.0.1:9"}
        for args in [("--addr", self.d.addr, "keys", "demo"), ("keys", "demo", "--addr", self.d.addr)]:
            self.assertEqual(out(self.kekctl(*args, env_extra=nowhere))["name"], "demo")
        # The token from a file, named by --token-file or KEKD_TOKEN_FILE (a trailing newline is fine).
        token_file = self.path("token")
        with open(token_file, "w") as f:
            f.write(self.app + "\n")
        os.chmod(token_file, 0o600)
        no_token = {"KEKD_TOKEN": None}
        by_flag = self.kekctl("keys", "demo", "--token-file", token_file, env_extra=no_token)
        self.assertEqual(out(by_flag)["name"], "demo")
        self.assertEqual(out(self.kekctl("keys", "demo", env_extra={"KEKD_TOKEN": None, "KEKD_TOKEN_FILE": token_file}))
                         ["name"], "demo")
        # --token-file on the command line wins over KEKD_TOKEN, which wins over KEKD_TOKEN_FILE.
        self.assertEqual(self.kekctl("keys", "demo", "--token-file", token_file, token="cli_x.wrong").returncode, 0)
        self.assertErrorLine(self.kekctl("keys", "demo", token="cli_x.wrong", check=False,
                                         env_extra={"KEKD_TOKEN_FILE": token_file}), 401, "unauthenticated")
        missing = self.kekctl("keys", "--token-file", self.path("absent"), env_extra=no_token, check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertRegex(missing.stderr, r"^kekctl: cannot read the token file .*absent: No such file")
        # No credential at all: kekd says so.
        self.assertErrorLine(self.kekctl("keys", env_extra=no_token, check=False), 401, "unauthenticated")


def openssl_cert(directory, name, subject, san=None, ca=None):
    """A P-256 key and certificate: self-signed, or signed by ca = (cert, key)."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    if ca is None:
        args = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", cert, "-days", "1", "-subj", subject]
        run(args + (["-addext", f"subjectAltName={san}"] if san else []))
        return cert, key
    csr = os.path.join(directory, f"{name}.csr")
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", subject])
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", ext])
    return cert, key


class KekctlTls(E2ETest):
    def tls_deployment(self, client_ca=None):
        d = self.deployment()
        cert, key = openssl_cert(d.dir, "server", "/CN=127.0.0.1", san="IP:127.0.0.1")
        server = f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        if client_ca:
            server += f'client_ca = "{client_ca}"\n'
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", server))
        d.start(wait=False)
        d.wait_listening()  # the harness's own readiness probe speaks plain HTTP
        self.assertTrue(d.addr.startswith("https://"), d.addr)
        return d, cert

    def curl(self, d, *args):
        return run(["curl", "-sS", "--max-time", "10", "-H", f"Authorization: Bearer {d.admin_token}", *args,
                    f"https://127.0.0.1:{d.port}/v1/keys"], check=False)

    def test_server_certificate_is_verified(self):
        d, ca = self.tls_deployment()
        ok = d.kekctl("--cacert", ca, "keys")
        self.assertEqual(out(ok), {"keys": []})
        self.assertEqual(out(d.kekctl("keys", env_extra={"KEKD_CACERT": ca})), {"keys": []})
        self.assertEqual(json.loads(self.curl(d, "--cacert", ca).stdout), {"keys": []})
        # Without the CA the server is a stranger: both clients refuse it.
        untrusted = d.kekctl("keys", check=False)
        self.assertEqual(untrusted.returncode, 1)
        self.assertEqual(untrusted.stdout, "")
        self.assertRegex(untrusted.stderr, rf"^kekctl: TLS handshake with {re.escape(d.addr)} failed: "
                                           r"certificate verify failed: self.signed certificate\n$")
        self.assertNotEqual(self.curl(d).returncode, 0)
        # The right certificate for the wrong name: it names 127.0.0.1, not localhost.
        wrong_name = d.kekctl("--cacert", ca, "--addr", f"https://localhost:{d.port}", "keys", check=False)
        self.assertEqual(wrong_name.returncode, 1)
        self.assertRegex(wrong_name.stderr, r"certificate verify failed: .*mismatch")
        # Plain HTTP on the TLS port gets no answer.
        plain = d.kekctl("--addr", f"http://127.0.0.1:{d.port}", "keys", check=False)
        self.assertEqual(plain.returncode, 1)
        self.assertTrue(plain.stderr.startswith("kekctl: "), plain.stderr)
        self.assertNotEqual(run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{d.port}/v1/health"],
                                check=False).returncode, 0)
        self.assertEqual(out(d.kekctl("--cacert", ca, "keys")), {"keys": []})  # still serving
        self.assertEqual(d.stop(), 0)

    def test_client_certificates_are_required_with_client_ca(self):
        pki = tempfile.mkdtemp(prefix="kekctl-pki-")
        self.addCleanup(shutil.rmtree, pki, ignore_errors=True)
        client_ca = openssl_cert(pki, "client-ca", "/CN=kekd test client CA")
        client = openssl_cert(pki, "app", "/CN=app", ca=client_ca)
        stranger_ca = openssl_cert(pki, "stranger-ca", "/CN=someone else's CA")
        stranger = openssl_cert(pki, "stranger", "/CN=app", ca=stranger_ca)
        d, ca = self.tls_deployment(client_ca=client_ca[0])

        # No client certificate: refused by kekd's TLS layer, for curl and kekctl alike.
        none = d.kekctl("--cacert", ca, "keys", check=False)
        self.assertEqual(none.returncode, 1)
        self.assertEqual(none.stdout, "")
        self.assertIn("requires a client certificate", none.stderr)
        self.assertNotEqual(self.curl(d, "--cacert", ca).returncode, 0)
        # A certificate from a CA kekd does not trust: refused as well.
        other = d.kekctl("--cacert", ca, "--cert", stranger[0], "--key", stranger[1], "keys", check=False)
        self.assertEqual(other.returncode, 1)
        self.assertEqual(other.stdout, "")
        self.assertIn("refused the client certificate", other.stderr)
        self.assertNotEqual(self.curl(d, "--cacert", ca, "--cert", stranger[0], "--key", stranger[1]).returncode, 0)
        # With the client certificate: both succeed, and kekd kept serving after the refusals.
        self.assertEqual(out(d.kekctl("--cacert", ca, "--cert", client[0], "--key", client[1], "keys")), {"keys": []})
        self.assertEqual(out(d.kekctl("keys", env_extra={"KEKD_CACERT": ca, "KEKD_CLIENT_CERT": client[0],
                                                         "KEKD_CLIENT_KEY": client[1]})), {"keys": []})
        good = self.curl(d, "--cacert", ca, "--cert", client[0], "--key", client[1], "-f")
        self.assertEqual(json.loads(good.stdout), {"keys": []}, good.stderr)
        # The certificate and the key go together.
        half = d.kekctl("--cacert", ca, "--cert", client[0], "keys", check=False)
        self.assertEqual(half.returncode, 1)
        self.assertIn("--cert and --key", half.stderr)
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
