// The export format of docs/audit.md: JSON lines, records and checkpoints in seq order, each
// checkpoint right after the record it covers. What GET /v1/audit pages through and what
// `kekctl audit export` writes; verify.h reads it back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kekd/common/error.h"
#include "kekd/store/audit_store.h"

namespace kekd::audit {

// A record line: its members plus "type":"record" and "hash", canonical JSON, no final LF.
// kInternal if the stored text is not a JSON object (a damaged store).
Result<std::string> record_export_line(const store::AuditRecordRow& row);

// A checkpoint line: its members plus "type":"checkpoint", canonical JSON, no final LF.
Result<std::string> checkpoint_export_line(const store::AuditCheckpointRow& row);

// Visits the rows of one store page (AuditStore::read_audit) in export order: each checkpoint
// right after the record it covers; a checkpoint of a record not on the page (which the store
// never holds) by its seq all the same, so that a verifier sees the store as it is. Each visitor
// returns false to stop; the result is false if one did.
template <typename OnRecord, typename OnCheckpoint>
bool for_each_in_export_order(const store::AuditPage& page, OnRecord&& on_record,
                              OnCheckpoint&& on_checkpoint) {
  auto checkpoint = page.checkpoints.begin();
  auto checkpoints_through = [&](std::int64_t seq) {
    for (; checkpoint != page.checkpoints.end() && checkpoint->seq <= seq; ++checkpoint) {
      if (!on_checkpoint(*checkpoint)) {
        return false;
      }
    }
    return true;
  };
  for (const store::AuditRecordRow& record : page.records) {
    if (!checkpoints_through(record.seq - 1) || !on_record(record) ||
        !checkpoints_through(record.seq)) {
      return false;
    }
  }
  return checkpoints_through(std::numeric_limits<std::int64_t>::max());
}

// The lines of one store page, in export order (for_each_in_export_order).
Result<std::vector<std::string>> export_lines(const store::AuditPage& page);

struct ExportPage {
  std::vector<std::string> lines;  // each without its final LF
  std::int64_t next = 0;  // the `after` of the next page: the last seq here (the given after
                          // if the page is empty, which means the end of the log)
};

// Up to limit records after seq `after`, with their checkpoints, as export lines.
Result<ExportPage> export_page(store::AuditStore& store, std::int64_t after, std::size_t limit);

}  // namespace kekd::audit
