#!/usr/bin/python3
"""Independent PKCS#11 helper for kekd's integration checks (python3-pykcs11 only, no kekd code).

It re-implements, from DESIGN.md sections 3 and 4 alone, what kekd does with the token, so that the
disaster-recovery procedure in docs/ciphertext.md and kekd itself can be checked against a second,
independent implementation:

  create-kek  --label kekd:<name>:<version>     generate a KEK with exactly the DESIGN section 3
                                               template; prints its CKA_ID in hex
  import-kek  --label L --value-hex H [--extractable]
                                               TEST ONLY: a KEK of known value (C_CreateObject),
                                               for worked examples and the openssl oracle
  wrap        --label L --plaintext-hex H [--context-hex C] [--parts]
                                               build the inner payload, C_WrapKey it with
                                               CKM_AES_KEY_WRAP_PAD, prepend the header; prints the
                                               base64 ciphertext (--parts: every part, one per line)
  unwrap      --ciphertext-b64 B [--context-hex C]
                                               the reverse; prints the DEK in hex
  check-kek   --label L                        independent check of a KEK's attributes
  list-objects                                 class, label and CKA_ID of every object
  canonical-context KEY=VALUE ...              hex of the canonical encryption context

Common options: --module (default SoftHSM), --token-label (default kekd), --pin-file (default
$PIN_FILE). The PIN is read from the file and never taken on the command line.
"""

import argparse
import base64
import hashlib
import os
import re
import struct
import sys

import PyKCS11
from PyKCS11 import LowLevel

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FORMAT_VERSION = 0x01
MAX_PLAINTEXT = 4096
LABEL_RE = re.compile(r"^kekd:([a-z0-9][a-z0-9_-]{0,63}):([1-9][0-9]{0,9})$")
# CK_MECHANISM_TYPE is a CK_ULONG: 8 bytes, native byte order, on Linux x86_64/arm64.
ULONG = struct.Struct("@L")


def ckr_name(rv):
    # PyKCS11 1.5.12 predates PKCS#11 2.40's CKR_ACTION_PROHIBITED, which SoftHSM returns.
    return {0x1B: "CKR_ACTION_PROHIBITED"}.get(rv) or PyKCS11.CKR.get(rv) or hex(rv)


def die(msg):
    print(f"pkcs11_helper: {msg}", file=sys.stderr)
    sys.exit(2)


# --- token access -------------------------------------------------------------------------------

def open_session(args):
    pin_file = args.pin_file or os.environ.get("PIN_FILE")
    if not pin_file:
        die("no PIN: pass --pin-file or set PIN_FILE")
    with open(pin_file, encoding="ascii") as f:
        pin = f.read().strip()
    lib = PyKCS11.PyKCS11Lib()
    lib.load(args.module)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == args.token_label:
            session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
            session.login(pin)
            return lib, session
    die(f"no token labelled {args.token_label!r}")


def find_one(session, label, cls=PyKCS11.CKO_SECRET_KEY):
    found = session.findObjects([(PyKCS11.CKA_CLASS, cls), (PyKCS11.CKA_LABEL, label)])
    if len(found) != 1:
        die(f"expected exactly one object labelled {label!r}, found {len(found)}")
    return found[0]


def raw_get(session, obj, attr):
    """(rv, bytes or None) of one attribute, straight from C_GetAttributeValue."""
    tmpl = LowLevel.ckattrlist(1)
    tmpl[0].SetType(attr)
    rv = session.lib.C_GetAttributeValue(session.session, obj, tmpl)
    if rv != PyKCS11.CKR_OK:
        return rv, None
    rv = session.lib.C_GetAttributeValue(session.session, obj, tmpl)
    if rv != PyKCS11.CKR_OK:
        return rv, None
    return rv, bytes(tmpl[0].GetBin())


def kek_template(label, ckid):
    """DESIGN section 3: the only attributes a KEK ever has."""
    t, f = PyKCS11.CK_TRUE, PyKCS11.CK_FALSE
    return [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
        (PyKCS11.CKA_VALUE_LEN, 32),
        (PyKCS11.CKA_TOKEN, t),
        (PyKCS11.CKA_PRIVATE, t),
        (PyKCS11.CKA_SENSITIVE, t),
        (PyKCS11.CKA_EXTRACTABLE, f),
        (PyKCS11.CKA_WRAP, t),
        (PyKCS11.CKA_UNWRAP, t),
        (PyKCS11.CKA_ENCRYPT, f),
        (PyKCS11.CKA_DECRYPT, f),
        (PyKCS11.CKA_SIGN, f),
        (PyKCS11.CKA_VERIFY, f),
        (PyKCS11.CKA_DERIVE, f),
        (PyKCS11.CKA_MODIFIABLE, f),
        (PyKCS11.CKA_ALLOWED_MECHANISMS, ULONG.pack(PyKCS11.CKM_AES_KEY_WRAP_PAD)),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, ckid),
    ]


def parse_label(label):
    m = LABEL_RE.match(label)
    if not m:
        die(f"label {label!r} is not kekd:<name>:<version>")
    version = int(m.group(2))
    if version > 0xFFFFFFFF:
        die("version does not fit in u32")
    return m.group(1), version


# --- format (DESIGN section 4) ------------------------------------------------------------------

def canonical_context(pairs):
    out = b""
    for k, v in sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in pairs):
        out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def inner_payload(context, plaintext):
    if not 1 <= len(plaintext) <= MAX_PLAINTEXT:
        die(f"plaintext length {len(plaintext)} outside 1..{MAX_PLAINTEXT}")
    body = hashlib.sha256(context).digest() + struct.pack(">H", len(plaintext)) + plaintext
    return body + b"\0" * (-len(body) % 8)


def header(name, version):
    n = name.encode("ascii")
    return bytes([FORMAT_VERSION, len(n)]) + n + struct.pack(">I", version)


def wrap_mech():
    return PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_PAD, None)


# --- subcommands --------------------------------------------------------------------------------

def cmd_create_kek(args):
    parse_label(args.label)
    _, s = open_session(args)
    ckid = os.urandom(16)
    s.generateKey(kek_template(args.label, ckid),
                  PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN, None))
    print(ckid.hex())


def cmd_import_kek(args):
    parse_label(args.label)
    value = bytes.fromhex(args.value_hex)
    if len(value) != 32:
        die("a KEK is 32 bytes")
    _, s = open_session(args)
    ckid = os.urandom(16)
    tmpl = [a for a in kek_template(args.label, ckid) if a[0] != PyKCS11.CKA_VALUE_LEN]
    if args.extractable:
        tmpl = [a for a in tmpl if a[0] not in (PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE)]
        tmpl += [(PyKCS11.CKA_SENSITIVE, PyKCS11.CK_FALSE),
                 (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_TRUE)]
    s.createObject(tmpl + [(PyKCS11.CKA_VALUE, value)])
    print(ckid.hex())


def cmd_wrap(args):
    name, version = parse_label(args.label)
    context = bytes.fromhex(args.context_hex)
    payload = inner_payload(context, bytes.fromhex(args.plaintext_hex))
    _, s = open_session(args)
    kek = find_one(s, args.label)
    # The transient object kekd creates: a session object (CKA_TOKEN false) that is extractable.
    obj = s.createObject([
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_GENERIC_SECRET),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_VALUE, payload),
    ])
    try:
        wrapped = bytes(s.wrapKey(kek, obj, wrap_mech()))
    finally:
        s.destroyObject(obj)
    ct = header(name, version) + wrapped
    b64 = base64.b64encode(ct).decode()
    if args.parts:
        print(f"context_hex={context.hex()}")
        print(f"context_sha256={hashlib.sha256(context).hexdigest()}")
        print(f"payload_hex={payload.hex()}")
        print(f"header_hex={header(name, version).hex()}")
        print(f"wrapped_hex={wrapped.hex()}")
        print(f"ciphertext_hex={ct.hex()}")
    print(b64 if not args.parts else f"ciphertext_b64={b64}")


def cmd_unwrap(args):
    ct = base64.b64decode(args.ciphertext_b64, validate=True)
    if len(ct) < 2 or ct[0] != FORMAT_VERSION or not 1 <= ct[1] <= 64 or len(ct) < 2 + ct[1] + 4:
        die("invalid_ciphertext (header)")
    n = ct[1]
    name = ct[2:2 + n].decode("ascii")
    version = struct.unpack(">I", ct[2 + n:6 + n])[0]
    wrapped = ct[6 + n:]
    _, s = open_session(args)
    kek = find_one(s, f"kekd:{name}:{version}")
    obj = s.unwrapKey(kek, wrapped, [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_GENERIC_SECRET),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_TRUE),
    ], wrap_mech())
    try:
        payload = bytes(s.getAttributeValue(obj, [PyKCS11.CKA_VALUE], allAsBinary=True)[0])
    finally:
        s.destroyObject(obj)
    context = bytes.fromhex(args.context_hex)
    if len(payload) < 34 or payload[:32] != hashlib.sha256(context).digest():
        die("invalid_ciphertext")
    size = struct.unpack(">H", payload[32:34])[0]
    if not 1 <= size <= MAX_PLAINTEXT or 34 + size > len(payload):
        die("invalid_ciphertext")
    print(payload[34:34 + size].hex())


def cmd_check_kek(args):
    _, s = open_session(args)
    kek = find_one(s, args.label)
    failures = 0

    def check(what, ok, got=""):
        nonlocal failures
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok else f' (got {got})'}")
        failures += 0 if ok else 1

    def num(attr):
        rv, b = raw_get(s, kek, attr)
        return None if b is None else ULONG.unpack(b)[0]

    def boolean(attr):
        rv, b = raw_get(s, kek, attr)
        return None if b is None else b != b"\0"

    c = num(PyKCS11.CKA_CLASS)
    check("CKA_CLASS == CKO_SECRET_KEY", c == PyKCS11.CKO_SECRET_KEY, c)
    c = num(PyKCS11.CKA_KEY_TYPE)
    check("CKA_KEY_TYPE == CKK_AES", c == PyKCS11.CKK_AES, c)
    c = num(PyKCS11.CKA_VALUE_LEN)
    check("CKA_VALUE_LEN == 32", c == 32, c)
    rv, b = raw_get(s, kek, PyKCS11.CKA_VALUE)
    check("reading CKA_VALUE fails with CKR_ATTRIBUTE_SENSITIVE",
          rv == PyKCS11.CKR_ATTRIBUTE_SENSITIVE and b is None,
          ckr_name(rv))
    for attr, want in [
            ("CKA_SENSITIVE", True), ("CKA_ALWAYS_SENSITIVE", True),
            ("CKA_NEVER_EXTRACTABLE", True), ("CKA_EXTRACTABLE", False),
            ("CKA_MODIFIABLE", False), ("CKA_TOKEN", True), ("CKA_PRIVATE", True),
            ("CKA_WRAP", True), ("CKA_UNWRAP", True), ("CKA_ENCRYPT", False),
            ("CKA_DECRYPT", False), ("CKA_SIGN", False), ("CKA_VERIFY", False),
            ("CKA_DERIVE", False)]:
        got = boolean(getattr(PyKCS11, attr))
        check(f"{attr} == {want}", got is want, got)
    rv, b = raw_get(s, kek, PyKCS11.CKA_ALLOWED_MECHANISMS)
    mechs = None if b is None else [m for (m,) in ULONG.iter_unpack(b)]
    check("CKA_ALLOWED_MECHANISMS == [CKM_AES_KEY_WRAP_PAD (0x210a)]",
          mechs == [PyKCS11.CKM_AES_KEY_WRAP_PAD],
          None if mechs is None else [hex(m) for m in mechs])
    rv, b = raw_get(s, kek, PyKCS11.CKA_ID)
    check("CKA_ID is 16 bytes", b is not None and len(b) == 16, None if b is None else b.hex())
    rv, b = raw_get(s, kek, PyKCS11.CKA_LABEL)
    check(f"CKA_LABEL == {args.label}", b == args.label.encode(), b)
    try:
        s.setAttributeValue(kek, [(PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_TRUE)])
        check("C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) is refused", False, "CKR_OK")
    except PyKCS11.PyKCS11Error as e:
        check(f"C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) is refused ({ckr_name(e.value)})",
              True)
    got = boolean(PyKCS11.CKA_EXTRACTABLE)
    check("CKA_EXTRACTABLE still False afterwards", got is False, got)
    print(f"check-kek {args.label}: {'PASS' if failures == 0 else f'{failures} FAILED'}")
    sys.exit(0 if failures == 0 else 1)


def cmd_list_objects(args):
    _, s = open_session(args)
    for obj in s.findObjects([]):
        rv, cls = raw_get(s, obj, PyKCS11.CKA_CLASS)
        rv, label = raw_get(s, obj, PyKCS11.CKA_LABEL)
        rv, ckid = raw_get(s, obj, PyKCS11.CKA_ID)
        rv, token = raw_get(s, obj, PyKCS11.CKA_TOKEN)
        is_token = None if token is None else token != bytes(1)
        print(f"{PyKCS11.CKO.get(ULONG.unpack(cls)[0])}\t"
              f"label={(label or b'').decode(errors='replace')}\t"
              f"id={(ckid or b'').hex()}\ttoken={is_token}")


def cmd_canonical_context(args):
    pairs = []
    for p in args.pairs:
        if "=" not in p:
            die(f"{p!r} is not KEY=VALUE")
        pairs.append(tuple(p.split("=", 1)))
    print(canonical_context(pairs).hex())


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default=SOFTHSM_MODULE)
    p.add_argument("--token-label", default="kekd")
    p.add_argument("--pin-file", default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create-kek")
    c.add_argument("--label", required=True)
    c.set_defaults(fn=cmd_create_kek)
    c = sub.add_parser("import-kek")
    c.add_argument("--label", required=True)
    c.add_argument("--value-hex", required=True)
    c.add_argument("--extractable", action="store_true")
    c.set_defaults(fn=cmd_import_kek)
    c = sub.add_parser("wrap")
    c.add_argument("--label", required=True)
    c.add_argument("--plaintext-hex", required=True)
    c.add_argument("--context-hex", default="")
    c.add_argument("--parts", action="store_true")
    c.set_defaults(fn=cmd_wrap)
    c = sub.add_parser("unwrap")
    c.add_argument("--ciphertext-b64", required=True)
    c.add_argument("--context-hex", default="")
    c.set_defaults(fn=cmd_unwrap)
    c = sub.add_parser("check-kek")
    c.add_argument("--label", required=True)
    c.set_defaults(fn=cmd_check_kek)
    c = sub.add_parser("list-objects")
    c.set_defaults(fn=cmd_list_objects)
    c = sub.add_parser("canonical-context")
    c.add_argument("pairs", nargs="*")
    c.set_defaults(fn=cmd_canonical_context)
    args = p.parse_args()
    try:
        args.fn(args)
    except PyKCS11.PyKCS11Error as e:
        die(f"PKCS#11 error: {e}")


if __name__ == "__main__":
    main()
