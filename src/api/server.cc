#include "kekd/api/server.h"

#include <botan/mem_ops.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <atomic>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "errors.h"

namespace kekd::api {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

// Request ids only need to be unique, not secret: a per-thread PRNG keeps them off the HSM.
std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t a = rng(), b = rng();
  std::string id(32, '0');
  for (int i = 0; i < 16; ++i) {
    id[i] = kHex[(a >> (i * 4)) & 0xf];
    id[16 + i] = kHex[(b >> (i * 4)) & 0xf];
  }
  return id;
}

}  // namespace

const std::string& HttpRequest::header(const std::string& lower_name) const {
  static const std::string kEmpty;
  auto it = headers.find(lower_name);
  return it == headers.end() ? kEmpty : it->second;
}

struct HttpServer::State {
  ServerOptions options;
  Handler handler;
  // A unique_ptr so that stop() can destroy it, and with it the pending handlers that own the
  // sessions (which own a shared_ptr to this State): otherwise that cycle would never be freed.
  std::unique_ptr<net::io_context> ioc = std::make_unique<net::io_context>();
  // Keeps the I/O threads running while requests are on the worker pool: such a request has no
  // operation pending on the io_context, so once the acceptor is closed, run() would return and
  // the responses of in-flight requests would never be written. Released after the drain.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<net::thread_pool> workers;
  std::optional<ssl::context> tls;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> io_threads;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> stopping{false};
  std::uint16_t port = 0;
};

namespace {

using State = HttpServer::State;

// One connection. Derived supplies stream(), and what closing means for its kind of stream.
template <class Derived>
class Session {
 public:
  Session(std::shared_ptr<State> state, beast::flat_buffer buffer)
      : state_(std::move(state)), buffer_(std::move(buffer)) {
    state_->connections++;
  }
  ~Session() { state_->connections--; }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }

  // Waits, up to the idle timeout, for the next request to begin; then reads it whole within the
  // read timeout. Two timeouts: an idle keep-alive connection may wait long, a request that has
  // started must arrive quickly (slow senders are cut off). Over TLS the wait cannot watch the
  // socket (see below), and the idle timeout bounds the whole read.
  void do_read() {
    if (state_->stopping) {
      return derived().do_close();
    }
    if (buffer_.size() > 0) {
      return read_request(state_->options.read_timeout);  // a pipelined request is already here
    }
    if constexpr (!Derived::kCanWaitOnSocket) {
      // TLS: the next request may already sit decrypted-or-not in the SSL stream's own buffers
      // (a client often sends it in the same segment as its last handshake message), so the socket
      // need never become readable again. Read at once, bounded by the idle timeout.
      return read_request(state_->options.idle_timeout);
    } else {
      // tcp_stream's own timer covers only its own operations, not a wait on the raw socket, so
      // the idle timeout has a timer of its own, on the connection's strand, that cancels the wait.
      auto& socket = beast::get_lowest_layer(derived().stream()).socket();
      auto idle = std::make_shared<net::steady_timer>(socket.get_executor());
      idle->expires_after(state_->options.idle_timeout);
      idle->async_wait([self = derived().shared_from_this()](beast::error_code ec) {
        if (!ec) {
          beast::error_code ignored;
          beast::get_lowest_layer(self->derived().stream()).socket().cancel(ignored);
        }
      });
      socket.async_wait(tcp::socket::wait_read,
                        [self = derived().shared_from_this(), idle](beast::error_code ec) {
                          idle->cancel();
                          if (ec) return self->do_close();
                          self->read_request(self->state_->options.read_timeout);
                        });
    }
  }

  void read_request(std::chrono::milliseconds timeout) {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_->options.header_limit));
    parser_->body_limit(state_->options.body_limit);
    beast::get_lowest_layer(derived().stream()).expires_after(timeout);
    http::async_read(derived().stream(), buffer_, *parser_,
                     [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset) {
      return derived().do_close();
    }
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      return reply_error(Error(
          Code::kPayloadTooLarge,
          ec == http::error::body_limit
              ? "request body exceeds " + std::to_string(state_->options.body_limit) + " bytes"
              : "request headers exceed " + std::to_string(state_->options.header_limit) +
                    " bytes"));
    }
    if (ec) {
      return reply_error(Error(Code::kInvalidArgument, "malformed HTTP request: " + ec.message()));
    }

    http::request<http::string_body> raw = parser_->release();
    keep_alive_ = raw.keep_alive();
    HttpRequest request;
    request.method = std::string(raw.method_string());
    request.target = std::string(raw.target());
    for (const auto& field : raw) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      // A header sent twice is one value joined with ',' (RFC 9110 §5.3), as SigV4 signs it.
      std::string value(field.value());
      auto [it, inserted] = request.headers.try_emplace(name, value);
      if (!inserted) it->second.append(",").append(value);
    }
    request.body = std::move(raw.body());
    request.request_id = new_request_id();
    wipe_read_buffer();

    // The handler may block on the HSM: run it on a worker, never on this I/O thread, and come
    // back to this connection's strand to write. What it answers at once runs here instead.
    state_->in_flight++;
    const bool at_once =
        state_->options.answers_at_once && state_->options.answers_at_once(request);
    auto run = [self = derived().shared_from_this(), request = std::move(request)]() mutable {
      // Back to this connection's strand to write, from whichever thread answers.
      auto answered = std::make_shared<std::atomic<bool>>(false);
      Responder respond = [self, answered, id = request.request_id](HttpResponse response) {
        if (answered->exchange(true)) return;
        auto& stream = self->derived().stream();
        net::post(stream.get_executor(), [self, response = std::move(response), id]() mutable {
          self->write(std::move(response), id, true);
        });
      };
      try {
        self->state_->handler(request, respond);
      } catch (const std::exception&) {
        respond(error_response(Error(Code::kInternal, "internal error"), request.request_id));
      }
    };
    if (at_once) {
      run();
    } else {
      net::post(*state_->workers, std::move(run));
    }
  }

  // The read buffer lives as long as the connection and keeps every request read into it (its
  // Authorization header, a DEK in its body) until later bytes happen to overwrite it. Once the
  // parser has taken a request out, the buffer is zeroed, except for the bytes of a pipelined next
  // request that follow it, which are put back in front.
  void wipe_read_buffer() {
    const std::size_t pending = buffer_.size();
    if (pending == 0) {
      // After consume(), an empty flat_buffer writes from the start of its storage again, so
      // prepare(capacity()) is the whole storage.
      auto storage = buffer_.prepare(buffer_.capacity());
      Botan::secure_scrub_memory(storage.data(), storage.size());
      return;
    }
    std::string next(static_cast<const char*>(buffer_.data().data()), pending);
    buffer_.consume(pending);
    auto storage = buffer_.prepare(buffer_.capacity());
    Botan::secure_scrub_memory(storage.data(), storage.size());
    buffer_.commit(net::buffer_copy(buffer_.prepare(pending), net::buffer(next)));
    Botan::secure_scrub_memory(next.data(), next.size());
  }

  // An error found before the request could be handed to the handler; the connection is closed
  // afterwards, since the rest of the input cannot be trusted to be framed correctly.
  void reply_error(const Error& error) {
    keep_alive_ = false;
    linger_ = true;
    std::string id = new_request_id();
    state_->in_flight++;
    write(error_response(error, id), id, true);
  }

  void write(HttpResponse response, const std::string& request_id, bool counted) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(response.status));
    res->set(http::field::server, "kekd");
    res->set(http::field::content_type, response.content_type);
    res->set("X-Request-Id", request_id);
    for (auto& [name, value] : response.headers) {
      res->set(name, value);
    }
    bool keep_alive = keep_alive_ && !state_->stopping;
    res->keep_alive(keep_alive);
    res->body() = std::move(response.body);
    res->prepare_payload();
    beast::get_lowest_layer(derived().stream()).expires_after(state_->options.read_timeout);
    // One async_write sends header and body together (a gather write); with TCP_NODELAY set on
    // the socket, small responses leave in one segment without waiting for Nagle.
    http::async_write(derived().stream(), *res,
                      [self = derived().shared_from_this(), res, keep_alive, counted](
                          beast::error_code ec, std::size_t) {
                        if (counted) self->state_->in_flight--;
                        if (ec || !keep_alive) return self->derived().do_close();
                        self->do_read();
                      });
  }

  std::shared_ptr<State> state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  // After an error response the client may still be sending (a body over the limit): closing at
  // once would answer its data with a TCP reset, and it would never read our response. So stop
  // sending, then read and discard for a bounded time before closing ("lingering close").
  bool linger_ = false;
};

class PlainSession : public Session<PlainSession>,
                     public std::enable_shared_from_this<PlainSession> {
 public:
  static constexpr bool kCanWaitOnSocket = true;
  PlainSession(tcp::socket&& socket, std::shared_ptr<State> state)
      : Session(std::move(state), beast::flat_buffer()), stream_(std::move(socket)) {}
  void run() { do_read(); }
  beast::tcp_stream& stream() { return stream_; }
  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (!linger_ || ec) {
      stream_.socket().close(ec);
      return;
    }
    stream_.expires_after(kLingerTime);
    discard();
  }

 private:
  static constexpr std::chrono::seconds kLingerTime{2};
  static constexpr std::size_t kLingerBytes = 8 * 1024 * 1024;

  void discard() {
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->discarded_ += n;
                              if (ec || self->discarded_ > kLingerBytes) {
                                beast::error_code ignored;
                                self->stream_.socket().close(ignored);
                                return;
                              }
                              self->discard();
                            });
  }

  beast::tcp_stream stream_;
  std::array<char, 16 * 1024> discard_;
  std::size_t discarded_ = 0;
};

class TlsSession : public Session<TlsSession>, public std::enable_shared_from_this<TlsSession> {
 public:
  static constexpr bool kCanWaitOnSocket = false;
  TlsSession(tcp::socket&& socket, ssl::context& ctx, std::shared_ptr<State> state)
      : Session(std::move(state), beast::flat_buffer()), stream_(std::move(socket), ctx) {}

  void run() {
    // A handshake that never finishes is cut off by the read timeout.
    beast::get_lowest_layer(stream_).expires_after(state_->options.read_timeout);
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (ec) return self->close_socket();
                              self->do_read();
                            });
  }
  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void do_close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_shutdown(
        [self = shared_from_this()](beast::error_code) { self->close_socket(); });
  }

 private:
  void close_socket() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().close(ec);
  }
  beast::ssl_stream<beast::tcp_stream> stream_;
};

void do_accept(std::shared_ptr<State> state) {
  state->acceptor->async_accept(
      net::make_strand(*state->ioc), [state](beast::error_code ec, tcp::socket socket) {
        if (ec || state->stopping) {
          if (!state->stopping && ec != net::error::operation_aborted) do_accept(state);
          return;
        }
        if (state->connections >= state->options.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);  // beyond the limit: refuse at once rather than queue
        } else {
          socket.set_option(tcp::no_delay(true), ec);
          if (state->tls) {
            std::make_shared<TlsSession>(std::move(socket), *state->tls, state)->run();
          } else {
            std::make_shared<PlainSession>(std::move(socket), state)->run();
          }
        }
        do_accept(state);
      });
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(ServerOptions options, Handler handler) {
  auto state = std::make_shared<State>();
  state->options = std::move(options);
  state->handler = std::move(handler);
  const ServerOptions& o = state->options;

  if (!o.tls_cert.empty()) {
    try {
      state->tls.emplace(ssl::context::tls_server);
      state->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                              ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                              ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      state->tls->use_certificate_chain_file(o.tls_cert);
      state->tls->use_private_key_file(o.tls_key, ssl::context::pem);
      if (!o.client_ca.empty()) {
        state->tls->load_verify_file(o.client_ca);
        state->tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      }
    } catch (const std::exception& e) {
      return Error(Code::kInvalidArgument, std::string("TLS set-up failed: ") + e.what());
    }
  }

  beast::error_code ec;
  auto address = net::ip::make_address(o.host == "localhost" ? "127.0.0.1" : o.host, ec);
  if (ec) {
    return Error(Code::kInvalidArgument, "cannot listen on '" + o.host + "': " + ec.message());
  }
  tcp::endpoint endpoint(address, o.port);
  state->acceptor.emplace(*state->ioc);
  state->acceptor->open(endpoint.protocol(), ec);
  if (!ec) state->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) state->acceptor->bind(endpoint, ec);
  if (!ec) state->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error(Code::kUnavailable,
                 "cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " + ec.message());
  }
  state->port = state->acceptor->local_endpoint().port();
  state->workers.emplace(o.workers);

  state->work.emplace(state->ioc->get_executor());
  do_accept(state);
  for (std::size_t i = 0; i < o.io_threads; ++i) {
    state->io_threads.emplace_back([state] { state->ioc->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(state));
}

std::uint16_t HttpServer::port() const { return state_->port; }
std::size_t HttpServer::open_connections() const { return state_->connections; }

void HttpServer::stop(std::chrono::milliseconds drain) {
  if (state_->stopping.exchange(true)) {
    return;
  }
  net::post(*state_->ioc, [state = state_] {
    beast::error_code ec;
    state->acceptor->close(ec);
  });
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (state_->in_flight > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  state_->work.reset();
  state_->ioc->stop();
  for (auto& t : state_->io_threads) {
    if (t.joinable()) t.join();
  }
  state_->workers->join();
  // The acceptor belongs to the io_context and must go first; destroying the io_context then
  // destroys every pending handler, and with them the remaining sessions and their sockets.
  state_->acceptor.reset();
  state_->ioc.reset();
}

HttpServer::~HttpServer() { stop(std::chrono::milliseconds(0)); }

}  // namespace kekd::api
