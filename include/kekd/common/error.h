// The one error vocabulary of kekd.
//
// Every layer reports failures as an Error with a Code from this list. Lower layers convert their
// native failures once (CK_RV in src/hsm/ck_result.cc, SQLite codes in src/store), and the API
// layer chooses an HTTP status from the Code in one table. Nothing ever chooses behaviour by
// matching message text: messages are for people.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace kekd {

enum class Code {
  kInvalidArgument,     // malformed or out-of-range input
  kInvalidCiphertext,   // tampered, truncated, foreign or wrong-context ciphertext (one code)
  kNotFound,            // unknown key, version, ceremony, client, endpoint
  kMethodNotAllowed,    // a known endpoint asked with the wrong HTTP method
  kAlreadyExists,       // a name that is taken
  kFailedPrecondition,  // the state forbids it: disabled version, ceremony not open, ...
  kUnauthenticated,     // no or bad credentials
  kPermissionDenied,    // authenticated, but not granted
  kResourceExhausted,   // overloaded: too many connections or requests; retry later
  kPayloadTooLarge,     // a request, header or batch beyond its limit
  kUnavailable,         // the HSM or the store cannot serve now; retrying later may work
  kPinIncorrect,        // the token refused the PIN: never retried, it would lock the token
  kSignatureRejected,   // a ceremony approval whose signature does not verify
  kUnknownOperator,     // a ceremony approval from someone not in the operator set
  kDuplicateApproval,   // a second approval by the same operator
  kInternal,            // a bug or an unexpected answer from a dependency
};

// Stable snake_case name of a code, as it appears in API errors and logs.
std::string_view code_name(Code code);

class Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  Code code_;
  std::string message_;
};

// A value or an Error. Constructors that can fail are static factories returning a Result.
// E is Error everywhere but in a protocol face with its own errors (the KMS API's KmsError, which
// is made from an Error by that face's table, so a Result<T> converts into it).
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  template <typename F>
  requires(!std::is_same_v<F, E> && std::is_constructible_v<E, const F&>) Result(const F& error)
      : v_(std::in_place_index<1>, E(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// Result of an operation that produces nothing but can fail.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Code::kInternal, ""};
  bool ok_ = true;
};

inline Status ok_status() { return Status(); }

}  // namespace kekd

// Propagates a failed Status or Result from the enclosing function (its error converts to the
// enclosing function's error type).
#define KEKD_RETURN_IF_ERROR(expr) \
  do {                             \
    auto kekd_status_ = (expr);    \
    if (!kekd_status_.ok()) {      \
      return kekd_status_.error(); \
    }                              \
  } while (false)

#define KEKD_CONCAT_INNER_(a, b) a##b
#define KEKD_CONCAT_(a, b) KEKD_CONCAT_INNER_(a, b)

// KEKD_ASSIGN_OR_RETURN(auto x, f()): binds the value of f() or returns its Error.
#define KEKD_ASSIGN_OR_RETURN(lhs, expr) \
  KEKD_ASSIGN_OR_RETURN_IMPL_(KEKD_CONCAT_(kekd_result_, __LINE__), lhs, expr)
#define KEKD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) {                                  \
    return tmp.error();                             \
  }                                                 \
  lhs = std::move(tmp).value()
