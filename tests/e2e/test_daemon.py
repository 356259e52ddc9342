"""The daemon itself: health, readiness, metrics, errors, limits, start-up checks, SIGTERM."""
import http.client
import json
import os
import socket
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, KEKD_BIN, run  # noqa: E402


def cpu_list(cpus):
    """A CPU list as the kernel writes one in Cpus_allowed_list: "0-3,6"."""
    runs = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class Daemon(E2ETest):
    def test_health_ready_and_metrics(self):
        d = self.deployment().start()
        self.assertEqual(d.get("/v1/health").json(), {"status": "ok"})
        ready = d.get("/v1/ready")
        self.assertEqual(ready.status, 200)
        self.assertEqual(ready.json()["ready"], True)
        d.script("propose.sh", "create-key", "demo")
        metrics = d.get("/metrics")
        self.assertEqual(metrics.status, 200)
        self.assertIn('kekd_http_requests_total{route="/v1/ready",method="GET",status="200"}', metrics.body)
        self.assertIn("kekd_http_request_duration_seconds_bucket", metrics.body)
        self.assertIn("kekd_open_ceremonies 1", metrics.body)
        self.assertIn('kekd_hsm_operations_total{operation="random",outcome="ok"}', metrics.body)

    def test_io_threads_default_to_one_per_four_cpus_and_follow_the_setting(self):
        def io_threads(d):
            task = f"/proc/{d.proc.pid}/task"
            names = []
            for tid in os.listdir(task):
                with open(os.path.join(task, tid, "comm")) as f:
                    names.append(f.read().strip())
            return names.count("kekd-io"), names.count("kekd-worker")

        d = self.deployment().start()
        expected = max(1, (os.cpu_count() or 1) // 4)
        self.assertEqual(io_threads(d), (expected, 4))  # sessions = 4, workers = sessions
        self.assertIn(f"{expected} I/O threads, 4 workers", d.read_log())
        d.stop()
        with open(os.path.join(d.dir, "kekd.toml")) as f:
            toml = f.read()
        with open(os.path.join(d.dir, "kekd.toml"), "w") as f:
            f.write(toml.replace("[server]\n", "[server]\nio_threads = 3\n", 1))
        d.start()
        self.assertEqual(io_threads(d), (3, 4))
        self.assertEqual(d.get("/v1/health").json(), {"status": "ok"})

    def test_worker_cpus_confine_the_workers_and_nothing_else(self):
        def cpus_by_thread(d):
            task = f"/proc/{d.proc.pid}/task"
            found = {}
            for tid in os.listdir(task):
                with open(os.path.join(task, tid, "comm")) as f:
                    name = f.read().strip()
                with open(os.path.join(task, tid, "status")) as f:
                    allowed = next(line.split(":")[1].strip() for line in f
                                   if line.startswith("Cpus_allowed_list:"))
                found.setdefault(name, set()).add(allowed)
            return found

        allowed = sorted(os.sched_getaffinity(0))
        own = cpu_list(allowed)
        cpu = allowed[-1]
        d = self.deployment()
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", f"[server]\nworker_cpus = [{cpu}]\n", 1))
        d.start()
        found = cpus_by_thread(d)
        self.assertEqual(found.pop("kekd-worker"), {str(cpu)})  # all 4 workers
        self.assertEqual(found.pop("kekd-io"), {own})
        self.assertEqual(found.pop("kekd-audit"), {own})
        self.assertIn(f"4 workers on CPUs {cpu};", d.read_log())
        # The workers still do their work: a key made by a ceremony, a wrap and an unwrap.
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ["wrap", "unwrap"]}])
        wrapped = d.request("POST", "/v1/keys/demo/wrap", {"plaintext": "AAAA"}, token=token)
        self.assertEqual(wrapped.status, 200, wrapped.body)
        unwrapped = d.request("POST", "/v1/keys/demo/unwrap",
                              {"ciphertext": wrapped.json()["ciphertext"]}, token=token)
        self.assertEqual(unwrapped.json()["plaintext"], "AAAA", unwrapped.body)
        d.stop()

        # A CPU this process may not run on: kekd refuses to start, and says which it may.
        missing = next(n for n in range(1024) if n not in allowed)
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", f"[server]\nworker_cpus = [{cpu}, {missing}]\n", 1))
        result = run([KEKD_BIN, "serve", "--config", config], env=d.env, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"server.worker_cpus: CPU {missing} is not one kekd may run on ({own})",
                      result.stderr)

    def test_every_response_has_request_id_and_errors_are_json(self):
        d = self.deployment().start()
        ids = set()
        for response, status, code in [
            (d.get("/v1/nope"), 404, "not_found"),
            (d.request("DELETE", "/v1/health"), 405, "method_not_allowed"),
            (d.get("/v1/keys"), 401, "unauthenticated"),
            (d.request("POST", "/v1/ceremonies", raw=b"x" * (2 * 1024 * 1024), token=d.admin_token), 413,
             "payload_too_large"),
            (d.admin("POST", "/v1/ceremonies", {"action": "create-key", "key": "demo", "typo": 1}), 400,
             "invalid_argument"),
        ]:
            self.assertError(response, status, code)
            ids.add(response.headers["X-Request-Id"])
        self.assertEqual(len(ids), 5)
        self.assertIn("X-Request-Id", d.get("/v1/health").headers)
        self.assertEqual(d.get("/v1/health").status, 200)  # still healthy afterwards

    def test_sigterm_during_traffic_completes_in_flight_requests_and_exits_zero(self):
        d = self.deployment().start()
        results = {"ok": 0, "bad": [], "refused": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                    for _ in range(50):
                        conn.request("GET", "/v1/audit/public-key",
                                     headers={"Authorization": f"Bearer {d.admin_token}"})
                        response = conn.getresponse()
                        body = response.read()
                        with lock:
                            if response.status == 200 and body.startswith(b"-----BEGIN PUBLIC KEY-----"):
                                results["ok"] += 1
                            else:
                                results["bad"].append((response.status, body[:200]))
                    conn.close()
                except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected,
                        BrokenPipeError):
                    # Not accepted, or a keep-alive connection closed between requests: nothing
                    # was answered, nothing was lost.
                    with lock:
                        results["refused"] += 1
                    time.sleep(0.01)
                except Exception as e:  # a timeout means a request was accepted and never answered
                    with lock:
                        results["bad"].append(repr(e))

        # Many more clients than workers: the worker queue is never empty, so requests are
        # certainly in flight when the signal arrives.
        threads = [threading.Thread(target=client) for _ in range(32)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        started = time.time()
        code = d.stop(signal.SIGTERM)
        # Well inside the 15 s drain timeout: every in-flight request was answered and counted.
        self.assertLess(time.time() - started, 5.0, d.read_log())
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(code, 0, d.read_log())
        self.assertEqual(results["bad"], [])
        self.assertGreater(results["ok"], 100)
        self.assertIn("draining", d.read_log())

    def test_tls_serves_https_and_refuses_plain_http(self):
        d = self.deployment()
        cert, key = os.path.join(d.dir, "cert.pem"), os.path.join(d.dir, "key.pem")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"])
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'))
        d.start(wait=False)
        d.wait_listening()
        url = f"https://127.0.0.1:{d.port}/v1/health"
        ok = run(["curl", "-fsS", "--max-time", "10", "--cacert", cert, url], check=False)
        self.assertEqual(json.loads(ok.stdout), {"status": "ok"}, d.read_log())
        plain = run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{d.port}/v1/health"], check=False)
        self.assertNotEqual(plain.returncode, 0)
        untrusted = run(["curl", "-sS", "--max-time", "5", url], check=False)  # no CA: refused
        self.assertNotEqual(untrusted.returncode, 0)
        self.assertEqual(d.stop(), 0)

    def test_idle_and_slow_connections_are_closed_by_their_timeouts(self):
        d = self.deployment()
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", '[server]\nidle_timeout = "1s"\nread_timeout = "1s"\n'))
        d.start()

        def closed_within(sock, seconds):
            sock.settimeout(seconds)
            try:
                while sock.recv(4096):
                    pass
                return True
            except socket.timeout:
                return False
            finally:
                sock.close()

        never_used = socket.create_connection(("127.0.0.1", d.port))
        used = socket.create_connection(("127.0.0.1", d.port))
        used.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", used.recv(4096))
        slow = socket.create_connection(("127.0.0.1", d.port))
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHo")  # and never the rest
        started = time.monotonic()
        for name, sock in (("never used", never_used), ("idle keep-alive", used), ("slow headers", slow)):
            self.assertTrue(closed_within(sock, 5), name)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(d.get("/v1/health").status, 200)
        self.assertEqual(d.stop(), 0)

    def test_init_refuses_an_initialised_token(self):
        d = self.deployment()
        result = run([KEKD_BIN, "init", "--config", os.path.join(d.dir, "kekd.toml"), "--operators",
                      os.path.join(d.dir, "operators.toml"), "--threshold", "2", "--admin-credential-out",
                      os.path.join(d.dir, "second.token")], env=d.env, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("initialised already", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(d.dir, "second.token")))
        self.assertEqual(oct(os.stat(d.admin_file).st_mode & 0o777), "0o600")

    def test_wrong_pin_is_reported_and_not_retried(self):
        d = self.deployment()
        with open(d.pin_file) as f:
            good = f.read()
        with open(d.pin_file, "w") as f:
            f.write("0000")
        d.start(wait=False)
        code = d.proc.wait(timeout=10)
        d.proc = None
        d.log.close()
        self.assertNotEqual(code, 0)
        self.assertIn("pin_incorrect", d.read_log())
        self.assertEqual(d.read_log().count("C_Login"), 1)
        with open(d.pin_file, "w") as f:
            f.write(good)
        d.start()  # the token is not locked
        self.assertEqual(d.get("/v1/health").status, 200)

    def test_config_refuses_plaintext_on_non_loopback_and_unknown_keys(self):
        d = self.deployment()
        config = os.path.join(d.dir, "kekd.toml")
        with open(config) as f:
            text = f.read()
        for bad, message in [(text.replace("127.0.0.1", "0.0.0.0"), "without TLS"),
                             (text + "\n[hsm2]\nx = 1\n", "unknown key"),
                             (text.replace('ttl = "24h"', 'ttl = "soon"'), "duration")]:
            with open(config, "w") as f:
                f.write(bad)
            result = run([KEKD_BIN, "serve", "--config", config], env=d.env, check=False)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(message, result.stderr)


if __name__ == "__main__":
    unittest.main()
