// Wipe-on-free for every C++ allocation of the kekd binary (docs/secret-hygiene.md).
//
// Secrets reach kekd as text: a DEK's base64 inside a JSON body, a client secret inside an
// Authorization header. On their way they pass through containers that kekd does not own and
// cannot give a zeroizing allocator: Beast's header fields, nlohmann's lexer (which grows its token
// buffer character by character, leaving a partial copy behind at every reallocation) and its
// serializer's output string, std::string copies in the handlers. Each of those releases its memory
// through ::operator delete, so replacing that one function here zeroes every released copy,
// whoever made it. SecretBytes (Botan's secure_vector) wipes itself through Botan's own allocator
// and never comes here.
//
// The cost is one explicit_bzero over the bytes released: memory that was just written and is
// still in cache. Memory from plain malloc (OpenSSL, SQLite) is not covered; none of it holds a
// DEK or client secret on kekd's plain-HTTP path (see the document for TLS).
//
// This file is linked into the kekd executable only, so that it replaces the operator for the
// whole process (shared libraries included) and not for the tests' binaries.
#include <malloc.h>
#include <string.h>

#include <cstdlib>
#include <new>

namespace {

// explicit_bzero: a memset the compiler may not remove because the memory is about to be freed.
inline void wipe_and_free(void* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  ::explicit_bzero(p, n);
  std::free(p);
}

// The unsized forms do not know the size the caller asked for; malloc knows what it handed out.
inline void wipe_and_free(void* p) noexcept {
  if (p == nullptr) return;
  wipe_and_free(p, ::malloc_usable_size(p));
}

}  // namespace

// libstdc++'s operator new and its aligned form allocate with malloc and aligned_alloc, both of
// which free() releases; the nothrow forms of delete forward to the plain ones below.
void operator delete(void* p) noexcept { wipe_and_free(p); }
void operator delete[](void* p) noexcept { wipe_and_free(p); }
void operator delete(void* p, std::size_t n) noexcept { wipe_and_free(p, n); }
void operator delete[](void* p, std::size_t n) noexcept { wipe_and_free(p, n); }
void operator delete(void* p, std::align_val_t) noexcept { wipe_and_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { wipe_and_free(p); }
void operator delete(void* p, std::size_t n, std::align_val_t) noexcept { wipe_and_free(p, n); }
void operator delete[](void* p, std::size_t n, std::align_val_t) noexcept { wipe_and_free(p, n); }
