"""scripts/dev.sh, the README's run command: it comes up from nothing, and the commands it prints
for the demo application work when pasted as they are (curl data key and unwrap, kekctl datakey,
seal and open). It runs with the test build (KEKD_DEV_BUILD) in a temporary state directory."""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import KEKD_BIN, SOURCE_DIR  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kekd_env_file():
    """The KEY=value lines of hsm-config/kekd.env."""
    with open(os.path.join(SOURCE_DIR, "hsm-config", "kekd.env")) as f:
        lines = [line.strip() for line in f]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def serve_environment(config):
    """Those variables of kekd.env in the environment of the `kekd serve` process using config."""
    wanted = kekd_env_file()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if b"serve" not in argv or config.encode() not in argv:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        return {k: env.get(k) for k in wanted}
    return None


class DevScript(unittest.TestCase):
    def setUp(self):
        self.var = tempfile.mkdtemp(prefix="kekd-dev-")
        self.addCleanup(shutil.rmtree, self.var, ignore_errors=True)
        self.port = free_port()

    def run_dev(self):
        out_path = os.path.join(self.var, "dev.out")
        # the port is written into kekd.toml on the first run, so a rerun uses the same one
        env = dict(os.environ, KEKD_DEV_VAR=os.path.join(self.var, "var"), KEKD_DEV_PORT=str(self.port),
                   KEKD_DEV_BUILD=os.path.dirname(KEKD_BIN))
        out = open(out_path, "w")
        proc = subprocess.Popen(["bash", os.path.join(SOURCE_DIR, "scripts", "dev.sh")], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        text = ""
        while time.time() < deadline:
            with open(out_path) as f:
                text = f.read()
            if "# --- end ---" in text or proc.poll() is not None:
                break
            time.sleep(0.2)
        return proc, out, text

    def stop(self, proc, out):
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
        out.close()
        return code

    def test_printed_commands_work_as_pasted_and_a_rerun_reuses_the_state(self):
        proc, out, text = self.run_dev()
        try:
            self.assertIn("# --- end ---", text, text)
            block = text.split("# --- try as the demo application ---", 1)[1].split("# --- end ---", 1)[0]
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True,
                                    timeout=120, env=dict(os.environ, PATH="/usr/bin:/bin"))
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("sealed and opened: identical", result.stdout)
            # the AWS CLI's data key through the KMS API, answered with the key's ARN
            self.assertRegex(result.stdout, r'"KeyId": "arn:aws:kms:us-east-1:000000000000:key/[0-9a-f-]{36}"')
            plaintexts = re.findall(r'"plaintext": "([^"]+)"', result.stdout)
            # curl's data key, curl's unwrap of it, kekctl's data key
            self.assertEqual(len(plaintexts), 3, result.stdout)
            self.assertEqual(plaintexts[0], plaintexts[1])
            token_file = os.path.join(self.var, "var", "demo-client.token")
            self.assertEqual(oct(os.stat(token_file).st_mode & 0o777), "0o600")
            with open(token_file) as f:
                first_token = f.read().strip()
            # kekd serve runs in the environment of hsm-config/kekd.env, as a production kekd does
            self.assertEqual(serve_environment(os.path.join(self.var, "var", "kekd.toml")), kekd_env_file())
        finally:
            self.stop(proc, out)
        # A second run reuses the token, the key and the demo client.
        proc, out, text = self.run_dev()
        try:
            self.assertIn("# --- end ---", text, text)
            self.assertNotIn("first run", text)
            with open(token_file) as f:
                self.assertEqual(f.read().strip(), first_token)
        finally:
            self.assertEqual(self.stop(proc, out), 0)


if __name__ == "__main__":
    unittest.main()
