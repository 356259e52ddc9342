// Where the API and the ceremony service send audit events: the audit log (audit_log.h) in kekd,
// a recording fake in unit tests. Both calls return once the events are durable, or with the
// error that kept them from being recorded; the caller then must not report success.
#pragma once

#include <functional>
#include <vector>

#include "kekd/audit/record.h"
#include "kekd/common/error.h"

namespace kekd::audit {

class AuditSink {
 public:
  virtual ~AuditSink() = default;

  virtual Status record(AuditEvent event) = 0;

  // The events in this order (other callers' records may fall in between), waiting once for all
  // of them: a batch request costs one wait, not one per item. The first error, if any; events
  // before a failed one may have been recorded.
  virtual Status record_all(std::vector<AuditEvent> events) = 0;

  // As record_all(), without waiting: on_durable gets the outcome once the events are durable
  // (or could not be recorded), on the log's own thread, or at once on this one. It must be
  // quick: it only hands the answer back to the thread that sends it. This is how the API
  // answers a request only after its records are on disk without keeping a thread asleep.
  virtual void submit(std::vector<AuditEvent> events, std::function<void(Status)> on_durable) = 0;
};

}  // namespace kekd::audit
