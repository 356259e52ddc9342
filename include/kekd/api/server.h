// The HTTP/1.1 server (Boost.Beast 1.74, patterns from its advanced_server_flex example).
//
// I/O threads only accept, read, parse and write; the handler runs on a separate worker pool,
// because it calls the HSM, and PKCS#11 calls block (a network HSM takes milliseconds). A slow
// HSM therefore never stalls reading and writing for other connections.
//
// Bounded everything, so that no client can hold more than its share (docs/operations.md, "Limits
// and hostile clients"):
// - header_limit bounds the request line and headers, and also every line the parser must hold
//   whole (a chunk-size line with its extensions, a trailer): it is the read buffer's capacity.
//   body_limit bounds the body, chunked or not. Beyond either: 413, then the connection closes.
// - read_timeout: a request, once its first byte has arrived (or a TLS handshake, once the
//   connection is accepted), must arrive whole within it; a response must be taken by the client
//   within it. Slow senders and clients that never read are cut off by it.
// - idle_timeout: how long a connection may wait for the first byte of its next request. One
//   timer checks every waiting connection each eighth of the timeout (at most each second) and
//   closes those that have waited longer: never before the timeout, about one tick after it at
//   most. (A TLS connection's wait also has its stream's own timer.)
// - max_connections: at the limit, the connection that has waited longest for its next request is
//   closed to admit the new one (as nginx reuses keep-alive connections), so that idle connections,
//   however many, never lock a well-behaved client out. Only when no connection is idle (all are in
//   a request or a TLS handshake, each bounded by read_timeout) is a new connection closed at once.
// One connection holds at most one request and one response in memory: a client that pipelines
// requests without reading the answers is read no further until it reads.
// stop() stops accepting, lets in-flight requests finish (up to a drain timeout) and stops the I/O
// threads; the destructor then closes every connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kekd/api/http_message.h"
#include "kekd/common/error.h"

namespace kekd::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8200;  // 0: any free port (tests)
  std::size_t io_threads = 2;
  std::size_t workers = 8;
  // The CPUs the workers may run on (RequestQueue::pin_workers); empty: any.
  std::vector<unsigned> worker_cpus;
  std::size_t max_connections = 1024;
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = 1024 * 1024;
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  // TLS when cert and key are set; client certificates required when client_ca is set.
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  // Requests the handler answers at once, without the HSM or the audit log (health, readiness,
  // metrics): they run on the I/O thread, so that they never queue behind HSM work on the pool.
  std::function<bool(const HttpRequest&)> answers_at_once;
  // A request that has waited queue_timeout for a worker is answered with on_queue_timeout's
  // response instead, and never runs (0 or no function: it waits as long as it takes). Workers
  // block in HSM calls, so a worker that does not come means the HSM is slow or stuck: the client
  // gets a prompt, retryable answer rather than waiting for the HSM to come back.
  std::chrono::milliseconds queue_timeout{0};
  std::function<HttpResponse(const HttpRequest&)> on_queue_timeout;
};

// Answers a request by calling the responder exactly once, from any thread, now or later (when
// the request's audit records are durable): the worker that ran the handler is free meanwhile.
// A responder holds its connection, whose socket belongs to the server's io_context: every
// responder must be called or destroyed before the server is (stop() first is enough for calling).
using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(const HttpRequest&, Responder)>;

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(ServerOptions options, Handler handler);
  ~HttpServer();

  std::uint16_t port() const;
  std::size_t open_connections() const;
  // Requests answered by ServerOptions::on_queue_timeout since start.
  std::uint64_t queue_timeouts() const;

  // Since start, for the metrics: connections closed at accept because none could be reclaimed,
  // idle connections closed to admit a new one, and failed accepts (out of file descriptors).
  struct ConnectionCounts {
    std::size_t refused = 0;
    std::size_t reclaimed = 0;
    std::size_t accept_failures = 0;
  };
  ConnectionCounts connection_counts() const;

  // Stops accepting, waits for in-flight requests up to drain, then stops the I/O threads and drops
  // requests that no worker has started. Returns once the running handlers have returned: one
  // blocked in an HSM call that never returns blocks it too. A responder called after stop() is
  // harmless (its response is discarded); the connections close when the server is destroyed.
  void stop(std::chrono::milliseconds drain);

  struct State;

 private:
  explicit HttpServer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace kekd::api
