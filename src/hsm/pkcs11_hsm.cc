#include "kekd/hsm/pkcs11_hsm.h"

#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/der_enc.h>
#include <botan/ecdsa.h>
#include <botan/hash.h>
#include <botan/x509_key.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "ck_result.h"
#include "kek_template.h"
#include "module.h"
#include "session_pool.h"

namespace kekd::hsm {
namespace {

constexpr std::size_t kKekIdBytes = 16;

// What an operation on one session ended with: CKR_OK, or the first failing call.
struct CkOutcome {
  CK_RV rv = CKR_OK;
  const char* function = "";
  CkCall call = CkCall::kGeneral;
};

// What kek_handle found besides a handle: no object under the label, or one that is not a KEK.
struct KekLookup {
  bool missing = false;
  std::string unfit;  // why the object is not a KEK kekd generated; empty if it is
};

// One lookup of a KEK's handle in the token, shared with those who wait for it.
struct KekSearch {
  std::uint64_t epoch = 0;  // Pkcs11Hsm::Impl::keys_epoch when it began
  std::condition_variable ended;
  bool done = false;
  bool answered = false;  // its calls succeeded: lookup and handle are the answer for every caller
  KekLookup lookup;
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
};

// The error for a KEK lookup that found no usable key (nullopt if it found one).
std::optional<Error> kek_refusal(const KekLookup& lookup, std::string_view label) {
  if (lookup.missing) {
    return Error(Code::kNotFound, "no key labelled " + std::string(label) + " in the token");
  }
  if (!lookup.unfit.empty()) {
    return Error(Code::kInternal, "the token object labelled " + std::string(label) +
                                      " is not a KEK that kekd generated (" + lookup.unfit +
                                      "); kekd will not use it: see docs/operations.md, "
                                      "\"A KEK that kekd refuses\"");
  }
  return std::nullopt;
}

CkOutcome failed(CK_RV rv, const char* function, CkCall call = CkCall::kGeneral) {
  return CkOutcome{rv, function, call};
}

ByteView as_bytes(std::string_view s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

bool stale_key_handle(CK_RV rv) {
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
         rv == CKR_WRAPPING_KEY_HANDLE_INVALID || rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID;
}

// Destroys a transient session object on every path out of a scope.
class ObjectGuard {
 public:
  ObjectGuard(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object)
      : fn_(fn), session_(session), object_(object) {}
  ~ObjectGuard() { fn_->C_DestroyObject(session_, object_); }
  ObjectGuard(const ObjectGuard&) = delete;
  ObjectGuard& operator=(const ObjectGuard&) = delete;

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_;
  CK_OBJECT_HANDLE object_;
};

// Runs a C_FindObjects search to the end; C_FindObjectsFinal is called on every path.
CkOutcome find_objects(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, AttributeTemplate& query,
                       std::vector<CK_OBJECT_HANDLE>& found) {
  CK_RV rv = fn->C_FindObjectsInit(session, query.data(), query.size());
  if (rv != CKR_OK) {
    return failed(rv, "C_FindObjectsInit");
  }
  CK_OBJECT_HANDLE batch[64];
  CK_ULONG count = 0;
  do {
    rv = fn->C_FindObjects(session, batch, 64, &count);
    if (rv != CKR_OK) {
      fn->C_FindObjectsFinal(session);
      return failed(rv, "C_FindObjects");
    }
    found.insert(found.end(), batch, batch + count);
  } while (count == 64);
  rv = fn->C_FindObjectsFinal(session);
  return rv == CKR_OK ? CkOutcome{} : failed(rv, "C_FindObjectsFinal");
}

CkOutcome find_by_label(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, std::string_view label,
                        std::vector<CK_OBJECT_HANDLE>& found,
                        CK_OBJECT_CLASS object_class = CKO_SECRET_KEY) {
  AttributeTemplate query;
  query.set_ulong(CKA_CLASS, object_class).set_bytes(CKA_LABEL, as_bytes(label));
  return find_objects(fn, session, query, found);
}

// Reads a variable-length attribute with the two-call convention of C_GetAttributeValue.
template <typename Buffer>
CkOutcome read_attribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                         CK_ATTRIBUTE_TYPE type, Buffer& out) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv != CKR_OK) {
    return failed(rv, "C_GetAttributeValue");
  }
  out.resize(attr.ulValueLen);
  attr.pValue = out.data();
  rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv != CKR_OK) {
    return failed(rv, "C_GetAttributeValue");
  }
  out.resize(attr.ulValueLen);
  return {};
}

// Reads an attribute whose length is at most `bound` in one call: a buffer that is large enough
// gets the value and its exact length (PKCS#11 v2.40, C_GetAttributeValue). An unwrapped payload
// is always shorter than its wrapping, so unwrap saves the length query of read_attribute, one of
// its four calls. A module that answers CKR_BUFFER_TOO_SMALL anyway gets the two-call convention.
template <typename Buffer>
CkOutcome read_bounded_attribute(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                                 CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, std::size_t bound,
                                 Buffer& out) {
  out.resize(bound);
  CK_ATTRIBUTE attr{type, out.data(), static_cast<CK_ULONG>(out.size())};
  CK_RV rv = fn->C_GetAttributeValue(session, object, &attr, 1);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    return read_attribute(fn, session, object, type, out);
  }
  if (rv != CKR_OK) {
    return failed(rv, "C_GetAttributeValue");
  }
  if (attr.ulValueLen > bound) {
    // A module that claims more than the buffer held: growing `out` would invent bytes.
    return failed(CKR_GENERAL_ERROR, "C_GetAttributeValue");
  }
  out.resize(attr.ulValueLen);
  return {};
}

// The session a thread keeps while it has a hold (Hsm::hold_session), and which Impl it is of.
struct HeldSession {
  const void* owner = nullptr;
  std::optional<SessionPool::Lease> lease;
};
thread_local HeldSession* t_held = nullptr;

class Pkcs11SessionHold final : public Hsm::SessionHold {
 public:
  explicit Pkcs11SessionHold(const void* owner) {
    state_.owner = owner;
    t_held = &state_;
  }
  // The kept lease, if any, goes back to the pool with state_.
  ~Pkcs11SessionHold() override { t_held = nullptr; }
  Pkcs11SessionHold(const Pkcs11SessionHold&) = delete;
  Pkcs11SessionHold& operator=(const Pkcs11SessionHold&) = delete;

 private:
  HeldSession state_;
};

// Transient objects after which kekd re-initialises SoftHSM when kekd.toml does not say
// (hsm.reinitialize_after): SoftHSM keeps about 240 bytes of each until C_Finalize, so this
// bounds that to about 23 MiB, for a pause of some tens of milliseconds per 100,000 operations
// (more with many keys in the token: docs/operations.md, "SoftHSM's memory").
constexpr std::uint64_t kSoftHsmReinitializeAfter = 100'000;

}  // namespace

struct Pkcs11Hsm::Impl {
  std::unique_ptr<Module> module;
  std::unique_ptr<SessionPool> pool;
  std::string token_label;

  // Re-initialising the module (SessionPool::reinitialize): after how many transient objects (0:
  // never), how many since the last one, and how they went. One at a time, under reinit_mu.
  std::uint64_t reinitialize_after = 0;
  std::atomic<std::uint64_t> transient_objects{0};
  std::mutex reinit_mu;
  std::atomic<std::uint64_t> reinitializations{0};
  std::atomic<std::uint64_t> reinitialize_failures{0};

  std::shared_mutex handles_mu;
  std::unordered_map<std::string, CK_OBJECT_HANDLE> handles;
  // kek_handle's searches in progress, by label, for the callers that wait for them, and the
  // count of changes to keys and handles that decides who may (keys_changed).
  std::mutex searches_mu;
  std::unordered_map<std::string, std::shared_ptr<KekSearch>> searches;
  std::atomic<std::uint64_t> keys_epoch{0};
  bool require_generated_keks = true;

  CK_FUNCTION_LIST* fn() const { return module->fn(); }

  void forget_handles() {
    std::unique_lock lock(handles_mu);
    handles.clear();
    keys_changed();  // under handles_mu: see search_kek
  }

  // A wrap or unwrap made a session object (destroyed again at once).
  void count_transient_object() { transient_objects.fetch_add(1, std::memory_order_relaxed); }

  // One re-initialisation, with reinit_mu held. If C_Initialize or finding the token failed, the
  // pool is not module_ready(): no session can open until heal() has done this again. (Sessions
  // that failed to open on a module that came back are reopened by heal() as after any fault.)
  Status reinitialize_locked() {
    Status finalize_refused = ok_status();
    Status status = pool->reinitialize([&]() -> Result<CK_SLOT_ID> {
      forget_handles();  // object handles mean nothing to the re-initialised module
      Status reinit = module->reinitialize();
      if (!reinit.ok()) {
        if (!module->initialized()) return reinit.error();
        // C_Finalize refused: the module is as it was, and its sessions reopen on it.
        finalize_refused = reinit;
      }
      return module->find_token(token_label);
    });
    return status.ok() ? finalize_refused : status;
  }

  void forget_handle(std::string_view label) {
    std::unique_lock lock(handles_mu);
    handles.erase(std::string(label));
    keys_changed();  // under handles_mu: see search_kek
  }

  // The KEK's object handle, through a cache: handles of token objects stay valid while the
  // module is initialised, and a C_FindObjects per wrap would cost more than the wrap.
  // Sets found.missing when no such KEK is in the token, and found.unfit when the object under
  // the label is not one kekd could have generated (returning CKR_OK for both).
  CkOutcome kek_handle(CK_SESSION_HANDLE session, std::string_view label, CK_OBJECT_HANDLE& out,
                       KekLookup& lookup) {
    lookup = KekLookup{};
    // Read before the cache: a search begun before the keys or the handles changed since does
    // not answer this call (a key generated just before it, a retry after a stale handle).
    const std::uint64_t epoch = keys_epoch.load(std::memory_order_acquire);
    if (cached_handle(label, out)) return {};
    // One search per label at a time. SoftHSM's C_FindObjects reads every object in the token
    // (about 60 ms with 1000 keys), and after start-up or a re-initialisation every worker misses
    // the cache at once: 16 sessions looking up the same label together held requests up for
    // 600 ms. The others wait for the first and take its answer.
    std::string key(label);
    auto mine = std::make_shared<KekSearch>();
    mine->epoch = epoch;
    {
      std::unique_lock lock(searches_mu);
      auto [it, first] = searches.try_emplace(key, mine);
      if (!first && it->second->epoch < epoch) {
        // A search from before a change: the next callers wait for this one instead. (Its own
        // end_search leaves the entry alone.)
        it->second = mine;
        first = true;
      }
      if (!first) {
        // Begun at or after this call's epoch: its answer is as fresh as this call needs.
        std::shared_ptr<KekSearch> search = it->second;
        search->ended.wait(lock, [&] { return search->done; });
        if (search->answered) {
          lookup = search->lookup;
          out = search->handle;
          return {};
        }
        // Its call failed (on its own session: its CK_RV is not ours to report): look on our
        // session, alongside the others that waited for it rather than one after another.
        lock.unlock();
        return search_kek(session, label, epoch, out, lookup);
      }
    }
    CkOutcome outcome;
    try {
      outcome = search_kek(session, label, epoch, out, lookup);
      mine->lookup = lookup;  // read by the waiters only once done is set, under searches_mu
      mine->handle = out;
    } catch (...) {
      end_search(key, *mine, false);  // no waiter may wait for ever
      throw;
    }
    end_search(key, *mine, outcome.rv == CKR_OK);
    return outcome;
  }

  // Publishes a search's answer (its caller's lookup and handle, if `answered`) to its waiters.
  void end_search(const std::string& key, KekSearch& search, bool answered) {
    {
      std::lock_guard lock(searches_mu);
      search.done = true;
      search.answered = answered;
      auto it = searches.find(key);
      if (it != searches.end() && it->second.get() == &search) searches.erase(it);
    }
    search.ended.notify_all();
  }

  // Handles or keys changed (a lost session, a re-initialisation, a key generated or destroyed):
  // searches begun before answer no call made after.
  void keys_changed() { keys_epoch.fetch_add(1, std::memory_order_acq_rel); }

  bool cached_handle(std::string_view label, CK_OBJECT_HANDLE& out) {
    std::shared_lock lock(handles_mu);
    auto it = handles.find(std::string(label));
    if (it == handles.end()) return false;
    out = it->second;
    return true;
  }

  // kek_handle's lookup in the token, caching what it finds.
  CkOutcome search_kek(CK_SESSION_HANDLE session, std::string_view label, std::uint64_t epoch,
                       CK_OBJECT_HANDLE& out, KekLookup& lookup) {
    // The cache again: another search may have ended between kek_handle's look and this one.
    if (cached_handle(label, out)) return {};
    std::vector<CK_OBJECT_HANDLE> found;
    CkOutcome outcome = find_by_label(fn(), session, label, found);
    if (outcome.rv != CKR_OK) {
      return outcome;
    }
    if (found.size() != 1) {
      // Zero is a missing KEK; several would make the label ambiguous, which kekd never creates.
      lookup.missing = true;
      return {};
    }
    // Checked once, before the handle is cached: the check costs a C_GetAttributeValue, and a
    // token object's attributes that matter here can never change back (PKCS#11 lets
    // CKA_EXTRACTABLE go only from true to false, CKA_SENSITIVE only from false to true).
    outcome = check_kek(session, found.front(), lookup.unfit);
    if (outcome.rv != CKR_OK || !lookup.unfit.empty()) {
      return outcome;
    }
    out = found.front();
    std::unique_lock lock(handles_mu);
    // Not cached if the handles were forgotten since the search began (keys_changed is called
    // under handles_mu): the handle may be the stale one they were forgotten for.
    if (keys_epoch.load(std::memory_order_relaxed) == epoch) {
      handles.emplace(std::string(label), out);
    }
    return {};
  }

  // Why the object is not a KEK that kekd generated, or nothing. The token alone sets
  // CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE. CKA_LOCAL is true only for a key
  // generated inside it (C_GenerateKey) or a copy of one, so it refuses what someone with the PIN
  // imported, unwrapped or derived under a KEK's label (a derived key inherits the other two from
  // its base key, and its value can be known: AES-ECB-encrypt-data of known data). The other two
  // refuse a generated key that was ever sensitive-free or extractable (docs/security.md, G2).
  CkOutcome check_kek(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, std::string& unfit) {
    CK_OBJECT_CLASS object_class = 0;
    CK_KEY_TYPE key_type = 0;
    CK_ULONG value_len = 0;
    CK_BBOOL token = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
    CK_BBOOL always_sensitive = CK_FALSE, never_extractable = CK_FALSE, local = CK_FALSE;
    CK_ATTRIBUTE attrs[] = {
        {CKA_CLASS, &object_class, sizeof object_class},
        {CKA_KEY_TYPE, &key_type, sizeof key_type},
        {CKA_VALUE_LEN, &value_len, sizeof value_len},
        {CKA_TOKEN, &token, sizeof token},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof always_sensitive},
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof never_extractable},
        {CKA_LOCAL, &local, sizeof local},
    };
    CK_RV rv = fn()->C_GetAttributeValue(session, object, attrs, std::size(attrs));
    // An attribute the object does not have (not a secret key, say) is a finding, not a failure.
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID) {
      return failed(rv, "C_GetAttributeValue");
    }
    std::vector<std::string> wrong;
    auto has = [](const CK_ATTRIBUTE& a) { return a.ulValueLen != CK_UNAVAILABLE_INFORMATION; };
    if (!has(attrs[0]) || object_class != CKO_SECRET_KEY) wrong.push_back("not a secret key");
    if (!has(attrs[1]) || key_type != CKK_AES) wrong.push_back("not an AES key");
    if (!has(attrs[2]) || value_len != 32) wrong.push_back("not 32 bytes long");
    if (!has(attrs[3]) || token != CK_TRUE) wrong.push_back("not a token object");
    if (require_generated_keks) {
      if (!has(attrs[4]) || sensitive != CK_TRUE) wrong.push_back("CKA_SENSITIVE is false");
      if (!has(attrs[5]) || extractable != CK_FALSE) wrong.push_back("CKA_EXTRACTABLE is true");
      if (!has(attrs[6]) || always_sensitive != CK_TRUE) {
        wrong.push_back("CKA_ALWAYS_SENSITIVE is false");
      }
      if (!has(attrs[7]) || never_extractable != CK_TRUE) {
        wrong.push_back("CKA_NEVER_EXTRACTABLE is false");
      }
      if (!has(attrs[8]) || local != CK_TRUE) {
        wrong.push_back(
            "CKA_LOCAL is false (not generated in the token: imported, unwrapped or "
            "derived)");
      }
    }
    for (const std::string& w : wrong) {
      unfit += (unfit.empty() ? "" : ", ") + w;
    }
    return {};
  }

  // Creates a token object under label with a fresh random CKA_ID, through make(session, id);
  // kAlreadyExists if an object of object_class already has the label.
  template <typename Make>
  Status generate(std::string_view label, CK_OBJECT_CLASS object_class, Make&& make) {
    bool exists = false;
    Status status = run([&](CK_SESSION_HANDLE session) {
      std::vector<CK_OBJECT_HANDLE> found;
      CkOutcome outcome = find_by_label(fn(), session, label, found, object_class);
      exists = !found.empty();
      if (outcome.rv != CKR_OK || exists) {
        return outcome;
      }
      std::uint8_t id[kKekIdBytes];
      CK_RV rv = fn()->C_GenerateRandom(session, id, sizeof id);
      if (rv != CKR_OK) {
        return failed(rv, "C_GenerateRandom");
      }
      return make(session, ByteView(id, sizeof id));
    });
    if (status.ok() && exists) {
      return Error(Code::kAlreadyExists,
                   "the token already holds a key labelled " + std::string(label));
    }
    return status;
  }

  // Runs op on a leased session: the one this thread holds (hold_session), or one taken for this
  // call. A lost session, or a cached KEK handle gone stale, earns one more try on a fresh lease;
  // every other failure is converted once, by ck_error.
  template <typename Op>
  Status run(Op&& op) {
    HeldSession* held = t_held != nullptr && t_held->owner == this ? t_held : nullptr;
    for (int attempt = 0;; ++attempt) {
      std::optional<SessionPool::Lease> own;
      SessionPool::Lease* lease;
      // Someone else waits for a session (another worker, the audit's signer): give the held one
      // back between calls and queue for one again, as every call did before holds. Otherwise a
      // long batch on a slow HSM would keep its session for seconds, past their acquire timeout.
      if (held != nullptr && held->lease && pool->has_waiters()) {
        pool->hand_over(std::move(*held->lease));
        held->lease.reset();
      }
      if (held != nullptr && held->lease) {
        pool->touch(*held->lease);
        lease = &*held->lease;
      } else {
        KEKD_ASSIGN_OR_RETURN(SessionPool::Lease fresh, pool->acquire());
        std::optional<SessionPool::Lease>& slot = held != nullptr ? held->lease : own;
        slot.emplace(std::move(fresh));
        lease = &*slot;
      }
      CkOutcome outcome = op(lease->handle());
      if (outcome.rv == CKR_OK) {
        return ok_status();
      }
      lease->report(outcome.rv);
      // A failed call gives a held session back (to be replaced if the call lost it): the retry,
      // or the next call, takes a fresh lease.
      if (held != nullptr) held->lease.reset();
      bool session_gone = ck_session_lost(outcome.rv) || ck_device_failed(outcome.rv);
      if (session_gone || stale_key_handle(outcome.rv)) {
        // After a lost session the module may hand out new handles: drop every cached one.
        forget_handles();
      }
      bool retry = ck_session_lost(outcome.rv) || stale_key_handle(outcome.rv);
      if (!retry || attempt > 0) {
        return ck_error(outcome.rv, outcome.function, outcome.call);
      }
    }
  }
};

Pkcs11Hsm::Pkcs11Hsm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pkcs11Hsm::~Pkcs11Hsm() {
  impl_->pool.reset();  // close the sessions before C_Finalize
}

Module& Pkcs11Hsm::module() { return *impl_->module; }
SessionPool& Pkcs11Hsm::sessions() { return *impl_->pool; }
bool Pkcs11Hsm::healthy() const { return impl_->pool->healthy(); }
SessionHealth Pkcs11Hsm::health() const {
  SessionHealth h = impl_->pool->health();
  h.reinitialize_after = impl_->reinitialize_after;
  h.reinitializations = impl_->reinitializations.load();
  h.reinitialize_failures = impl_->reinitialize_failures.load();
  return h;
}

Status Pkcs11Hsm::reinitialize_if_due() {
  Impl& impl = *impl_;
  const std::uint64_t made = impl.transient_objects.load(std::memory_order_relaxed);
  if (impl.reinitialize_after == 0 || made < impl.reinitialize_after) return ok_status();
  std::unique_lock lock(impl.reinit_mu, std::try_to_lock);
  if (!lock.owns_lock()) return ok_status();  // heal() is re-initialising already
  Status status = impl.reinitialize_locked();
  // Counted from here whatever happened: a failure is tried again after as many objects more,
  // not at once (each try may hold every request up for a while).
  impl.transient_objects.fetch_sub(made, std::memory_order_relaxed);
  (status.ok() ? impl.reinitializations : impl.reinitialize_failures).fetch_add(1);
  return status;
}

Status Pkcs11Hsm::heal() {
  // A re-initialisation that failed after C_Finalize: the module, or the token's slot, must be
  // set up again before any session can open. Its failures are not counted again here: the
  // first one was.
  if (!impl_->pool->module_ready()) {
    std::lock_guard lock(impl_->reinit_mu);
    if (!impl_->pool->module_ready()) {  // not done meanwhile by reinitialize_if_due()
      Status status = impl_->reinitialize_locked();
      if (status.ok()) impl_->reinitializations.fetch_add(1);
      return status;
    }
  }
  return impl_->pool->reopen_broken();
}

std::unique_ptr<Hsm::SessionHold> Pkcs11Hsm::hold_session() {
  // Within a hold already (of this Hsm or another): the outer hold decides.
  if (t_held != nullptr) return nullptr;
  return std::make_unique<Pkcs11SessionHold>(impl_.get());
}

Result<std::unique_ptr<Pkcs11Hsm>> Pkcs11Hsm::open(Pkcs11Config config) {
  auto impl = std::make_unique<Impl>();
  impl->require_generated_keks = config.require_generated_keks;
  impl->token_label = config.token_label;
  KEKD_ASSIGN_OR_RETURN(impl->module, Module::load(config.module_path));
  impl->reinitialize_after = config.reinitialize_after.value_or(
      impl->module->manufacturer() == "SoftHSM" ? kSoftHsmReinitializeAfter : 0);
  KEKD_ASSIGN_OR_RETURN(CK_SLOT_ID slot, impl->module->find_token(config.token_label));
  SessionPool::Options options;
  options.size = config.sessions;
  options.acquire_timeout = config.acquire_timeout;
  options.stall_threshold = config.stall_threshold;
  KEKD_ASSIGN_OR_RETURN(impl->pool,
                        SessionPool::open(*impl->module, slot, std::move(config.pin), options));
  return std::unique_ptr<Pkcs11Hsm>(new Pkcs11Hsm(std::move(impl)));
}

Status Pkcs11Hsm::generate_kek(std::string_view label) {
  Status status =
      impl_->generate(label, CKO_SECRET_KEY, [&](CK_SESSION_HANDLE session, ByteView id) {
        AttributeTemplate kek = kek_template(label, id);
        CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
        CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
        CK_RV rv = impl_->fn()->C_GenerateKey(session, &mechanism, kek.data(), kek.size(), &handle);
        return rv == CKR_OK ? CkOutcome{} : failed(rv, "C_GenerateKey");
      });
  // A search for the label that began before may have found nothing: it answers no later call.
  impl_->keys_changed();
  return status;
}

Result<std::vector<std::string>> Pkcs11Hsm::find_keks(std::string_view prefix) {
  std::vector<std::string> labels;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    labels.clear();
    AttributeTemplate query;
    query.set_ulong(CKA_CLASS, CKO_SECRET_KEY).set_bool(CKA_TOKEN, true);
    std::vector<CK_OBJECT_HANDLE> found;
    CkOutcome outcome = find_objects(impl_->fn(), session, query, found);
    if (outcome.rv != CKR_OK) {
      return outcome;
    }
    for (CK_OBJECT_HANDLE object : found) {
      std::string label;
      outcome = read_attribute(impl_->fn(), session, object, CKA_LABEL, label);
      if (outcome.rv != CKR_OK) {
        return outcome;
      }
      if (label.starts_with(prefix)) {
        labels.push_back(std::move(label));
      }
    }
    return CkOutcome{};
  });
  KEKD_RETURN_IF_ERROR(status);
  std::sort(labels.begin(), labels.end());
  return labels;
}

Status Pkcs11Hsm::destroy_kek(std::string_view label) {
  bool missing = false;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    std::vector<CK_OBJECT_HANDLE> found;
    CkOutcome outcome = find_by_label(impl_->fn(), session, label, found);
    if (outcome.rv != CKR_OK) {
      return outcome;
    }
    missing = found.empty();
    for (CK_OBJECT_HANDLE object : found) {
      CK_RV rv = impl_->fn()->C_DestroyObject(session, object);
      if (rv != CKR_OK) {
        return failed(rv, "C_DestroyObject");
      }
    }
    return CkOutcome{};
  });
  impl_->forget_handle(label);
  KEKD_RETURN_IF_ERROR(status);
  if (missing) {
    return Error(Code::kNotFound, "no key labelled " + std::string(label) + " in the token");
  }
  return ok_status();
}

Result<Bytes> Pkcs11Hsm::wrap(std::string_view label, ByteView payload) {
  if (payload.size() < 16 || payload.size() % 8 != 0) {
    return Error(Code::kInvalidArgument, "a payload to wrap must be a multiple of 8 bytes, >= 16");
  }
  Bytes wrapped;
  KekLookup lookup;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    CkOutcome outcome = impl_->kek_handle(session, label, kek, lookup);
    if (outcome.rv != CKR_OK || lookup.missing || !lookup.unfit.empty()) {
      return outcome;
    }
    AttributeTemplate object_template = payload_object_template(payload);
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    CK_RV rv = impl_->fn()->C_CreateObject(session, object_template.data(), object_template.size(),
                                           &object);
    if (rv != CKR_OK) {
      return failed(rv, "C_CreateObject");
    }
    impl_->count_transient_object();
    ObjectGuard guard(impl_->fn(), session, object);
    CK_MECHANISM mechanism{kKekMechanism, nullptr, 0};
    wrapped.resize(payload.size() + 16);  // RFC 5649 adds at most 8 bytes; spare room is cheap
    CK_ULONG length = wrapped.size();
    rv = impl_->fn()->C_WrapKey(session, &mechanism, kek, object, wrapped.data(), &length);
    if (rv != CKR_OK) {
      return failed(rv, "C_WrapKey");
    }
    wrapped.resize(length);
    return CkOutcome{};
  });
  KEKD_RETURN_IF_ERROR(status);
  if (std::optional<Error> refused = kek_refusal(lookup, label)) {
    return *refused;
  }
  return wrapped;
}

Result<SecretBytes> Pkcs11Hsm::unwrap(std::string_view label, ByteView wrapped) {
  SecretBytes payload;
  KekLookup lookup;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    CkOutcome outcome = impl_->kek_handle(session, label, kek, lookup);
    if (outcome.rv != CKR_OK || lookup.missing || !lookup.unfit.empty()) {
      return outcome;
    }
    AttributeTemplate object_template = unwrapped_payload_template();
    CK_MECHANISM mechanism{kKekMechanism, nullptr, 0};
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    CK_RV rv = impl_->fn()->C_UnwrapKey(session, &mechanism, kek,
                                        const_cast<std::uint8_t*>(wrapped.data()), wrapped.size(),
                                        object_template.data(), object_template.size(), &object);
    if (rv != CKR_OK) {
      return failed(rv, "C_UnwrapKey", CkCall::kUnwrap);
    }
    impl_->count_transient_object();
    ObjectGuard guard(impl_->fn(), session, object);
    // RFC 5649: the wrapping is the padded payload plus an 8-byte integrity block.
    return read_bounded_attribute(impl_->fn(), session, object, CKA_VALUE, wrapped.size() - 8,
                                  payload);
  });
  KEKD_RETURN_IF_ERROR(status);
  if (std::optional<Error> refused = kek_refusal(lookup, label)) {
    return *refused;
  }
  return payload;
}

Result<SecretBytes> Pkcs11Hsm::random(std::size_t n) {
  SecretBytes out(n);
  if (n == 0) {
    return out;
  }
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    CK_RV rv = impl_->fn()->C_GenerateRandom(session, out.data(), out.size());
    return rv == CKR_OK ? CkOutcome{} : failed(rv, "C_GenerateRandom");
  });
  KEKD_RETURN_IF_ERROR(status);
  return out;
}

Status Pkcs11Hsm::generate_signing_key(std::string_view label) {
  return impl_->generate(label, CKO_PRIVATE_KEY, [&](CK_SESSION_HANDLE session, ByteView id) {
    AttributeTemplate pub = signing_public_template(label, id);
    AttributeTemplate priv = signing_private_template(label, id);
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE priv_handle = CK_INVALID_HANDLE;
    CK_RV rv = impl_->fn()->C_GenerateKeyPair(session, &mechanism, pub.data(), pub.size(),
                                              priv.data(), priv.size(), &pub_handle, &priv_handle);
    return rv == CKR_OK ? CkOutcome{} : failed(rv, "C_GenerateKeyPair");
  });
}

Result<Bytes> Pkcs11Hsm::signing_public_key(std::string_view label) {
  Bytes point;
  bool missing = false;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    std::vector<CK_OBJECT_HANDLE> found;
    CkOutcome outcome = find_by_label(impl_->fn(), session, label, found, CKO_PUBLIC_KEY);
    missing = found.size() != 1;
    if (outcome.rv != CKR_OK || missing) {
      return outcome;
    }
    return read_attribute(impl_->fn(), session, found.front(), CKA_EC_POINT, point);
  });
  KEKD_RETURN_IF_ERROR(status);
  if (missing) {
    return Error(Code::kNotFound, "no signing key labelled " + std::string(label));
  }
  try {
    // PKCS#11 v2.40 says CKA_EC_POINT is a DER OCTET STRING; some modules give the bare point.
    std::vector<std::uint8_t> raw;
    if (point.size() == 65 && point[0] == 0x04) {
      raw = point;
    } else {
      Botan::BER_Decoder(point).decode(raw, Botan::OCTET_STRING).verify_end();
    }
    Botan::EC_Group group("secp256r1");
    Botan::ECDSA_PublicKey key(group, group.OS2ECP(raw));
    return Botan::X509::BER_encode(key);
  } catch (const std::exception& e) {
    return Error(Code::kInternal, "the token's public key for " + std::string(label) +
                                      " is not a P-256 point: " + e.what());
  }
}

Result<Bytes> Pkcs11Hsm::sign(std::string_view label, ByteView message) {
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(message.data(), message.size());
  std::vector<std::uint8_t> digest = sha256->final_stdvec();
  Bytes raw(64);
  bool missing = false;
  Status status = impl_->run([&](CK_SESSION_HANDLE session) {
    std::vector<CK_OBJECT_HANDLE> found;
    CkOutcome outcome = find_by_label(impl_->fn(), session, label, found, CKO_PRIVATE_KEY);
    missing = found.size() != 1;
    if (outcome.rv != CKR_OK || missing) {
      return outcome;
    }
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    CK_RV rv = impl_->fn()->C_SignInit(session, &mechanism, found.front());
    if (rv != CKR_OK) {
      return failed(rv, "C_SignInit");
    }
    CK_ULONG length = raw.size();
    rv = impl_->fn()->C_Sign(session, digest.data(), digest.size(), raw.data(), &length);
    if (rv != CKR_OK) {
      return failed(rv, "C_Sign");
    }
    raw.resize(length);
    return CkOutcome{};
  });
  KEKD_RETURN_IF_ERROR(status);
  if (missing) {
    return Error(Code::kNotFound, "no signing key labelled " + std::string(label));
  }
  if (raw.size() != 64) {
    return Error(Code::kInternal, "the token returned an ECDSA signature of unexpected size");
  }
  // PKCS#11 gives r || s; openssl and Botan's verifiers here take the DER SEQUENCE of two INTEGERs.
  Botan::BigInt r(raw.data(), 32);
  Botan::BigInt s(raw.data() + 32, 32);
  Bytes der;
  Botan::DER_Encoder(der).start_cons(Botan::SEQUENCE).encode(r).encode(s).end_cons();
  return der;
}

}  // namespace kekd::hsm
