"""Secret hygiene (issue 8, part 5; docs/secret-hygiene.md).

kekd runs at debug level with the PIN from a file and, in a second run, from the environment.
Every secret the test uses is known: the PIN, the admin credential and two client secrets made
through the API, a wrong secret sent on purpose, and DEKs wrapped, unwrapped, rewrapped and made
through the native API and the AWS KMS API (boto3). Errors are provoked: wrong and unknown
credentials, bad bodies carrying a DEK, a native token sent to the KMS endpoint, a wrong PIN at
start. Then every place kekd writes or shows is searched for every secret, raw, base64 and hex:
the logs, `kekd init`'s output, every error answer, the SQLite store (db, -wal, -shm), the audit
export, the token directory, /proc/<pid>/cmdline and /proc/<pid>/environ (which must no longer
hold the PIN once it was read from the environment). Last, kekd's live memory is read as root
(/proc/<pid>/maps and /proc/<pid>/mem): no DEK and no client secret may be left anywhere in it
once the requests are answered. The PIN is exempt there alone: kekd keeps it, on Botan's locked
pages, to log in again after the token comes back.
"""
import base64
import glob
import os
import re
import sys
import time
import unittest
from unittest import mock

import botocore.exceptions

sys.path.insert(0, os.path.dirname(__file__))
import kekd_e2e  # noqa: E402
from kekd_e2e import KEKD_BIN, Deployment, E2ETest  # noqa: E402
from kms_e2e import ALL, b64, kms_client, send, sign_kms, split_token  # noqa: E402

PIN_VARIABLE = "KEKD_SECRET_HYGIENE_PIN"


def forms(secret):
    """The ways a secret could be written down: raw, base64 (standard and URL-safe, without the
    padding, which depends on nothing secret) and hex (both cases)."""
    raw = secret if isinstance(secret, bytes) else secret.encode()
    found = {raw, base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"="),
             raw.hex().encode(), raw.hex().upper().encode()}
    return [f for f in found if len(f) >= 8]


class Secrets:
    """Every secret of the test, by name."""

    def __init__(self):
        self.items = []

    def add(self, name, value, in_memory=True):
        self.items.append((name, value if isinstance(value, bytes) else value.encode(), in_memory))
        return value

    def needles(self, memory=False):
        return [(name, f) for name, value, in_memory in self.items if in_memory or not memory
                for f in forms(value)]

    def found_in(self, data, memory=False):
        return sorted({name for name, needle in self.needles(memory) if needle in data})


def process_memory(pid):
    """(name, start, bytes) of every region of the process that can hold data it wrote: readable
    and either anonymous or private and writable. Read-only file mappings are the files' own
    bytes; [vvar], [vvar_vclock] and [vsyscall] are the kernel's."""
    regions = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            perms = fields[1]
            name = fields[5].strip() if len(fields) > 5 else "[anonymous]"
            if perms[0] != "r" or name.startswith("[vvar") or name == "[vsyscall]":
                continue
            if name.startswith("/") and "w" not in perms:
                continue
            mem.seek(start)
            try:
                regions.append((name, start, mem.read(end - start)))
            except OSError as e:
                raise AssertionError(f"cannot read {line.strip()}: {e}")
    return regions


class SecretHygiene(E2ETest):
    maxDiff = None

    def setUp(self):
        self.secrets = Secrets()
        # Deployment() runs `kekd init`; its output is kept to be searched too.
        self.init_outputs = []
        real_run = kekd_e2e.run

        def recording_run(cmd, **kwargs):
            result = real_run(cmd, **kwargs)
            if cmd and cmd[0] == KEKD_BIN:
                self.init_outputs.append(result.stdout + result.stderr)
            return result

        with mock.patch.object(kekd_e2e, "run", recording_run):
            self.d = self.deployment()
        self.assertTrue(self.init_outputs, "kekd init was not run")
        with open(self.d.pin_file) as f:
            self.pin = self.secrets.add("PIN", f.read().strip(), in_memory=False)
        self.secrets.add("admin secret", split_token(self.d.admin_token)[1])
        self.answers = []  # every error answer kekd gave, searched at the end

    # --- helpers --------------------------------------------------------------------------------
    def native(self, method, path, body=None, token=None, raw=None, headers=None):
        response = self.d.request(method, path, body=body, token=token, raw=raw, headers=headers)
        if response.status >= 300:  # an answer that succeeds carries its DEK by design
            self.answers.append(response.body)
        return response

    def new_client(self, name):
        # The one answer that shows a secret, once, by design: its own, and no other.
        response = self.d.request("POST", "/v1/clients", {"grants": [{"key": "*", "operations": ALL}]},
                                  token=self.d.admin_token)
        self.assertEqual(response.status, 201, response.body)
        self.assert_clean("the answer that creates a client", response.body.encode())
        token = response.json()["token"]
        self.secrets.add(name, split_token(token)[1])
        return token

    def dek(self, name, size):
        return self.secrets.add(name, os.urandom(size))

    def use_native_api(self, token, tag):
        """Wraps, unwraps, rewraps and makes data keys; provokes the errors that carry a DEK."""
        ciphertexts = []
        for size in (16, 32, 300):  # 300: past the 256 bytes that Botan keeps on locked pages
            dek = self.dek(f"{tag} native DEK {size}", size)
            wrapped = self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(dek), "context": {"t": "1"}},
                                  token=token)
            self.assertEqual(wrapped.status, 200, wrapped.body)
            ciphertext = wrapped.json()["ciphertext"]
            opened = self.native("POST", "/v1/keys/demo/unwrap", {"ciphertext": ciphertext, "context": {"t": "1"}},
                                 token=token)
            self.assertEqual(opened.json()["plaintext"], b64(dek), opened.body)
            rewrapped = self.native("POST", "/v1/keys/demo/rewrap", {"ciphertext": ciphertext, "context": {"t": "1"}},
                                    token=token)
            self.assertEqual(rewrapped.status, 200, rewrapped.body)
            ciphertexts.append(ciphertext)
        made = self.native("POST", "/v1/keys/demo/datakey", {"bytes": 32}, token=token)
        self.assertEqual(made.status, 200, made.body)
        self.secrets.add(f"{tag} native data key", base64.b64decode(made.json()["plaintext"]))
        batch_deks = [self.dek(f"{tag} batch DEK {i}", 32) for i in range(3)]
        batch = self.native("POST", "/v1/keys/demo/wrap", {"items": [{"plaintext": b64(k)} for k in batch_deks]},
                            token=token)
        self.assertEqual(batch.status, 200, batch.body)
        batch_open = self.native("POST", "/v1/keys/demo/unwrap",
                                 {"items": [{"ciphertext": i["ciphertext"]} for i in batch.json()["items"]]},
                                 token=token)
        self.assertEqual([i["plaintext"] for i in batch_open.json()["items"]], [b64(k) for k in batch_deks])

        # Refusals whose request carries a DEK: an unknown member, a key without a grant, a body
        # that is not JSON, a DEK too long, a wrong context on unwrap.
        refused = self.dek(f"{tag} refused DEK", 32)
        self.assertEqual(self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(refused), "contxt": {}},
                                     token=token).status, 400)
        self.assertEqual(self.native("POST", "/v1/keys/nokey/wrap", {"plaintext": b64(refused)},
                                     token=token).status, 404)
        broken = ('{"plaintext": "' + b64(refused) + '", ').encode()
        self.assertEqual(self.native("POST", "/v1/keys/demo/wrap", raw=broken, token=token).status, 400)
        too_long = self.dek(f"{tag} too long DEK", 4097)
        self.assertEqual(self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(too_long)},
                                     token=token).status, 400)
        self.assertEqual(self.native("POST", "/v1/keys/demo/unwrap", {"ciphertext": ciphertexts[0],
                                                                      "context": {"t": "2"}},
                                     token=token).status, 400)
        # Credentials that are wrong: a wrong secret for a real client, an unknown client.
        client_id = split_token(token)[0]
        wrong = self.secrets.add(f"{tag} wrong secret", b64(os.urandom(32)).rstrip("=").replace("+", "-").replace("/", "_"))
        self.assertEqual(self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(refused)},
                                     token=f"{client_id}.{wrong}").status, 401)
        self.assertEqual(self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(refused)},
                                     token=f"cli_00000000000000000000.{wrong}").status, 401)

    def use_kms_api(self, token, tag):
        kms = kms_client(self.d, token)
        self.addCleanup(kms.close)
        for size in (16, 32, 300):
            dek = self.dek(f"{tag} KMS DEK {size}", size)
            blob = kms.encrypt(KeyId="alias/demo", Plaintext=dek, EncryptionContext={"t": "1"})["CiphertextBlob"]
            self.assertEqual(kms.decrypt(CiphertextBlob=blob, EncryptionContext={"t": "1"})["Plaintext"], dek)
            moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"t": "1"},
                                   DestinationKeyId="alias/other")["CiphertextBlob"]
            self.assertEqual(kms.decrypt(CiphertextBlob=moved)["Plaintext"], dek)
        made = kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_256")
        self.secrets.add(f"{tag} KMS data key", made["Plaintext"])
        self.assertEqual(kms.decrypt(CiphertextBlob=made["CiphertextBlob"])["Plaintext"], made["Plaintext"])
        with self.assertRaises(botocore.exceptions.ClientError):
            kms.encrypt(KeyId="alias/nokey", Plaintext=self.dek(f"{tag} KMS refused DEK", 32))

        # Signed with a wrong secret, and a native bearer token sent to the KMS endpoint.
        access_key = split_token(token)[0]
        wrong = self.secrets.add(f"{tag} KMS wrong secret", b64(os.urandom(32)))
        body = {"KeyId": "alias/demo", "Plaintext": b64(self.dek(f"{tag} KMS forged DEK", 32))}
        answer = send(*sign_kms(self.d.addr, "Encrypt", body, access_key, wrong))
        self.answers.append(answer.body)
        self.assertEqual(answer.status, 400, answer.body)
        url, headers, data = sign_kms(self.d.addr, "Encrypt", body, access_key, wrong)
        headers["Authorization"] = f"Bearer {token}"
        answer = send(url, headers, data)
        self.answers.append(answer.body)
        self.assertEqual(answer.status, 400, answer.body)

    def assert_clean(self, what, data, memory=False):
        self.assertEqual(self.secrets.found_in(data, memory), [], f"secrets in {what}")

    def assert_files_clean(self, running):
        """The log, the store's files, the token's files, kekd init's output and every error; with
        kekd running, also the audit export (and the store has its -wal and -shm then)."""
        paths = [self.d.log_path]
        store = glob.glob(os.path.join(self.d.dir, "var", "*"))
        self.assertIn(os.path.join(self.d.dir, "var", "kekd.db"), store)
        if running:
            self.assertIn(os.path.join(self.d.dir, "var", "kekd.db-wal"), store)
            self.assertIn(os.path.join(self.d.dir, "var", "kekd.db-shm"), store)
            export = os.path.join(self.d.dir, f"audit-{len(self.answers)}.jsonl")
            self.d.kekctl("audit", "export", "--out", export)
            with open(export) as f:
                self.assertIn('"key.unwrap"', f.read())
            paths.append(export)
        paths += store
        paths += [p for p in glob.glob(os.path.join(self.d.dir, "token", "tokens", "**"), recursive=True)
                  if os.path.isfile(p)]
        for path in paths:
            with open(path, "rb") as f:
                self.assert_clean(path, f.read())
        for i, output in enumerate(self.init_outputs):
            self.assert_clean(f"kekd init output {i}", output.encode())
        self.assertGreaterEqual(len(self.answers), 9)
        for i, body in enumerate(self.answers):
            self.assert_clean(f"answer {i}: {body[:200]}", body.encode())

    def assert_process_clean(self, pid, pin_from_environment):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assert_clean("/proc/<pid>/cmdline", f.read())
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        self.assert_clean("/proc/<pid>/environ", environ)
        if pin_from_environment:
            # The variable was there at start (its name still is); its value is gone.
            self.assertIn(PIN_VARIABLE.encode() + b"=", environ)
        # No core file of kekd's memory can be written: RLIMIT_CORE is 0, soft and hard (with
        # PR_SET_DUMPABLE 0, src/daemon/process_memory.cc).
        with open(f"/proc/{pid}/limits") as f:
            core = [line.split() for line in f if line.startswith("Max core file size")]
        self.assertEqual(len(core), 1)
        self.assertEqual(core[0][4:6], ["0", "0"], f"kekd's core file limit: {core[0]}")
        # kekd's own memory, read as root: no DEK and no client secret anywhere. A worker may still
        # be returning from the last request when its answer arrives here (the answer is sent from
        # within the handler; the request's own copy is released after it returns): let it finish.
        time.sleep(1)
        regions = process_memory(pid)
        self.assertGreater(sum(len(data) for _, _, data in regions), 1 << 20)
        left = []
        for name, start, data in regions:
            for secret in self.secrets.found_in(data, memory=True):
                for _, needle in [(n, f) for n, f in self.secrets.needles(memory=True) if n == secret]:
                    for m in re.finditer(re.escape(needle), data):
                        left.append(f"{secret} in {name} at {start + m.start():#x}")
        self.assertEqual(left, [], "secrets left in kekd's memory")
        # The control: the PIN, which kekd keeps to log in again, is found by the same search.
        pin = self.pin.encode()
        self.assertTrue(any(pin in data for _, _, data in regions), "the memory search finds nothing")

    def run_everything(self, tag):
        native_token = self.new_client(f"{tag} native client secret")
        kms_token = self.new_client(f"{tag} KMS client secret")
        self.use_native_api(native_token, tag)
        self.use_kms_api(kms_token, tag)
        # The admin credential in use, and the audit read through the API.
        self.assertEqual(self.native("GET", "/v1/audit?limit=5", token=self.d.admin_token).status, 200)
        # Last, DEKs again, more requests than kekd has workers: the last thing every worker did
        # was to handle a DEK, so no later request overwrote what it left on its stack.
        for i in range(12):
            dek = self.dek(f"{tag} last DEK {i}", 32)
            wrapped = self.native("POST", "/v1/keys/demo/wrap", {"plaintext": b64(dek)}, token=native_token)
            opened = self.native("POST", "/v1/keys/demo/unwrap", {"ciphertext": wrapped.json()["ciphertext"]},
                                 token=native_token)
            self.assertEqual(opened.json()["plaintext"], b64(dek))

    def test_no_secret_in_logs_store_answers_proc_or_memory(self):
        config = os.path.join(self.d.dir, "kekd.toml")
        with open(config) as f:
            original = f.read().replace('level = "debug"', 'level = "trace"')  # the most verbose
        self.assertIn('level = "trace"', original)
        with open(config, "w") as f:
            f.write(original)
        self.d.start()
        self.d.ceremony("create-key", "demo")
        self.d.ceremony("create-key", "other")
        self.run_everything("file PIN")
        self.assert_process_clean(self.d.proc.pid, pin_from_environment=False)
        self.assert_files_clean(running=True)
        self.assertEqual(self.d.stop(), 0)

        # A wrong PIN at start: kekd refuses to serve, and says so without quoting either PIN.
        wrong_pin = self.secrets.add("wrong PIN", os.urandom(16).hex(), in_memory=False)
        wrong_pin_file = os.path.join(self.d.dir, "token", "wrong-pin")
        with os.fdopen(os.open(wrong_pin_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(wrong_pin)
        self.assertIn('pin_file = "token/pin"', original)
        with open(config, "w") as f:
            f.write(original.replace('pin_file = "token/pin"', 'pin_file = "token/wrong-pin"'))
        self.d.start(wait=False)
        self.assertNotEqual(self.d.proc.wait(timeout=30), 0)
        self.d.stop()
        self.assertIn("PIN", self.d.read_log()[self.d.log_start:])
        # kekd init with the wrong PIN says so too, without quoting it.
        init = kekd_e2e.run([KEKD_BIN, "init", "--config", config, "--operators",
                             os.path.join(self.d.dir, "operators.toml"), "--threshold", "2",
                             "--admin-credential-out", os.path.join(self.d.dir, "second-admin.token")],
                            env=self.d.env, check=False)
        self.assertNotEqual(init.returncode, 0)
        self.assertIn("PIN", init.stdout + init.stderr)
        self.init_outputs.append(init.stdout + init.stderr)

        # The PIN from the environment: gone from /proc/<pid>/environ once read.
        with open(config, "w") as f:
            f.write(original.replace('pin_file = "token/pin"', f'pin_env = "{PIN_VARIABLE}"'))
        self.d.start(env_extra={PIN_VARIABLE: self.pin})
        self.run_everything("environment PIN")
        self.assert_process_clean(self.d.proc.pid, pin_from_environment=True)
        self.assert_files_clean(running=True)
        self.assertEqual(self.d.stop(), 0)
        self.assert_files_clean(running=False)


if __name__ == "__main__":
    unittest.main()
