#!/usr/bin/python3
"""Checks libkekd_pkcs11_shim.so through PyKCS11 against a fresh SoftHSM token.

    shim_check.py SHIM_SO [KEKD_HSM_CEILING]

Each scenario runs in its own process (the shim reads its environment once, when loaded) and
asserts what the shim must do: pass calls through (and count them), fail the functions named in
KEKD_SHIM_FAIL with the configured CK_RV, delay those in KEKD_SHIM_DELAY / KEKD_SHIM_HANG, and
follow a control file rewritten while the process runs. Given the ceiling benchmark's path, it
also runs that program through the shim on two threads and checks, from the shim's call counts,
that it makes exactly kekd's calls per wrap.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
import time

import PyKCS11

print = functools.partial(print, flush=True)  # keep our lines in order with the children's

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("KEKD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))

CKR_GENERAL_ERROR = 0x05
CKR_DEVICE_ERROR = 0x30
CKR_DEVICE_REMOVED = 0x32
CKR_PIN_INCORRECT = 0xA0
CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_TOKEN_NOT_PRESENT = 0xE0


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


# --- inside a scenario process ------------------------------------------------------------------

def open_token(shim):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(shim)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == "kekd":
            session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
            with open(os.environ["PIN_FILE"]) as f:
                session.login(f.read().strip())
            return lib, slot, session
    raise CheckFailed("no token labelled kekd through the shim")


def generate_aes(session):
    return session.generateKey([
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
        (PyKCS11.CKA_VALUE_LEN, 32),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_WRAP, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_UNWRAP, PyKCS11.CK_TRUE),
    ], PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN, None))


def expect_ckr(what, call, rv):
    try:
        call()
    except PyKCS11.PyKCS11Error as e:
        expect(e.value == rv, f"{what}: expected CK_RV {rv:#x}, got {e.value:#x}")
        return
    raise CheckFailed(f"{what}: expected CK_RV {rv:#x}, but the call succeeded")


def timed(call, times=1):
    start = time.monotonic()
    for _ in range(times):
        call()
    return time.monotonic() - start


def write_control(path, text, atomically=True):
    # Both ways a test may write the file: rename (new inode) and rewrite in place.
    target = path + ".tmp" if atomically else path
    with open(target, "w") as f:
        f.write(text)
    if atomically:
        os.rename(target, path)
    time.sleep(0.15)  # the shim looks at the file at most every 50 ms


def scenario_passthrough(shim):
    lib, _, s = open_token(shim)
    key = generate_aes(s)
    secret = s.createObject([
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_GENERIC_SECRET),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_VALUE, bytes(range(32))),
    ])
    wrapped = bytes(s.wrapKey(key, secret, PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_PAD, None)))
    expect(len(wrapped) == 40, f"AES key wrap with padding of 32 bytes gave {len(wrapped)} bytes")
    expect(len(s.generateRandom(16)) == 16, "C_GenerateRandom through the shim")
    s.logout()
    s.closeSession()
    lib.lib.Unload()  # C_Finalize: the shim writes KEKD_SHIM_STATS


def scenario_env_fail(shim):
    _, _, s = open_token(shim)  # C_Login and friends are not named, so they pass
    expect_ckr("C_GenerateKey", lambda: generate_aes(s), CKR_DEVICE_ERROR)
    expect_ckr("C_GenerateRandom", lambda: s.generateRandom(16), CKR_DEVICE_REMOVED)
    expect_ckr("C_SeedRandom", lambda: s.seedRandom(b"x" * 16), CKR_SESSION_HANDLE_INVALID)
    s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY)])  # unnamed: passes


def scenario_env_fail_wildcard(shim):
    # `*` fails everything but loading; functions named explicitly take their own rule.
    lib = PyKCS11.PyKCS11Lib()
    lib.load(shim)
    slot = lib.getSlotList(tokenPresent=True)[0]
    expect_ckr("C_GetSlotInfo", lambda: lib.getSlotInfo(slot), CKR_GENERAL_ERROR)
    s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    expect_ckr("C_Login", lambda: s.login("0000"), CKR_PIN_INCORRECT)
    expect_ckr("C_GenerateRandom", lambda: s.generateRandom(16), CKR_GENERAL_ERROR)


def scenario_env_fail_everything(shim):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(shim)  # C_GetFunctionList, C_Initialize: not covered by `*`
    lib.getInfo()
    expect_ckr("C_GetSlotList", lambda: lib.getSlotList(tokenPresent=True), CKR_TOKEN_NOT_PRESENT)


def scenario_delay(shim):
    lib, slot, s = open_token(shim)
    slow = timed(lambda: s.generateRandom(16), 10)
    expect(slow >= 0.5, f"10 calls delayed by 50 ms took only {slow:.3f} s")
    fast = timed(lambda: lib.getTokenInfo(slot), 10)
    expect(fast < 0.25, f"10 undelayed calls took {fast:.3f} s")
    hang = timed(lambda: s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY)]))
    expect(hang >= 0.3, f"C_FindObjectsInit hung for only {hang:.3f} s")
    print(f"delay: 10 x 50 ms = {slow:.3f} s, 10 undelayed = {fast:.3f} s, hang {hang:.3f} s")


def scenario_control(shim):
    control = os.environ["KEKD_SHIM_CONTROL"]
    _, slot, s = open_token(shim)  # the file does not exist yet: only the env rule applies
    generate_aes(s)
    expect_ckr("env rule", lambda: s.seedRandom(b"x" * 16), CKR_GENERAL_ERROR)

    write_control(control, "# a fault, on\nfail C_GenerateKey CKR_DEVICE_ERROR\n")
    expect_ckr("control file fault", lambda: generate_aes(s), CKR_DEVICE_ERROR)
    s.generateRandom(16)  # unnamed: passes

    write_control(control, "# faults off ......................\n", atomically=False)
    generate_aes(s)

    write_control(control, "fail * CKR_DEVICE_ERROR\nfail C_Login CKR_PIN_INCORRECT\n"
                           "delay C_GenerateRandom 50000\n")
    expect_ckr("file `*`", lambda: generate_aes(s), CKR_DEVICE_ERROR)
    expect_ckr("file C_Login", lambda: s.login("0000"), CKR_PIN_INCORRECT)
    took = timed(lambda: expect_ckr("delay then fault", lambda: s.generateRandom(16),
                                    CKR_DEVICE_ERROR))
    expect(took >= 0.05, f"delayed fault came after {took:.3f} s")

    write_control(control, "fail C_SeedRandom none   # overrides the environment\n")
    s.seedRandom(b"x" * 16)
    generate_aes(s)

    write_control(control, "fail_rate C_GenerateRandom CKR_DEVICE_ERROR 0.5\n")
    failures = 0
    for _ in range(200):
        try:
            s.generateRandom(16)
        except PyKCS11.PyKCS11Error as e:
            expect(e.value == CKR_DEVICE_ERROR, f"fail_rate gave {e.value:#x}")
            failures += 1
    expect(40 <= failures <= 160, f"fail_rate 0.5 failed {failures} of 200 calls")

    os.unlink(control)
    time.sleep(0.15)
    generate_aes(s)  # a missing file: no file rules
    expect_ckr("env rule again", lambda: s.seedRandom(b"x" * 16), CKR_GENERAL_ERROR)
    print(f"control: fault on, off, wildcard, override, fail_rate ({failures}/200), removed")


SCENARIOS = {
    "passthrough": scenario_passthrough,
    "env_fail": scenario_env_fail,
    "env_fail_wildcard": scenario_env_fail_wildcard,
    "env_fail_everything": scenario_env_fail_everything,
    "delay": scenario_delay,
    "control": scenario_control,
}


# --- the driver -----------------------------------------------------------------------------------

def run_scenario(name, shim, env, extra):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--scenario", name, shim],
                          env={**env, **extra}, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise CheckFailed(f"scenario {name} failed:\n{proc.stdout}{proc.stderr}")
    print(f"ok   {name} {extra}")
    if proc.stdout.strip():
        print("     " + proc.stdout.strip().replace("\n", "\n     "))


def read_stats(path):
    expect(os.path.exists(path), f"no KEKD_SHIM_STATS file {path}: was the shim loaded at all?")
    stats = {}
    with open(path) as f:
        for line in f:
            name, calls, injected = line.split()
            stats[name] = (int(calls), int(injected))
    return stats


def check_ceiling(ceiling, shim, env, tmp):
    stats_file = os.path.join(tmp, "ceiling.stats")
    command = [ceiling, "--module", shim, "--pin-file", env["PIN_FILE"], "--seconds", "0.5",
               "--threads", "2", "--ops", "wrap"]
    proc = subprocess.run(command, env={**env, "KEKD_SHIM_STATS": stats_file},
                          capture_output=True, text=True, timeout=120)
    expect(proc.returncode == 0, f"ceiling through the shim failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.splitlines()[0])
    expect(result["op"] == "wrap" and result["threads"] == 2 and result["ops"] > 0,
           f"unexpected ceiling output {proc.stdout}")
    stats = read_stats(stats_file)
    # One warm-up wrap per thread, then `ops` measured ones: three calls each, as kekd's wrap.
    wraps = result["ops"] + 2
    for function in ("C_CreateObject", "C_WrapKey", "C_DestroyObject"):
        expect(stats[function][0] == wraps,
               f"{function}: {stats[function][0]} calls for {wraps} wraps")
    print(f"ok   ceiling through the shim: {proc.stdout.strip()}, 3 calls per wrap")

    proc = subprocess.run(command, env={**env, "KEKD_SHIM_FAIL": "C_WrapKey=CKR_DEVICE_ERROR"},
                          capture_output=True, text=True, timeout=120)
    expect(proc.returncode != 0 and "C_WrapKey failed: CK_RV 0x30" in proc.stderr,
           f"the ceiling did not report the injected fault: {proc.returncode} {proc.stderr}")
    print("ok   ceiling reports an injected C_WrapKey fault")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--scenario":
        try:
            SCENARIOS[sys.argv[2]](sys.argv[3])
        except CheckFailed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            sys.exit(1)
        return
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    shim = os.path.abspath(sys.argv[1])
    ceiling = sys.argv[2] if len(sys.argv) == 3 else None

    with tempfile.TemporaryDirectory(prefix="kekd-shim-check.") as tmp:
        token = os.path.join(tmp, "token")
        line = subprocess.run(["bash", os.path.join(SOURCE_DIR, "scripts", "softhsm-token.sh"),
                               token, "kekd"], check=True, capture_output=True, text=True).stdout
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEKD_SHIM_")}
        env["SOFTHSM2_CONF"] = line.strip().split("=", 1)[1]
        env["PIN_FILE"] = os.path.join(token, "pin")
        stats = os.path.join(tmp, "stats")
        try:
            run_scenario("passthrough", shim, env, {"KEKD_SHIM_STATS": stats})
            counts = read_stats(stats)
            # PyKCS11 calls C_WrapKey twice: for the length, then for the bytes.
            expect(counts.get("C_GenerateKey") == (1, 0) and counts.get("C_WrapKey") == (2, 0)
                   and counts.get("C_Finalize", (0, 0))[0] == 1,
                   f"the shim's counts do not show the calls made through it: {counts}")
            print(f"ok   counts: {counts}")
            try:
                run_scenario("passthrough", shim, env, {"KEKD_SHIM_MODULE": "/nonexistent.so"})
                raise CheckFailed("the shim loaded without its real module")
            except CheckFailed as e:
                expect("cannot load /nonexistent.so" in str(e), str(e))
                print("ok   a missing real module fails C_GetFunctionList")
            run_scenario("env_fail", shim, env, {
                "KEKD_SHIM_FAIL": "C_GenerateKey=CKR_DEVICE_ERROR,C_GenerateRandom=0x32,"
                                  "C_SeedRandom=CKR_SESSION_HANDLE_INVALID"})
            run_scenario("env_fail_wildcard", shim, env, {
                "KEKD_SHIM_FAIL": "*=CKR_GENERAL_ERROR C_GetSlotList=none C_OpenSession=none "
                                  "C_Login=CKR_PIN_INCORRECT"})
            run_scenario("env_fail_everything", shim, env,
                         {"KEKD_SHIM_FAIL": "*=CKR_TOKEN_NOT_PRESENT"})
            run_scenario("delay", shim, env, {"KEKD_SHIM_DELAY": "C_GenerateRandom=50000",
                                              "KEKD_SHIM_HANG": "C_FindObjectsInit=300000"})
            run_scenario("control", shim, env, {
                "KEKD_SHIM_CONTROL": os.path.join(tmp, "control"),
                "KEKD_SHIM_FAIL": "C_SeedRandom=CKR_GENERAL_ERROR"})
            if ceiling:
                check_ceiling(ceiling, shim, env, tmp)
        except CheckFailed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            sys.exit(1)
    print("all shim checks passed")


if __name__ == "__main__":
    main()
