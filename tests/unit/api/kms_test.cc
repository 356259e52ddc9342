// The KMS API's pure parts: KeyId forms and ARNs over a keyring on the in-memory fake HSM, the
// error table, and request members checked as AWS checks them. The protocol as a whole is tested
// against the real binary with the AWS CLI, boto3 and the JS SDKs (tests/e2e/test_kms_*.py).
#include <doctest/doctest.h>

#include "api/kms.h"
#include "kekd/api/sigv4.h"
#include "support/keyring_harness.h"
#include "support/memory_hsm.h"

namespace kekd::api::kms {
namespace {

const KmsIdentity kScope{"eu-west-3", "123456789012"};

TEST_CASE("KmsKeyIdAcceptsUuidAliasKeyArnAndAliasArnOfItsOwnScopeOnly") {
  testing::MemoryHsm hsm;
  testing::KeyringHarness h(hsm);
  h.create_key("payments");
  h.create_key("orders");
  const std::string id = h.keyring().describe("payments")->record.id;

  for (const std::string& form :
       {id, std::string("alias/payments"), "arn:aws:kms:eu-west-3:123456789012:key/" + id,
        std::string("arn:aws:kms:eu-west-3:123456789012:alias/payments")}) {
    CAPTURE(form);
    KmsResult<keys::KeyInfo> key = resolve_key(h.keyring(), kScope, form);
    REQUIRE(key.ok());
    CHECK(key->record.name == "payments");
  }
  CHECK(key_arn(kScope, id) == "arn:aws:kms:eu-west-3:123456789012:key/" + id);
  CHECK(alias_arn(kScope, "orders") == "arn:aws:kms:eu-west-3:123456789012:alias/orders");

  for (const std::string& form :
       {std::string("payments"), std::string("alias/nope"), std::string("alias/"),
        "arn:aws:kms:us-east-1:123456789012:key/" + id,
        "arn:aws:kms:eu-west-3:999999999999:key/" + id,
        std::string("arn:aws:kms:eu-west-3:123456789012:alias/nope"),
        "arn:aws:kms:eu-west-3:123456789012:grant/" + id, "arn:aws:s3:::bucket/" + id, id.substr(1),
        std::string("")}) {
    CAPTURE(form);
    KmsResult<keys::KeyInfo> key = resolve_key(h.keyring(), kScope, form);
    REQUIRE_FALSE(key.ok());
    CHECK(key.error().type == "NotFoundException");
    CHECK(key.error().status == 400);
  }
}

TEST_CASE("KmsErrorTableGivesAwsTypesAndHidesInternalDetail") {
  struct Row {
    Code code;
    const char* type;
    int status;
  };
  for (const Row& row : {Row{Code::kInvalidArgument, "ValidationException", 400},
                         Row{Code::kInvalidCiphertext, "InvalidCiphertextException", 400},
                         Row{Code::kNotFound, "NotFoundException", 400},
                         Row{Code::kFailedPrecondition, "DisabledException", 400},
                         Row{Code::kUnauthenticated, "UnrecognizedClientException", 400},
                         Row{Code::kPermissionDenied, "AccessDeniedException", 400},
                         Row{Code::kUnavailable, "DependencyTimeoutException", 503},
                         Row{Code::kInternal, "KMSInternalException", 500}}) {
    KmsError e(Error(row.code, "detail /secret/path"));
    CAPTURE(row.type);
    CHECK(e.type == row.type);
    CHECK(e.status == row.status);
    CHECK(e.code == row.code);
  }
  CHECK(KmsError(Error(Code::kInternal, "detail")).message == "internal error");

  HttpResponse r = error_response(KmsError("NotFoundException", "Invalid keyId 'x'"), "rid-1");
  CHECK(r.status == 400);
  CHECK(r.content_type == "application/x-amz-json-1.1");
  CHECK(Json::parse(r.body) ==
        Json{{"__type", "NotFoundException"}, {"message", "Invalid keyId 'x'"}});
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0] == std::pair<std::string, std::string>("x-amzn-RequestId", "rid-1"));
}

TEST_CASE("KmsMembersAreCheckedAsAwsChecksThem") {
  Json body = {{"KeyId", "alias/a"},
               {"Plaintext", "aGVsbG8="},
               {"Big", std::string(5464, 'A')},  // 4098 bytes once decoded
               {"NotBase64", "***"},
               {"Number", 7},
               {"Negative", -1},
               {"Text", 7},
               {"Context", {{"tenant", "acme"}}},
               {"BadContext", {{"tenant", 1}}}};

  KmsResult<std::optional<SecretBytes>> blob = blob_member(body, "Plaintext", 1, 4096);
  REQUIRE(blob.ok());
  CHECK(std::string((*blob)->begin(), (*blob)->end()) == "hello");
  KmsResult<std::optional<SecretBytes>> big = blob_member(body, "Big", 1, 4096);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().type == "ValidationException");
  CHECK(big.error().message ==
        "1 validation error detected: Value at 'big' failed to satisfy constraint: Member must "
        "have length less than or equal to 4096");
  CHECK(blob_member(body, "NotBase64", 1, 10).error().type == "SerializationException");
  CHECK(blob_member(body, "Number", 1, 10).error().type == "SerializationException");
  CHECK_FALSE(blob_member(body, "Absent", 1, 10)->has_value());

  CHECK(**integer_member(body, "Number", 1, 1024) == 7);
  CHECK(integer_member(body, "Number", 8, 1024).error().type == "ValidationException");
  CHECK(integer_member(body, "Number", 1, 6).error().type == "ValidationException");
  CHECK(integer_member(body, "Negative", 1, 6).error().type == "ValidationException");
  CHECK(integer_member(body, "KeyId", 1, 6).error().type == "SerializationException");

  CHECK(string_member(body, "Text", 1, 10).error().type == "SerializationException");
  CHECK(required_string_member(body, "Absent", 1, 10).error().type == "ValidationException");
  CHECK(string_member(body, "KeyId", 1, 3).error().type == "ValidationException");

  CHECK(*context_member(body, "Context") == keys::EncryptionContext{{"tenant", "acme"}});
  CHECK(context_member(body, "BadContext").error().type == "SerializationException");
  CHECK(context_member(Json{{"C", {{"", "x"}}}}, "C").error().type == "ValidationException");
  CHECK(context_member(Json{{"C", {{"k", std::string(8200, 'v')}}}}, "C").error().type ==
        "ValidationException");
  CHECK(blob_member(Json{{"P", ""}}, "P", 1, 10).error().type == "ValidationException");
  CHECK(context_member(body, "Absent")->empty());

  CHECK(parse_body("[1]").error().type == "SerializationException");
  CHECK(parse_body(std::string("{\"a\":1}\0x", 9)).error().type == "SerializationException");
  CHECK(parse_body(std::string(40, '[') + std::string(40, ']')).error().type ==
        "SerializationException");
}

TEST_CASE("KmsCommonMembersAcceptSymmetricDefaultAndReportDryRun") {
  CHECK(*common_members(Json::object(), "EncryptionAlgorithm") == false);
  CHECK(*common_members(Json{{"DryRun", true}, {"GrantTokens", {"t1"}}}, nullptr) == true);
  CHECK(*common_members(Json{{"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}},
                        "EncryptionAlgorithm") == false);
  CHECK(common_members(Json{{"EncryptionAlgorithm", "RSAES_OAEP_SHA_256"}}, "EncryptionAlgorithm")
            .error()
            .type == "ValidationException");
  CHECK(common_members(Json{{"GrantTokens", "t1"}}, nullptr).error().type ==
        "SerializationException");
  CHECK(common_members(Json{{"DryRun", "yes"}}, nullptr).error().type == "SerializationException");
  CHECK(common_members(Json{{"Recipient", Json::object()}}, nullptr).error().type ==
        "UnsupportedOperationException");
}

}  // namespace
}  // namespace kekd::api::kms

namespace kekd::api {
namespace {

TEST_CASE("CredentialsSigningKeysAreTheSecretsAndGoWithADeletedClient") {
  testing::MemoryHsm hsm;
  testing::KeyringHarness h(hsm);
  REQUIRE(Credentials::create_token_key(hsm).ok());
  Credentials credentials(hsm, h.store());
  Result<NewClient> client = credentials.create(false, "[]", 1'000);
  REQUIRE(client.ok());
  const std::string& id = client->client_id;
  // Around midnight both dates are live; each has its own key, derived from the client's secret.
  for (const char* date : {"20261123", "20261124", "20261123"}) {
    Result<Credentials::SigningIdentity> identity =
        credentials.signing_identity(id, date, "us-east-1", "kms");
    REQUIRE(identity.ok());
    CHECK(identity->principal.client_id == id);
    CHECK(identity->signing_key == sigv4::signing_key(client->secret, date, "us-east-1", "kms"));
  }
  CHECK(credentials.signing_identity("cli_00000000000000000000", "20261123", "us-east-1", "kms")
            .error()
            .code() == Code::kUnauthenticated);
  REQUIRE(credentials.remove(id, 2'000).ok());
  for (const char* date : {"20261123", "20261124"}) {
    CHECK(credentials.signing_identity(id, date, "us-east-1", "kms").error().code() ==
          Code::kUnauthenticated);
  }
}

TEST_CASE("CredentialsWrongSecretsForAKnownClientCostOneHsmCallInAll") {
  testing::MemoryHsm hsm;
  testing::KeyringHarness h(hsm);
  REQUIRE(Credentials::create_token_key(hsm).ok());
  Credentials credentials(hsm, h.store());
  Result<NewClient> client = credentials.create(false, "[]", 1'000);
  REQUIRE(client.ok());
  const std::string wrong = "Bearer " + client->client_id + ".not-the-secret";
  CHECK(credentials.authenticate(wrong).error().code() == Code::kUnauthenticated);
  // From here on the HSM fails every call: a second wrong secret, and the right one, are
  // answered from the cache the first attempt filled (else they would be 503, kUnavailable).
  hsm.fail_with(Error(Code::kUnavailable, "the HSM is down"));
  CHECK(credentials.authenticate(wrong).error().code() == Code::kUnauthenticated);
  Result<Principal> right = credentials.authenticate("Bearer " + client->token());
  REQUIRE(right.ok());
  CHECK(right->client_id == client->client_id);
  hsm.fail_with(std::nullopt);
  REQUIRE(credentials.remove(client->client_id, 2'000).ok());
  CHECK(credentials.authenticate("Bearer " + client->token()).error().code() ==
        Code::kUnauthenticated);
}

}  // namespace
}  // namespace kekd::api
