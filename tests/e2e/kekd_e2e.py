"""End-to-end harness: a real kekd binary, a fresh SoftHSM token, real operator keys.

Every test gets its own directory with its own token (scripts/softhsm-token.sh), operator keys
made with openssl, a kekd.toml, `kekd init`, and `kekd serve` on a free loopback port. Nothing is
faked: requests go over HTTP, signatures are made by the openssl CLI, and the token is inspected
with python3-pykcs11 (tests/integration/pkcs11_helper.py).
"""
import faulthandler
import json
import os
import shutil
import signal
import re
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

SOURCE_DIR = os.environ.get("KEKD_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
KEKD_BIN = os.environ.get("KEKD_BIN", os.path.join(SOURCE_DIR, "build", "kekd"))
KEKCTL_BIN = os.environ.get("KEKCTL_BIN", os.path.join(SOURCE_DIR, "build", "kekctl"))
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
CEREMONY = os.path.join(SOURCE_DIR, "scripts", "ceremony")
PKCS11_HELPER = os.path.join(SOURCE_DIR, "tests", "integration", "pkcs11_helper.py")

# ctest kills a test file at 600 s (tests/CMakeLists.txt) and shows nothing of where it was stuck.
# Every file imports this module: a little before then, print every thread's stack and exit 1, so
# that a hang fails with the line it hung on.
faulthandler.dump_traceback_later(float(os.environ.get("KEKD_E2E_WATCHDOG", "540")), exit=True)


def run(cmd, env=None, check=True, input=None):
    result = subprocess.run(cmd, env=env, input=input, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Response:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):
        return json.loads(self.body)


class Deployment:
    """One kekd deployment in a temporary directory."""

    def __init__(self, operators=("alice", "bob", "carol"), ecdsa=(), threshold=2, ttl="24h", extra_toml=""):
        self.dir = tempfile.mkdtemp(prefix="kekd-e2e-")
        # kekd listens on port 0 and the port is read from its log after each start: picking a free
        # port here and handing it over would race with every other test running in parallel.
        self.port = None
        self.addr = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "kekd.log")
        run(["bash", os.path.join(SOURCE_DIR, "scripts", "softhsm-token.sh"), os.path.join(self.dir, "token"), "kekd"])
        self.env = dict(os.environ, SOFTHSM2_CONF=os.path.join(self.dir, "token", "softhsm2.conf"))
        self.pin_file = os.path.join(self.dir, "token", "pin")
        self.keys_dir = os.path.join(self.dir, "operators")
        os.makedirs(self.keys_dir)
        self.operator_keys = {}
        for name in operators:
            self.make_operator_key(name, name in ecdsa)
        with open(os.path.join(self.dir, "operators.toml"), "w") as f:
            for name in operators:
                f.write(f'[[operator]]\nname = "{name}"\npublic_key = "operators/{name}.pub.pem"\n\n')
        with open(os.path.join(self.dir, "kekd.toml"), "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:0"
[hsm]
module = "{SOFTHSM}"
token_label = "kekd"
pin_file = "token/pin"
sessions = 4
[store]
path = "var/kekd.db"
[ceremony]
ttl = "{ttl}"
min_destroy_delay = "1s"
[log]
level = "debug"
{extra_toml}""")
        self.admin_file = os.path.join(self.dir, "admin.token")
        run([KEKD_BIN, "init", "--config", os.path.join(self.dir, "kekd.toml"), "--operators",
             os.path.join(self.dir, "operators.toml"), "--threshold", str(threshold),
             "--admin-credential-out", self.admin_file], env=self.env)
        with open(self.admin_file) as f:
            self.admin_token = f.read().strip()

    def make_operator_key(self, name, ecdsa=False):
        key = os.path.join(self.keys_dir, f"{name}.key")
        pub = os.path.join(self.keys_dir, f"{name}.pub.pem")
        if ecdsa:
            run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
        else:
            run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key])
        run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub])
        self.operator_keys[name] = (key, pub)
        return key, pub

    # --- the daemon ---------------------------------------------------------------------------
    def start(self, env_extra=None, wait=True):
        env = dict(self.env, **(env_extra or {}))
        self.log_start = len(self.read_log()) if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([KEKD_BIN, "serve", "--config", os.path.join(self.dir, "kekd.toml")],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_listening(self, timeout=15):
        """Waits for this start's "serving on" line and takes the port from it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kekd exited with {self.proc.returncode}:\n{self.read_log()}")
            found = re.findall(r"serving on (https?)://127\.0\.0\.1:(\d+)", self.read_log()[self.log_start:])
            if found:
                scheme, port = found[-1]
                self.port = int(port)
                self.addr = f"{scheme}://127.0.0.1:{self.port}"
                return
            time.sleep(0.05)
        raise AssertionError("kekd did not start listening:\n" + self.read_log())

    def wait_ready(self, timeout=15):
        self.wait_listening(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kekd exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                if self.get("/v1/ready").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("kekd did not become ready:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        self.log.close()
        return code

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    # --- the PKCS#11 shim (tests/pkcs11_shim) ----------------------------------------------------
    @property
    def shim_control(self):
        """The shim's control file: kekd started with KEKD_SHIM_CONTROL set to this path."""
        return os.path.join(self.dir, "shim.control")

    def write_shim_control(self, text):
        """Replaces the shim's control file in one step (rename), as its README asks."""
        with open(self.shim_control + ".new", "w") as f:
            f.write(text)
        os.replace(self.shim_control + ".new", self.shim_control)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- HTTP -----------------------------------------------------------------------------------
    def request(self, method, path, body=None, token=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.addr + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Response(r.status, r.read().decode(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(), dict(e.headers))

    def get(self, path, token=None):
        return self.request("GET", path, token=token)

    def admin(self, method, path, body=None):
        return self.request(method, path, body=body, token=self.admin_token)

    # --- the token, inspected independently -------------------------------------------------------
    def token_labels(self):
        out = run(["/usr/bin/python3", PKCS11_HELPER, "--module", SOFTHSM, "--token-label", "kekd",
                   "--pin-file", self.pin_file, "list-objects"], env=self.env).stdout
        return out

    def check_kek(self, label):
        return run(["/usr/bin/python3", PKCS11_HELPER, "--module", SOFTHSM, "--token-label", "kekd",
                    "--pin-file", self.pin_file, "check-kek", "--label", label], env=self.env, check=False)

    # --- ceremonies through the operator scripts --------------------------------------------------
    def script(self, name, *args, check=True, env_extra=None):
        env = dict(self.env, KEKD_ADDR=self.addr, KEKD_TOKEN=self.admin_token, **(env_extra or {}))
        return run(["bash", os.path.join(CEREMONY, name), *args], env=env, check=check)

    def sign(self, statement_path, operator, key=None):
        key = key or self.operator_keys[operator][0]
        sig = os.path.join(self.dir, f"{operator}-{os.path.basename(statement_path)}.sig")
        self.script("sign.sh", statement_path, key, "--out", sig)
        return sig

    def ceremony(self, *propose_args, approvers=("alice", "bob")):
        """Proposes and approves a ceremony through the scripts; returns its id."""
        ceremony_id = self.script("propose.sh", *propose_args).stdout.strip()
        statement = self.statement(ceremony_id)
        for name in approvers:
            self.script("approve.sh", ceremony_id, name, self.sign(statement, name))
        return ceremony_id

    # --- kekctl -----------------------------------------------------------------------------------
    def kekctl(self, *args, token=None, env_extra=None, input=None, check=True):
        """Runs kekctl against this deployment with the admin token unless told otherwise.

        env_extra values of None remove a variable; bytes as input are sent as they are (stdout and
        stderr are still returned as text)."""
        env = dict(self.env, KEKD_ADDR=self.addr, KEKD_TOKEN=token or self.admin_token)
        for name, value in (env_extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if not isinstance(input, bytes):
            return run([KEKCTL_BIN, *args], env=env, check=check, input=input)
        result = subprocess.run([KEKCTL_BIN, *args], env=env, input=input, capture_output=True, timeout=120)
        result.stdout, result.stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        if check and result.returncode != 0:
            raise AssertionError(f"kekctl {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def client(self, grants):
        """Creates an application client with these grants; returns its bearer token."""
        response = self.admin("POST", "/v1/clients", {"grants": grants})
        assert response.status == 201, response.body
        return response.json()["token"]

    def statement(self, ceremony_id):
        path = os.path.join(self.dir, f"statement-{ceremony_id}.txt")
        self.script("show.sh", ceremony_id, "--out", path)
        return path


class E2ETest(unittest.TestCase):
    """A test case with a deployment that is cleaned up afterwards."""

    def deployment(self, **kwargs):
        d = Deployment(**kwargs)
        self.addCleanup(d.close)
        return d

    def assertError(self, response, status, code):
        self.assertEqual(response.status, status, response.body)
        body = response.json()
        self.assertEqual(body["error"]["code"], code, response.body)
        self.assertTrue(body["error"]["message"])
        self.assertEqual(body["error"]["request_id"], response.headers.get("X-Request-Id"))
