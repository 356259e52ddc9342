#include "kekd/audit/verify.h"

#include <botan/base64.h>
#include <botan/data_src.h>
#include <botan/ecc_key.h>
#include <botan/pk_keys.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <limits>

#include "kekd/audit/export.h"
#include "kekd/audit/record.h"

namespace kekd::audit {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::string_view, 11> kRecordMembers = {
    "action",     "error", "key",     "outcome", "prev",   "principal",
    "request_id", "seq",   "subject", "time",    "version"};
constexpr std::array<std::string_view, 5> kCheckpointMembers = {"hash", "prev_seq", "seq",
                                                                "signature", "time"};

// Far above any DER ECDSA P-256 signature (at most 72 bytes).
constexpr std::size_t kMaxSignatureBytes = 256;
// Far above any line kekd writes (a record is at most 16 KiB); a bound for the JSON parser.
constexpr std::size_t kMaxLineBytes = 64 * 1024;
constexpr std::size_t kPageSize = 1000;

bool is_hex_hash(const Json& j) {
  if (!j.is_string()) {
    return false;
  }
  const std::string& s = j.get_ref<const std::string&>();
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool has_control_character(const std::string& s) {
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) {
      return true;
    }
  }
  return false;
}

bool is_name(const std::string& s, bool allow_dot_dash) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              (allow_dot_dash && (c == '.' || c == '-'));
    if (!ok) {
      return false;
    }
  }
  return true;
}

// A positive seq from a JSON value, or 0.
std::int64_t positive_seq(const Json& j) {
  if (!j.is_number_unsigned()) {
    return 0;
  }
  std::uint64_t v = j.get<std::uint64_t>();
  return v >= 1 && v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
             ? static_cast<std::int64_t>(v)
             : 0;
}

std::int64_t seq_member(const Json& j) {
  auto it = j.find("seq");
  return it == j.end() ? 0 : positive_seq(*it);
}

// The first member that is missing or not expected, or std::nullopt.
template <std::size_t N>
std::optional<std::string> check_member_names(const Json& j,
                                              const std::array<std::string_view, N>& expected) {
  for (const auto& [name, value] : j.items()) {
    if (std::find(expected.begin(), expected.end(), name) == expected.end()) {
      return "unexpected member \"" + name + "\"";
    }
  }
  for (std::string_view name : expected) {
    if (!j.contains(name)) {
      return "member \"" + std::string(name) + "\" is missing";
    }
  }
  return std::nullopt;
}

// The first problem with a record's members (docs/audit.md, "The record"), or std::nullopt.
std::optional<std::string> check_record_members(const Json& j) {
  if (auto problem = check_member_names(j, kRecordMembers)) {
    return problem;
  }
  if (positive_seq(j["seq"]) == 0) {
    return "seq is not a positive integer";
  }
  for (const char* name : {"time", "request_id", "principal", "action", "outcome", "prev"}) {
    if (!j[name].is_string()) {
      return std::string(name) + " is not a string";
    }
  }
  for (const char* name : {"key", "subject", "error"}) {
    if (!j[name].is_null() && !j[name].is_string()) {
      return std::string(name) + " is neither a string nor null";
    }
  }
  for (const auto& [name, value] : j.items()) {
    if (value.is_string() && has_control_character(value.get_ref<const std::string&>())) {
      return name + " contains a control character";
    }
  }
  if (!parse_time(j["time"].get<std::string>())) {
    return "time is not of the form 2026-11-23T10:00:00.123Z";
  }
  if (!is_name(j["action"].get<std::string>(), true)) {
    return "action is not 1 to 64 characters from a-z, 0-9, '_', '.', '-'";
  }
  if (j["key"].is_string() && j["key"].get_ref<const std::string&>().empty()) {
    return "key is an empty string (no key is null)";
  }
  if (j["subject"].is_string() && j["subject"].get_ref<const std::string&>().empty()) {
    return "subject is an empty string (no subject is null)";
  }
  const Json& version = j["version"];
  if (!version.is_null() &&
      !(version.is_number_unsigned() && version.get<std::uint64_t>() >= 1 &&
        version.get<std::uint64_t>() <= std::numeric_limits<std::uint32_t>::max())) {
    return "version is neither null nor an integer from 1 to 4294967295";
  }
  const std::string& outcome = j["outcome"].get_ref<const std::string&>();
  if (outcome == "ok") {
    if (!j["error"].is_null()) {
      return "outcome is ok, but error is not null";
    }
  } else if (outcome == "error") {
    if (!j["error"].is_string() || !is_name(j["error"].get<std::string>(), false)) {
      return "outcome is error, but error is not an error code name";
    }
  } else {
    return "outcome is neither \"ok\" nor \"error\"";
  }
  if (!is_hex_hash(j["prev"])) {
    return "prev is not 64 lowercase hex digits";
  }
  return std::nullopt;
}

std::optional<std::string> check_checkpoint_members(const Json& j) {
  if (auto problem = check_member_names(j, kCheckpointMembers)) {
    return problem;
  }
  if (positive_seq(j["seq"]) == 0) {
    return "seq is not a positive integer";
  }
  if (!is_hex_hash(j["hash"])) {
    return "hash is not 64 lowercase hex digits";
  }
  if (!j["prev_seq"].is_number_unsigned() ||
      j["prev_seq"].get<std::uint64_t>() >= static_cast<std::uint64_t>(positive_seq(j["seq"]))) {
    return "prev_seq is not an integer from 0 to seq - 1";
  }
  if (!j["time"].is_string() || !parse_time(j["time"].get<std::string>())) {
    return "time is not of the form 2026-11-23T10:00:00.123Z";
  }
  if (!j["signature"].is_string()) {
    return "signature is not a string";
  }
  return std::nullopt;
}

std::optional<Bytes> decode_signature(const std::string& base64) {
  try {
    Botan::secure_vector<std::uint8_t> raw = Botan::base64_decode(base64);
    if (raw.empty() || raw.size() > kMaxSignatureBytes) {
      return std::nullopt;
    }
    return Bytes(raw.begin(), raw.end());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string seconds_text(std::int64_t millis) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(millis / 1000),
                static_cast<long long>(millis % 1000));
  return buf;
}

}  // namespace

struct Verifier::Impl {
  std::unique_ptr<Botan::Public_Key> key;
  VerifyOptions options;
  std::int64_t line = 0;
  bool failed = false;
  bool finished = false;
  VerifyResult result;
  // The first record after the last checkpoint (its seq and time), for the waiting-time warning.
  std::optional<std::pair<std::int64_t, UnixMillis>> first_uncovered;

  bool fail(std::string message) {
    failed = true;
    result.ok = false;
    result.failure = std::move(message);
    return false;
  }

  // A record whose members have been parsed (export line without "type" and "hash", or a stored
  // row). stated_hash: the hash the input claims; stored_text: for a stored row, its exact text.
  bool record(const Json& j, const std::string& stated_hash, const std::string* stored_text,
              const std::string& place_if_no_seq) {
    const std::int64_t seq = seq_member(j);
    const std::string place = seq > 0 ? "record " + std::to_string(seq) : place_if_no_seq;
    if (auto problem = check_record_members(j)) {
      return fail(place + ": " + *problem);
    }
    const std::int64_t expected = result.last_seq + 1;
    if (seq > expected) {
      return fail("record " + std::to_string(expected) + " missing (seq jumps from " +
                  std::to_string(result.last_seq) + " to " + std::to_string(seq) + ")");
    }
    if (seq == result.last_seq) {
      return fail(place + ": appears twice");
    }
    if (seq < expected) {
      return fail(place + ": out of order (after record " + std::to_string(result.last_seq) + ")");
    }
    const std::string canonical = j.dump();
    if (stored_text != nullptr && *stored_text != canonical) {
      return fail(place + ": the stored text is not in canonical form");
    }
    const std::string hash = sha256_hex(canonical);
    if (hash != stated_hash) {
      return fail(place + ": hash does not match");
    }
    if (j["prev"].get_ref<const std::string&>() != result.last_hash) {
      return fail(place + ": prev does not match the hash of record " +
                  std::to_string(result.last_seq));
    }
    if (options.anchor && options.anchor->seq == seq && options.anchor->hash != hash) {
      return fail(place + ": hash differs from the anchor's " + options.anchor->hash);
    }
    result.records += 1;
    result.last_seq = seq;
    result.last_hash = hash;
    if (!first_uncovered) {
      first_uncovered = std::make_pair(seq, *parse_time(j["time"].get<std::string>()));
    }
    return true;
  }

  bool checkpoint(const Json& j, const std::string& place_if_no_seq) {
    const std::int64_t seq = seq_member(j);
    const std::string place = seq > 0 ? "checkpoint at " + std::to_string(seq) : place_if_no_seq;
    if (auto problem = check_checkpoint_members(j)) {
      return fail(place + ": " + *problem);
    }
    const std::string s = std::to_string(seq);
    if (seq <= result.last_checkpoint_seq) {
      return fail(place + ": not after the previous checkpoint (at " +
                  std::to_string(result.last_checkpoint_seq) + ")");
    }
    const std::int64_t prev_seq = j["prev_seq"].get<std::int64_t>();
    if (prev_seq != result.last_checkpoint_seq) {
      if (prev_seq > result.last_checkpoint_seq) {
        return fail(place + ": the checkpoint before it, at " + std::to_string(prev_seq) +
                    ", is missing");
      }
      return fail(place + ": it names the checkpoint at " + std::to_string(prev_seq) +
                  " as its predecessor, but that is at " +
                  std::to_string(result.last_checkpoint_seq));
    }
    if (seq > result.last_seq) {
      return fail(place + ": record " + s + " is not in the log before it");
    }
    if (seq < result.last_seq) {
      return fail(place + ": not right after record " + s + " (it follows record " +
                  std::to_string(result.last_seq) + ")");
    }
    const std::string& hash = j["hash"].get_ref<const std::string&>();
    if (hash != result.last_hash) {
      return fail(place + ": hash does not match record " + s);
    }
    const std::string& time = j["time"].get_ref<const std::string&>();
    std::optional<Bytes> signature = decode_signature(j["signature"].get<std::string>());
    if (!signature) {
      return fail(place + ": signature is not base64 of a DER signature");
    }
    if (!signature_valid(checkpoint_message(seq, hash, prev_seq, time), *signature)) {
      return fail(place + ": signature does not verify");
    }
    const UnixMillis signed_at = *parse_time(time);
    if (first_uncovered &&
        signed_at - first_uncovered->second > options.max_checkpoint_wait.count()) {
      result.warnings.push_back(place + ": record " + std::to_string(first_uncovered->first) +
                                " waited " + seconds_text(signed_at - first_uncovered->second) +
                                " s for a checkpoint (more than " +
                                seconds_text(options.max_checkpoint_wait.count()) +
                                " s): a checkpoint may be missing, or the token was unavailable");
    }
    first_uncovered.reset();
    result.checkpoints += 1;
    result.last_checkpoint_seq = seq;
    return true;
  }

  bool signature_valid(const std::string& message, const Bytes& signature) {
    // Botan reports malformed signatures by throwing; they are simply invalid here.
    try {
      // DER_SEQUENCE: the signature format of hsm::Hsm::sign and of `openssl dgst -sign`.
      Botan::PK_Verifier verifier(*key, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
      return verifier.verify_message(reinterpret_cast<const std::uint8_t*>(message.data()),
                                     message.size(), signature.data(), signature.size());
    } catch (const std::exception&) {
      return false;
    }
  }
};

Result<Verifier> Verifier::create(ByteView public_key, VerifyOptions options) {
  auto impl = std::make_unique<Impl>();
  try {
    // load_key takes the SubjectPublicKeyInfo as DER or as PEM ("PUBLIC KEY").
    Botan::DataSource_Memory source(public_key.data(), public_key.size());
    impl->key.reset(Botan::X509::load_key(source));
  } catch (const std::exception&) {
    impl->key.reset();
  }
  const auto* ec = dynamic_cast<const Botan::EC_PublicKey*>(impl->key.get());
  if (ec == nullptr || impl->key->algo_name() != "ECDSA" ||
      ec->domain().get_curve_oid() != Botan::OID::from_string("secp256r1")) {
    return Error(Code::kInvalidArgument,
                 "audit: the public key is not an ECDSA P-256 SubjectPublicKeyInfo (DER or PEM)");
  }
  impl->options = std::move(options);
  impl->result.last_hash = std::string(kGenesisHash);
  return Verifier(std::move(impl));
}

Verifier::Verifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Verifier::Verifier(Verifier&&) noexcept = default;
Verifier& Verifier::operator=(Verifier&&) noexcept = default;
Verifier::~Verifier() = default;

bool Verifier::add_line(std::string_view text) {
  Impl& v = *impl_;
  if (v.failed || v.finished) {
    return false;
  }
  v.line += 1;
  const std::string line_place = "line " + std::to_string(v.line);
  if (text.size() > kMaxLineBytes) {
    return v.fail(line_place + ": longer than " + std::to_string(kMaxLineBytes) + " bytes");
  }
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return v.fail(line_place + ": not JSON");
  }
  if (!j.is_object()) {
    return v.fail(line_place + ": not a JSON object");
  }
  auto type = j.find("type");
  if (type == j.end() || !type->is_string() || (*type != "record" && *type != "checkpoint")) {
    return v.fail(line_place + ": type is neither \"record\" nor \"checkpoint\"");
  }
  const bool is_record = *type == "record";
  const std::int64_t seq = seq_member(j);
  const std::string place = seq == 0    ? line_place
                            : is_record ? "record " + std::to_string(seq)
                                        : "checkpoint at " + std::to_string(seq);
  // Exactly its own canonical form: no other spelling of the same object is accepted, so a line
  // with a duplicate member (which parsers resolve differently) cannot pass.
  if (j.dump() != text) {
    return v.fail(place + ": the line is not in canonical form");
  }
  j.erase("type");
  if (!is_record) {
    return v.checkpoint(j, line_place);
  }
  auto hash = j.find("hash");
  if (hash == j.end() || !is_hex_hash(*hash)) {
    return v.fail(place + ": hash is missing or not 64 lowercase hex digits");
  }
  const std::string stated = hash->get<std::string>();
  j.erase("hash");
  return v.record(j, stated, nullptr, line_place);
}

bool Verifier::add_record(const store::AuditRecordRow& row) {
  Impl& v = *impl_;
  if (v.failed || v.finished) {
    return false;
  }
  const std::string place = "record " + std::to_string(row.seq);
  Json j = Json::parse(row.record, nullptr, false);
  if (!j.is_object()) {
    return v.fail(place + ": the stored text is not a JSON object");
  }
  if (seq_member(j) != row.seq) {
    return v.fail(place + ": the stored record's seq is not the row's");
  }
  return v.record(j, row.hash, &row.record, place);
}

bool Verifier::add_checkpoint(const store::AuditCheckpointRow& row) {
  Impl& v = *impl_;
  if (v.failed || v.finished) {
    return false;
  }
  const std::string place = "checkpoint at " + std::to_string(row.seq);
  Json j = Json::parse(row.checkpoint, nullptr, false);
  if (!j.is_object()) {
    return v.fail(place + ": the stored text is not a JSON object");
  }
  if (seq_member(j) != row.seq) {
    return v.fail(place + ": the stored checkpoint's seq is not the row's");
  }
  if (j.dump() != row.checkpoint) {
    return v.fail(place + ": the stored text is not in canonical form");
  }
  return v.checkpoint(j, place);
}

VerifyResult Verifier::finish() {
  Impl& v = *impl_;
  if (!v.finished && !v.failed) {
    VerifyResult& r = v.result;
    if (v.options.anchor && v.options.anchor->seq > r.last_seq) {
      v.fail("the log ends at record " + std::to_string(r.last_seq) +
             ", before the anchor record " + std::to_string(v.options.anchor->seq) +
             ": records were removed");
    } else if (r.last_seq > r.last_checkpoint_seq) {
      std::string message = r.last_seq == r.last_checkpoint_seq + 1
                                ? "record " + std::to_string(r.last_seq)
                                : "records " + std::to_string(r.last_checkpoint_seq + 1) + " to " +
                                      std::to_string(r.last_seq);
      message += r.last_seq == r.last_checkpoint_seq + 1 ? " is" : " are";
      message += " not yet covered by a checkpoint";
      if (v.options.require_checkpoint) {
        v.fail(std::move(message));
      } else {
        r.warnings.push_back(std::move(message));
      }
    }
  }
  v.finished = true;
  v.result.uncovered = v.result.last_seq - v.result.last_checkpoint_seq;
  return v.result;
}

Result<VerifyResult> verify_export(std::istream& in, ByteView public_key, VerifyOptions options) {
  KEKD_ASSIGN_OR_RETURN(Verifier verifier, Verifier::create(public_key, std::move(options)));
  std::string line;
  while (std::getline(in, line)) {
    if (!verifier.add_line(line)) {
      break;
    }
  }
  if (in.bad()) {
    return Error(Code::kUnavailable, "audit: could not read the export");
  }
  return verifier.finish();
}

Result<VerifyResult> verify_store(store::AuditStore& store, ByteView public_key,
                                  VerifyOptions options) {
  KEKD_ASSIGN_OR_RETURN(Verifier verifier, Verifier::create(public_key, std::move(options)));
  std::int64_t after = 0;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(store::AuditPage page, store.read_audit(after, kPageSize));
    if (page.records.empty()) {
      break;
    }
    after = page.records.back().seq;
    bool going = for_each_in_export_order(
        page, [&](const store::AuditRecordRow& row) { return verifier.add_record(row); },
        [&](const store::AuditCheckpointRow& row) { return verifier.add_checkpoint(row); });
    if (!going) {
      return verifier.finish();
    }
  }
  // Pages hold the checkpoints of their records only. A checkpoint beyond the last record (the
  // covered tail deleted behind the database's back) must still be seen, and fail.
  KEKD_ASSIGN_OR_RETURN(std::optional<store::AuditCheckpointRow> last,
                        store.last_audit_checkpoint());
  if (last && last->seq > after) {
    verifier.add_checkpoint(*last);
  }
  return verifier.finish();
}

}  // namespace kekd::audit
