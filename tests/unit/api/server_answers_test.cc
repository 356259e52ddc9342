// How the HTTP server puts answers on the wire, over real loopback sockets. A keep-alive answer on
// a plain connection is sent by the thread that answers (a worker here; the audit writer in kekd),
// which then also waits for the next request; everything else goes through the connection's
// strand (src/api/server.cc, Session::answer). Both ways must give the same bytes, and an answer
// the kernel takes only in part must still arrive whole. In the "concurrency" suite, so that
// ThreadSanitizer checks the hand-over between the threads (scripts/sanitizers.sh).
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
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

constexpr std::size_t kBigBody = 8 * 1024 * 1024;  // more than a socket's send buffer can hold

// The body names the request's target; /big answers kBigBody bytes of a pattern. before_answer,
// if given, runs on the worker before each answer.
std::unique_ptr<HttpServer> start_server(
    std::function<void(const HttpRequest&)> before_answer = nullptr) {
  ServerOptions o;
  o.port = 0;
  o.io_threads = 1;
  o.workers = 2;
  o.read_timeout = 5s;
  o.idle_timeout = 30s;
  auto server =
      HttpServer::start(o, [before_answer](const HttpRequest& request, Responder respond) {
        if (before_answer) before_answer(request);
        HttpResponse r;
        r.content_type = "text/plain";
        r.headers.emplace_back("X-Target", request.target);
        if (request.target == "/big") {
          r.body.resize(kBigBody);
          for (std::size_t i = 0; i < kBigBody; ++i) r.body[i] = static_cast<char>('a' + i % 26);
        } else {
          r.body = "answer to " + request.target;
        }
        respond(std::move(r));
      });
  REQUIRE(server.ok());
  return std::move(server).value();
}

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

// The whole answer as Beast writes it, byte for byte; the request id (random) is taken from it.
// (No std::regex: GCC 12 warns about its internals at -O1 with sanitizers, and -Werror fails.)
void check_answer(const std::string& answer, const std::string& target, bool keep_alive) {
  const std::string marker = "\r\nX-Request-Id: ";
  const std::size_t at = answer.find(marker);
  REQUIRE_MESSAGE(at != std::string::npos, answer);
  const std::string id = answer.substr(at + marker.size(), 32);
  CHECK_MESSAGE(id.find_first_not_of("0123456789abcdef") == std::string::npos, answer);
  const std::string body = "answer to " + target;
  const std::string expected = "HTTP/1.1 200 OK\r\nServer: kekd\r\nContent-Type: text/plain" +
                               marker + id + "\r\nX-Target: " + target + "\r\n" +
                               (keep_alive ? "" : "Connection: close\r\n") +
                               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  CHECK(answer == expected);
}

}  // namespace

TEST_CASE("ServerAnswersKeepAliveRequestsInOrderWithTheSameBytesEitherWay" *
          doctest::test_suite("concurrency")) {
  auto server = start_server();
  Client client(server->port());
  // Sent one at a time: each answer goes out from the worker that made it.
  for (const char* target : {"/one", "/two", "/three"}) {
    client.send(get(target));
    check_answer(client.response(), target, true);
  }
  // Pipelined: the second request is already read when the first is answered, so the first
  // answer goes through the strand, which then reads the second from the buffer.
  client.send(get("/four") + get("/five"));
  check_answer(client.response(), "/four", true);
  check_answer(client.response(), "/five", true);
  // Connection: close is answered through the strand, which closes afterwards.
  client.send(get("/six", "Connection: close\r\n"));
  check_answer(client.response(), "/six", false);
  CHECK(client.closed_within(2s));
  server->stop(1s);
}

TEST_CASE("ServerWritesTheRestOfAnAnswerTheKernelTookOnlyInPart" *
          doctest::test_suite("concurrency")) {
  auto server = start_server();
  Client client(server->port(), 4096);
  client.send(get("/big"));
  // Let the answering thread's one send fill the socket buffers and return, so that the rest
  // must be written through the strand while this client reads slowly.
  std::this_thread::sleep_for(200ms);
  const std::string answer = client.response(10s);
  const std::size_t header_end = answer.find("\r\n\r\n");
  REQUIRE(header_end != std::string::npos);
  CHECK(answer.find("Content-Length: " + std::to_string(kBigBody) + "\r\n") < header_end);
  REQUIRE(answer.size() == header_end + 4 + kBigBody);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kBigBody; ++i) {
    wrong += answer[header_end + 4 + i] != static_cast<char>('a' + i % 26);
  }
  CHECK(wrong == 0);
  // The connection is still good for the next request.
  client.send(get("/after"));
  check_answer(client.response(), "/after", true);
  server->stop(1s);
}

TEST_CASE("ServerReadsARequestThatArrivedWhileTheLastWasBeingAnswered" *
          doctest::test_suite("concurrency")) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto server = start_server([released](const HttpRequest& request) {
    if (request.target == "/slow") released.wait();
  });
  Client client(server->port());
  client.send(get("/slow"));
  std::this_thread::sleep_for(100ms);  // /slow is read and waits on a worker
  // /next arrives while /slow is being answered, and nothing reads the socket meanwhile. The
  // worker sends /slow's answer and then starts the wait for the next request, whose first read
  // finds /next already there: that thread reads its first bytes (at most the kept 4 KiB), and
  // the rest of its 6000 bytes of headers comes through the parser on the strand.
  client.send(get("/next", "X-Padding: " + std::string(6000, 'p') + "\r\n"));
  std::this_thread::sleep_for(100ms);
  release.set_value();
  check_answer(client.response(), "/slow", true);
  check_answer(client.response(), "/next", true);
  client.send(get("/after"));
  check_answer(client.response(), "/after", true);
  server->stop(1s);
}
