#include "kekd/daemon/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <botan/mem_ops.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "kekd/audit/audit_log.h"
#include "kekd/daemon/deployment.h"
#include "kekd/daemon/operators_file.h"
#include "kekd/quorum/operator_set.h"

namespace kekd::daemon {
namespace {

// Opens the credential file before anything is created: O_EXCL so an existing credential is never
// overwritten, mode 0600 from the first byte.
Result<int> create_credential_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Error(Code::kFailedPrecondition,
                 "cannot create " + path + " (it must not exist yet): " + std::strerror(errno));
  }
  return fd;
}

}  // namespace

Status run_init(const InitOptions& options) {
  KEKD_ASSIGN_OR_RETURN(Config config, load_config(options.config_path));
  KEKD_ASSIGN_OR_RETURN(std::vector<quorum::Operator> operators,
                        load_operators_file(options.operators_path));
  KEKD_ASSIGN_OR_RETURN(quorum::OperatorSet set,
                        quorum::make_operator_set(std::move(operators), options.threshold,
                                                  options.force_single_approver));

  Deployment d;
  KEKD_ASSIGN_OR_RETURN(d.hsm, open_hsm(config));
  KEKD_ASSIGN_OR_RETURN(std::vector<std::string> internal, d.hsm->find_keks(kInternalPrefix));
  if (!internal.empty()) {
    return Error(Code::kFailedPrecondition,
                 "token '" + config.hsm.token_label + "' is initialised already (it holds " +
                     internal.front() + "); kekd init runs once per deployment");
  }
  KEKD_ASSIGN_OR_RETURN(int fd, create_credential_file(options.admin_credential_out));
  auto fail = [&](const Error& e) {
    ::close(fd);
    ::unlink(options.admin_credential_out.c_str());
    return e;
  };

  Status made = api::Credentials::create_token_key(*d.hsm);
  if (made.ok()) made = d.hsm->generate_signing_key(kSigningKeyLabel);
  if (made.ok()) made = open_services(config, *d.hsm, d);
  if (made.ok()) made = d.ceremonies->init_operators(set);
  if (!made.ok()) return fail(made.error());

  Result<api::NewClient> admin = d.credentials->create(true, "[]", now_millis());
  if (!admin.ok()) return fail(admin.error());

  // The deployment's first records: the genesis operator set and the admin client, signed by a
  // checkpoint when the log closes.
  {
    KEKD_ASSIGN_OR_RETURN(std::unique_ptr<audit::AuditLog> log,
                          audit::AuditLog::open(*d.store, *d.hsm, std::string(kSigningKeyLabel)));
    audit::AuditEvent operators_event;
    operators_event.principal = "kekd-init";
    operators_event.action = "operators.init";
    operators_event.subject = set.hash();
    audit::AuditEvent admin_event;
    admin_event.principal = "kekd-init";
    admin_event.action = "client.create";
    admin_event.subject = admin->client_id;
    Status recorded = log->record_all({operators_event, admin_event});
    if (recorded.ok()) recorded = log->close();
    if (!recorded.ok()) return fail(recorded.error());
  }
  std::string token = admin->token() + "\n";
  bool written = ::write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size()) &&
                 ::fsync(fd) == 0;
  Botan::secure_scrub_memory(token.data(), token.size());
  ::close(fd);
  if (!written) {
    return Error(Code::kUnavailable, "could not write " + options.admin_credential_out);
  }

  std::cout << "kekd initialised\n"
            << "  token:            " << config.hsm.token_label << " (" << config.hsm.module
            << ")\n"
            << "  store:            " << config.store_path << "\n"
            << "  operators:        " << set.operators.size() << ", threshold " << set.threshold
            << ", set " << set.hash() << "\n"
            << "  admin credential: " << options.admin_credential_out << " (mode 0600; client "
            << admin->client_id << ")\n";
  return ok_status();
}

}  // namespace kekd::daemon
