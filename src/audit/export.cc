#include "kekd/audit/export.h"

#include <nlohmann/json.hpp>

#include <string_view>
#include <utility>

namespace kekd::audit {
namespace {

using Json = nlohmann::json;

Result<std::string> line_of(std::string_view stored, std::string_view type, std::int64_t seq,
                            const std::string* hash) {
  Json j = Json::parse(stored, nullptr, false);
  if (!j.is_object()) {
    return Error(Code::kInternal, "audit: the stored " + std::string(type) + " at " +
                                      std::to_string(seq) + " is not a JSON object");
  }
  j["type"] = type;
  if (hash != nullptr) {
    j["hash"] = *hash;
  }
  // Sorted members, no whitespace: the line is its own canonical form, which the verifier
  // insists on (it rules out duplicate members that two parsers could read differently).
  return j.dump();
}

}  // namespace

Result<std::string> record_export_line(const store::AuditRecordRow& row) {
  return line_of(row.record, "record", row.seq, &row.hash);
}

Result<std::string> checkpoint_export_line(const store::AuditCheckpointRow& row) {
  return line_of(row.checkpoint, "checkpoint", row.seq, nullptr);
}

Result<std::vector<std::string>> export_lines(const store::AuditPage& page) {
  std::vector<std::string> lines;
  lines.reserve(page.records.size() + page.checkpoints.size());
  Status status;
  auto add = [&](Result<std::string> line) {
    if (!line.ok()) {
      status = line.error();
      return false;
    }
    lines.push_back(std::move(*line));
    return true;
  };
  for_each_in_export_order(
      page, [&](const store::AuditRecordRow& row) { return add(record_export_line(row)); },
      [&](const store::AuditCheckpointRow& row) { return add(checkpoint_export_line(row)); });
  if (!status.ok()) {
    return status.error();
  }
  return lines;
}

Result<ExportPage> export_page(store::AuditStore& store, std::int64_t after, std::size_t limit) {
  KEKD_ASSIGN_OR_RETURN(store::AuditPage page, store.read_audit(after, limit));
  ExportPage out;
  out.next = page.records.empty() ? after : page.records.back().seq;
  KEKD_ASSIGN_OR_RETURN(out.lines, export_lines(page));
  return out;
}

}  // namespace kekd::audit
