"""docs/api.md is executable: its ```sh examples run against a live kekd, and it covers every route
and every error code of the implementation.

The examples are run in order as one `bash -euo pipefail` script with only KEKD_ADDR and
KEKD_TOKEN (the admin credential) set, a key `demo` existing, as the page promises its readers. The
examples check their own results (`jq -e`, `test`), so a wrong answer fails the script. The routes
are read from the route tables in src/api/*.cc and the codes from the one status table in
src/api/errors.cc, so a new route or code cannot stay undocumented.
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import SOURCE_DIR, E2ETest  # noqa: E402

API_MD = os.path.join(SOURCE_DIR, "docs", "api.md")
API_SRC = os.path.join(SOURCE_DIR, "src", "api")
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
ALLOWED_FENCES = {"sh", "json", "text"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    """[(language, body)] of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def implemented_routes():
    """{(method, pattern)} from every `{"METHOD", "/path", Access::...}` route entry in src/api."""
    routes = set()
    for name in sorted(os.listdir(API_SRC)):
        if not name.endswith(".cc"):
            continue
        text = read(os.path.join(API_SRC, name))
        for method, pattern in re.findall(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,\s*Access::', text):
            routes.add((method, pattern))
    return routes


def code_names():
    """{"kInvalidArgument": "invalid_argument", ...} from code_name() in src/common/error.cc."""
    text = read(os.path.join(SOURCE_DIR, "src", "common", "error.cc"))
    return dict(re.findall(r'case Code::(k\w+):\s*return "([a-z_]+)";', text))


def status_table():
    """{"kInvalidArgument": 400, ...}: the native status of each code in faces(), the one error
    table of src/api/errors.cc (each row is {native status, KMS type, KMS status})."""
    text = read(os.path.join(API_SRC, "errors.cc"))
    body = re.search(r"ErrorFaces faces\(Code code\) \{(.*?)\n\}", text, re.S).group(1)
    table, pending = {}, []
    for token in re.finditer(r"case Code::(k\w+):|return \{(\d{3}),", body):
        if token.group(1):
            pending.append(token.group(1))
        else:
            for code in pending:
                table[code] = int(token.group(2))
            pending = []
    return table


class ApiDocsCoverage(unittest.TestCase):
    """Static checks: no deployment needed."""

    def setUp(self):
        self.doc = read(API_MD)

    def test_fences_are_sh_json_or_text(self):
        blocks = fenced_blocks(self.doc)
        self.assertGreater(len(blocks), 20)
        for language, body in blocks:
            self.assertIn(language, ALLOWED_FENCES,
                          f"a ```{language} block is neither run (sh) nor marked as output:\n{body[:200]}")

    def test_every_route_is_documented(self):
        routes = implemented_routes()
        self.assertGreaterEqual(len(routes), 20, routes)  # the parser still finds the tables
        for method, pattern in sorted(routes):
            self.assertTrue(f"`{method} {pattern}`" in self.doc, f"{method} {pattern} is not in docs/api.md")
        # and every endpoint heading of the page is implemented, or says it is planned
        for heading in re.findall(r"^#### (.*)$", self.doc, re.M):
            m = re.match(r"`([A-Z]+) (/[^`]*)`(.*)", heading)
            self.assertIsNotNone(m, heading)
            if (m.group(1), m.group(2)) not in routes:
                self.assertIn("planned", m.group(3), f"{heading}: not implemented and not marked planned")

    def test_every_error_code_is_documented_with_its_status(self):
        names, statuses = code_names(), status_table()
        self.assertGreaterEqual(len(statuses), 16, statuses)
        self.assertEqual(set(statuses), set(names), "errors.cc and error.cc disagree on the codes")
        for code, status in sorted(statuses.items()):
            name = names[code]
            row = re.search(r"^\| `" + re.escape(name) + r"` \| (\d{3}) \|", self.doc, re.M)
            self.assertIsNotNone(row, f"error code {name} has no row in the table of docs/api.md")
            self.assertEqual(int(row.group(1)), status, f"docs/api.md gives {name} another status than errors.cc")


class ApiDocsExamples(E2ETest):
    def test_sh_examples_run_in_order_against_a_live_kekd(self):
        blocks = [body for language, body in fenced_blocks(read(API_MD)) if language == "sh"]
        self.assertGreater(len(blocks), 15)
        d = self.deployment().start()
        d.ceremony("create-key", "demo")
        workdir = tempfile.mkdtemp(dir=d.dir)
        script = os.path.join(workdir, "api-examples.sh")
        with open(script, "w") as f:
            for i, body in enumerate(blocks, 1):
                f.write(f"# --- block {i}\n{body}\n")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LC_ALL": "C.UTF-8",
               "KEKD_ADDR": d.addr, "KEKD_TOKEN": d.admin_token}
        result = subprocess.run(["bash", "-xeuo", "pipefail", script], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            trace = "\n".join(result.stderr.splitlines()[-60:])
            self.fail(f"the examples of docs/api.md failed ({result.returncode}); last lines of the trace:\n"
                      f"{trace}\n--- stdout (end):\n{result.stdout[-2000:]}")
        # the examples did what they say: one client left (the one made first), a cancelled ceremony
        clients = d.admin("GET", "/v1/clients").json()["clients"]
        self.assertEqual(sorted(c["admin"] for c in clients), [False, True])
        cancelled = d.admin("GET", "/v1/ceremonies?state=cancelled").json()["ceremonies"]
        self.assertEqual([c["action"] for c in cancelled], ["rotate-key"])
        self.assertEqual(d.get("/v1/health").status, 200)


if __name__ == "__main__":
    unittest.main()
