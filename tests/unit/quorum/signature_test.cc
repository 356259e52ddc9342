// Verification of approval signatures: both algorithms, every malformed signature rejected with
// kSignatureRejected (never an exception), and signatures made by the openssl CLI accepted.
#include <doctest/doctest.h>

#include <fstream>

#include "kekd/quorum/operator.h"
#include "support/temp_dir.h"
#include "support/token_fixture.h"
#include "unit/quorum/operator_keys.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

const std::string kStatement =
    "kekd ceremony v1\nid: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\naction: rotate-key\nkey: payments\n";

ByteView view(const std::string& s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

void expect_rejected(const Operator& op, const std::string& message, const Bytes& signature) {
  Status s = verify_signature(op, view(message), signature);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code() == Code::kSignatureRejected);
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  REQUIRE(out.good());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("VerifySignatureAcceptsEd25519AndEcdsaP256") {
  for (OperatorKey key : {OperatorKey::ed25519("alice"), OperatorKey::ecdsa("bob")}) {
    Bytes sig = key.sign(kStatement);
    CHECK(verify_signature(key.op(), view(kStatement), sig).ok());
  }
}

TEST_CASE("VerifySignatureFailsForOtherMessageOrOtherKey") {
  for (OperatorKey key : {OperatorKey::ed25519("alice"), OperatorKey::ecdsa("bob")}) {
    Bytes sig = key.sign(kStatement);
    std::string other = kStatement;
    other[40] ^= 1;
    expect_rejected(key.op(), other, sig);
    expect_rejected(key.op(), kStatement + "\n", sig);
    OperatorKey stranger = key.op().algorithm == Algorithm::kEd25519
                               ? OperatorKey::ed25519("mallory")
                               : OperatorKey::ecdsa("mallory");
    Operator impostor = stranger.op();
    impostor.name = key.name();
    expect_rejected(impostor, kStatement, sig);
  }
}

TEST_CASE("VerifySignatureFailsForMalformedEd25519Signatures") {
  OperatorKey key = OperatorKey::ed25519("alice");
  Bytes sig = key.sign(kStatement);
  REQUIRE(sig.size() == 64);
  expect_rejected(key.op(), kStatement, {});
  expect_rejected(key.op(), kStatement, Bytes(sig.begin(), sig.begin() + 63));
  Bytes longer = sig;
  longer.push_back(0);
  expect_rejected(key.op(), kStatement, longer);
  expect_rejected(key.op(), kStatement, Bytes(64, 0));
  expect_rejected(key.op(), kStatement, Bytes(64, 0xff));
  for (std::size_t i : {0, 31, 32, 63}) {
    Bytes flipped = sig;
    flipped[i] ^= 0x01;
    expect_rejected(key.op(), kStatement, flipped);
  }
  expect_rejected(key.op(), kStatement, Bytes(100000, 1));
}

TEST_CASE("VerifySignatureFailsForMalformedEcdsaSignatures") {
  OperatorKey key = OperatorKey::ecdsa("bob");
  Bytes sig = key.sign(kStatement);
  REQUIRE(sig[0] == 0x30);
  expect_rejected(key.op(), kStatement, {});
  expect_rejected(key.op(), kStatement, Bytes(sig.begin(), sig.end() - 1));
  Bytes trailing = sig;
  trailing.push_back(0);
  expect_rejected(key.op(), kStatement, trailing);
  Bytes bad_tag = sig;
  bad_tag[0] = 0x31;
  expect_rejected(key.op(), kStatement, bad_tag);
  Bytes bad_length = sig;
  bad_length[1] ^= 0x40;
  expect_rejected(key.op(), kStatement, bad_length);
  Bytes flipped = sig;
  flipped.back() ^= 0x01;
  expect_rejected(key.op(), kStatement, flipped);
  expect_rejected(key.op(), kStatement, Bytes(64, 0x11));  // raw r||s is not the DER kekd takes
  expect_rejected(key.op(), kStatement, Bytes{0x30, 0x00});
  expect_rejected(key.op(), kStatement, Bytes{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00});
  // (r, s) with a superfluous leading zero: valid BER, not the one DER encoding.
  Bytes padded = sig;
  std::size_t r_len = padded[3];
  padded.insert(padded.begin() + 4, 0x00);
  padded[3] = static_cast<std::uint8_t>(r_len + 1);
  padded[1] = static_cast<std::uint8_t>(padded[1] + 1);
  expect_rejected(key.op(), kStatement, padded);
}

TEST_CASE("VerifySignatureFailsWhenAlgorithmDoesNotMatchKey") {
  OperatorKey key = OperatorKey::ed25519("alice");
  Operator wrong = key.op();
  wrong.algorithm = Algorithm::kEcdsaP256;
  expect_rejected(wrong, kStatement, key.sign(kStatement));
  Operator garbage = key.op();
  garbage.spki_der = Bytes{1, 2, 3};
  expect_rejected(garbage, kStatement, key.sign(kStatement));
}

TEST_CASE("VerifySignatureAcceptsSignaturesMadeByOpensslCli") {
  TempDir dir;
  const std::string statement = dir.file("statement.txt");
  write_file(statement, kStatement);
  auto sh = [](const std::string& path) { return shell_quote(path); };

  // Ed25519, as docs/ceremony-formats.md tells operators to sign.
  run_command("openssl genpkey -algorithm ed25519 -out " + sh(dir.file("ed.key")) + " 2>&1");
  run_command("openssl pkey -in " + sh(dir.file("ed.key")) + " -pubout -out " +
              sh(dir.file("ed.pem")) + " 2>&1");
  run_command("openssl pkeyutl -sign -inkey " + sh(dir.file("ed.key")) + " -rawin -in " +
              sh(statement) + " -out " + sh(dir.file("ed.sig")) + " 2>&1");
  auto ed = parse_operator("alice", read_file(dir.file("ed.pem")));
  REQUIRE_MESSAGE(ed.ok(), ed.error().to_string());
  std::string ed_sig = read_file(dir.file("ed.sig"));
  CHECK(verify_signature(*ed, view(kStatement), view(ed_sig)).ok());

  // ECDSA P-256: key by ecparam and by genpkey, DER signature over SHA-256.
  run_command("openssl ecparam -name prime256v1 -genkey -noout -out " + sh(dir.file("ec1.key")) +
              " 2>&1");
  run_command("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
              sh(dir.file("ec2.key")) + " 2>&1");
  for (std::string name : {"ec1", "ec2"}) {
    run_command("openssl pkey -in " + sh(dir.file(name + ".key")) + " -pubout -out " +
                sh(dir.file(name + ".pem")) + " 2>&1");
    run_command("openssl dgst -sha256 -sign " + sh(dir.file(name + ".key")) + " -out " +
                sh(dir.file(name + ".sig")) + " " + sh(statement) + " 2>&1");
    auto ec = parse_operator("bob", read_file(dir.file(name + ".pem")));
    REQUIRE_MESSAGE(ec.ok(), ec.error().to_string());
    CHECK(ec->algorithm == Algorithm::kEcdsaP256);
    std::string ec_sig = read_file(dir.file(name + ".sig"));
    CHECK_MESSAGE(verify_signature(*ec, view(kStatement), view(ec_sig)).ok(), name);
    // And the fingerprint is what openssl and sha256sum print.
    std::string printed = run_command("openssl pkey -pubin -in " + sh(dir.file(name + ".pem")) +
                                      " -outform DER | sha256sum");
    CHECK(ec->fingerprint() == "sha256:" + printed.substr(0, 64));
  }
}
