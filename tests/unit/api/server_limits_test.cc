// The HTTP server at its connection limit, over real loopback sockets: idle connections are
// reclaimed, oldest first, to admit a new client; only when every connection is inside a request
// is a new one refused. tests/e2e/test_hostile_clients.py drives the same behaviour at scale
// through the real daemon.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kekd/api/server.h"
#include "support/loopback_client.h"

using namespace std::chrono_literals;
using kekd::api::HttpRequest;
using kekd::api::HttpResponse;
using kekd::api::HttpServer;
using kekd::api::Responder;
using kekd::api::ServerOptions;
using Client = kekd::testing::LoopbackClient;

namespace {

std::unique_ptr<HttpServer> start_server(std::size_t max_connections,
                                         std::chrono::milliseconds idle_timeout = 30s) {
  ServerOptions o;
  o.port = 0;
  o.io_threads = 1;
  o.workers = 1;
  o.max_connections = max_connections;
  o.read_timeout = 5s;
  o.idle_timeout = idle_timeout;
  auto server = HttpServer::start(o, [](const HttpRequest&, Responder respond) {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body = "ok";
    respond(std::move(r));
  });
  REQUIRE(server.ok());
  return std::move(server).value();
}

// The server counts a connection once its accept handler has run.
void wait_for_connections(const HttpServer& server, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (server.open_connections() != n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  INFO("open " << server.open_connections() << ", waited for " << n);
  REQUIRE(server.open_connections() == n);
}

const std::string kGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

}  // namespace

TEST_CASE("ServerReclaimsTheOldestIdleConnectionAtTheLimit" * doctest::test_suite("concurrency")) {
  auto server = start_server(3);
  Client a(server->port());
  wait_for_connections(*server, 1);
  Client b(server->port());
  wait_for_connections(*server, 2);
  Client c(server->port());
  wait_for_connections(*server, 3);
  // b served a request and waits again: it is now the newest idle connection, a the oldest.
  b.send(kGet);
  CHECK(b.response().find("HTTP/1.1 200") == 0);

  Client d(server->port());
  d.send(kGet);
  CHECK(d.response().find("HTTP/1.1 200") == 0);
  CHECK(a.closed_within(2s));
  CHECK_FALSE(b.closed_within(100ms));
  CHECK_FALSE(c.closed_within(100ms));
  CHECK(server->connection_counts().reclaimed == 1);
  CHECK(server->connection_counts().refused == 0);

  // The next one takes c, the oldest of those left; b keeps serving on its connection.
  Client e(server->port());
  CHECK(c.closed_within(2s));
  b.send(kGet);
  CHECK(b.response().find("HTTP/1.1 200") == 0);
  CHECK(server->connection_counts().reclaimed == 2);
  server->stop(1s);
}

TEST_CASE("ServerRefusesANewConnectionWhenEveryOneIsInARequest" *
          doctest::test_suite("concurrency")) {
  auto server = start_server(2);
  Client a(server->port());
  Client b(server->port());
  wait_for_connections(*server, 2);
  // Both have begun a request: neither is idle, neither may be closed for a newcomer.
  a.send("GET / HTTP/1.1\r\n");
  b.send("GET / HTTP/1.1\r\n");
  std::this_thread::sleep_for(200ms);  // until the server has read those first bytes

  Client c(server->port());
  CHECK(c.closed_within(2s));
  CHECK(server->connection_counts().refused == 1);
  CHECK(server->connection_counts().reclaimed == 0);

  // The requests in progress are untouched and complete.
  a.send("Host: x\r\n\r\n");
  CHECK(a.response().find("HTTP/1.1 200") == 0);
  b.send("Host: x\r\n\r\n");
  CHECK(b.response().find("HTTP/1.1 200") == 0);
  server->stop(1s);
}

// The idle timeout has one timer for all connections (the idle sweep, every eighth of the
// timeout): a connection that waits longer than the timeout for a request is closed, whether it
// never sent one or was kept alive after one; never before the timeout; one that keeps sending
// stays open; none of this counts as a reclaim at the connection limit, and the limit's
// accounting stays right afterwards (a newcomer at the limit still takes the oldest idle one).
TEST_CASE("ServerClosesConnectionsIdleLongerThanTheIdleTimeout" *
          doctest::test_suite("concurrency")) {
  constexpr auto kIdle = 600ms;  // swept every 75 ms
  auto server = start_server(3, kIdle);
  const auto opened = std::chrono::steady_clock::now();
  std::optional<Client> never_used(server->port());
  std::optional<Client> kept_alive(server->port());
  std::optional<Client> busy(server->port());
  wait_for_connections(*server, 3);
  kept_alive->send(kGet);
  CHECK(kept_alive->response().find("HTTP/1.1 200") == 0);

  // busy sends a request every 50 ms for twice the timeout and more: it never waits 600 ms.
  while (std::chrono::steady_clock::now() - opened < 2 * kIdle + 300ms) {
    busy->send(kGet);
    CHECK(busy->response().find("HTTP/1.1 200") == 0);
    std::this_thread::sleep_for(50ms);
  }
  CHECK_FALSE(busy->closed_within(0ms));
  busy->send(kGet);
  CHECK(busy->response().find("HTTP/1.1 200") == 0);
  CHECK(never_used->closed_within(2s));
  CHECK(kept_alive->closed_within(2s));
  // The server lingers on a closed connection until the client closes its end too.
  never_used.reset();
  kept_alive.reset();
  wait_for_connections(*server, 1);
  busy.reset();
  wait_for_connections(*server, 0);

  // Never before the timeout: the clock starts when the client connects (before the server's
  // wait begins), so the close comes at least kIdle later.
  const auto connected = std::chrono::steady_clock::now();
  std::optional<Client> fresh(server->port());
  CHECK_FALSE(fresh->closed_within(kIdle - 150ms));
  CHECK(fresh->closed_within(3s));
  const auto waited = std::chrono::steady_clock::now() - connected;
  fresh.reset();
  CHECK(waited >= kIdle);
  CHECK(waited < kIdle + 1500ms);  // one tick late at most, plus a loaded machine's slack
  CHECK(server->connection_counts().reclaimed == 0);
  wait_for_connections(*server, 0);

  // The limit still counts right after those closes: with three open, a fourth takes the oldest.
  Client first(server->port());
  wait_for_connections(*server, 1);
  Client second(server->port());
  wait_for_connections(*server, 2);
  Client third(server->port());
  wait_for_connections(*server, 3);
  Client fourth(server->port());
  fourth.send(kGet);
  CHECK(fourth.response().find("HTTP/1.1 200") == 0);
  CHECK(first.closed_within(2s));
  CHECK(server->connection_counts().reclaimed == 1);
  CHECK(server->connection_counts().refused == 0);
  server->stop(1s);
}

// kekd's audit writer answers a request once its record is durable, and the audit log is closed
// after the server has stopped: a responder may be called after stop(), when the drain has given
// up on it. That must be harmless (ASan checks it: the io_context it posts to still exists).
TEST_CASE("ServerTakesAResponseAfterStopWithoutHarm" * doctest::test_suite("concurrency")) {
  std::mutex mu;
  std::optional<Responder> held;
  ServerOptions o;
  o.port = 0;
  o.io_threads = 1;
  o.workers = 1;
  auto started = HttpServer::start(o, [&](const HttpRequest&, Responder respond) {
    std::lock_guard lock(mu);
    held = std::move(respond);
  });
  REQUIRE(started.ok());
  std::unique_ptr<HttpServer> server = std::move(started).value();
  Client a(server->port());
  a.send(kGet);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  auto has_request = [&] {
    std::lock_guard lock(mu);
    return held.has_value();
  };
  while (!has_request() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(has_request());

  server->stop(50ms);  // the drain gives up on the held request
  HttpResponse late;
  late.content_type = "text/plain";
  late.body = "ok";
  (*held)(std::move(late));
  held.reset();
  server.reset();
  CHECK(a.closed_within(2s));
}
