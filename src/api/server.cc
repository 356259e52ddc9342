#include "kekd/api/server.h"

#include <botan/mem_ops.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "errors.h"
#include "kekd/common/thread_name.h"
#include "request_queue.h"

namespace kekd::api {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

// Each connection runs on its own strand, named by its concrete type rather than through
// beast::tcp_stream's type-erased any_io_executor: every asynchronous operation copies its
// executor a few times, and a type-erased copy of a strand (too big for any_executor's small
// buffer) was a heap allocation each time, about 20 per request.
using Strand = net::strand<net::io_context::executor_type>;
using Stream = beast::basic_stream<tcp, Strand>;
using Socket = net::basic_stream_socket<tcp, Strand>;

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

// What the accept loop needs of a connection that it closes to admit another.
class Connection {
 public:
  virtual ~Connection() = default;
  // Closes the connection, from its own strand; called from the accept loop's thread (at the
  // connection limit) or from the idle sweep's (at the idle timeout).
  virtual void reclaim() = 0;

  // All three guarded by State::idle_mutex: the connection's place in State::idle while it waits
  // for a request, when that wait began, and whether the accept loop or the idle sweep has taken
  // it out of there to close it.
  std::optional<std::list<std::weak_ptr<Connection>>::iterator> idle_entry;
  std::chrono::steady_clock::time_point idle_since;
  bool reclaimed = false;
};

}  // namespace

const std::string& HttpRequest::header(const std::string& lower_name) const {
  static const std::string kEmpty;
  auto it = headers.find(lower_name);
  return it == headers.end() ? kEmpty : it->second;
}

struct HttpServer::State {
  ServerOptions options;
  Handler handler;
  // A unique_ptr so that ~HttpServer can destroy it, and with it the pending handlers that own the
  // sessions (which own a shared_ptr to this State): otherwise that cycle would never be freed.
  // Made by start(), which knows how many threads will run it.
  std::unique_ptr<net::io_context> ioc;
  // Keeps the I/O threads running while requests are on the worker pool: such a request has no
  // operation pending on the io_context, so once the acceptor is closed, run() would return and
  // the responses of in-flight requests would never be written. Released after the drain.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<RequestQueue> workers;
  std::optional<ssl::context> tls;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> io_threads;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> in_flight{0};
  // Connections waiting for the first byte of a request (a new one or a keep-alive one), in the
  // order they began to wait: at the connection limit the front one is closed to admit a new
  // connection, and the idle sweep closes those at the front that have waited longer than the
  // idle timeout. An entry whose connection is being destroyed may linger until its destructor
  // erases it; both skip it.
  std::mutex idle_mutex;
  std::list<std::weak_ptr<Connection>> idle;
  // The one timer of the idle timeout (sweep_idle_later); reset before the io_context.
  std::unique_ptr<net::steady_timer> idle_sweep;
  // Reclaimed connections not yet destroyed: they still count in `connections` and still hold a
  // descriptor, but no longer count against the limit.
  std::atomic<std::size_t> reclaiming{0};
  std::atomic<std::size_t> refused{0};
  std::atomic<std::size_t> reclaimed{0};
  std::atomic<std::size_t> accept_failures{0};
  std::atomic<bool> stopping{false};
  std::uint16_t port = 0;
};

namespace {

using State = HttpServer::State;

// One connection. Derived supplies stream(), and what closing means for its kind of stream.
template <class Derived>
class Session : public Connection {
 public:
  // The read buffer holds at most header_limit bytes: the parser consumes body bytes as they come,
  // so only a line it must see whole (request line and headers, a chunk-size line with its
  // extensions, a trailer) fills it. Without this cap an endless chunk extension would grow it
  // for as long as the read timeout allows, at the speed of the network.
  explicit Session(std::shared_ptr<State> state)
      : state_(std::move(state)), buffer_(state_->options.header_limit) {
    state_->connections++;
  }
  ~Session() override {
    {
      std::lock_guard lock(state_->idle_mutex);
      if (idle_entry) state_->idle.erase(*idle_entry);
      if (reclaimed) state_->reclaiming--;
    }
    state_->connections--;
  }

  void reclaim() override {
    net::post(lowest().get_executor(), [self = derived().shared_from_this()] {
      // Ends the wait for a request (the handler sees `reclaimed` and closes), or does nothing if
      // the connection is closed already.
      beast::error_code ignored;
      self->lowest().socket().cancel(ignored);
    });
  }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }
  Stream& lowest() { return beast::get_lowest_layer(derived().stream()); }

  // Waits, up to the idle timeout, for the first byte of the next request; then reads the request
  // whole within the read timeout. Two timeouts: an idle keep-alive connection may wait long, a
  // request that has started must arrive quickly (slow senders are cut off). While it waits, the
  // connection holds no parser and at most kKeptBuffer bytes of (wiped) buffer, and may be
  // reclaimed at the connection limit.
  void do_read() {
    if (state_->stopping) {
      return derived().do_close();
    }
    if (buffer_.size() > 0) {
      return read_request();  // a pipelined request is already here
    }
    begin_wait();
    if constexpr (!Derived::kCanWaitOnSocket) {
      // TLS: the next request may already sit in the SSL stream's own buffers (a client often
      // sends it in the same segment as its last handshake message), so the socket need never
      // become readable again: read its first bytes through the stream instead.
      lowest().expires_after(state_->options.idle_timeout);
      derived().stream().async_read_some(
          buffer_.prepare(kFirstRead),
          [self = derived().shared_from_this()](beast::error_code ec, std::size_t n) {
            self->buffer_.commit(n);
            if (!self->end_wait() || ec) return self->derived().do_close();
            self->read_request();
          });
    } else {
      wait_on_socket();
    }
  }

  // do_read for a plain connection whose read buffer is empty, from the thread that has just sent
  // the answer (answer()). The parts of do_read that need the strand stay there.
  void wait_for_request() {
    if (state_->stopping) {
      return net::post(derived().stream().get_executor(),
                       [self = derived().shared_from_this()] { self->derived().do_close(); });
    }
    begin_wait();
    wait_on_socket();
  }

  // Waits for the next request's first bytes, read into the kept buffer. No timer of its own: the
  // idle sweep (sweep_idle) ends the wait through reclaim() once the connection has waited longer
  // than the idle timeout. A read rather than async_wait(wait_read): Asio starts a wait with an
  // epoll_ctl that re-arms the socket, a system call per request on the answering thread. A read
  // first tries a recv instead: a next request that is already there is read at once (the I/O
  // thread is then woken through the scheduler to parse it, not by the socket's event); otherwise
  // the read is queued with no system call, and the socket's edge-triggered registration reports
  // the next bytes (docs/performance.md, "A read instead of a wait").
  void wait_on_socket() {
    lowest().socket().async_read_some(
        buffer_.prepare(std::max(kFirstRead, buffer_.capacity())),
        [self = derived().shared_from_this()](beast::error_code ec, std::size_t n) {
          self->buffer_.commit(n);
          if (!self->end_wait() || ec) return self->derived().do_close();
          self->read_request();
        });
    // A reclaim's cancel runs on the strand. This may run off it: after an answer
    // (wait_for_request), and for a new connection's first wait (run() is called from the accept
    // handler). Then the accept loop or the idle sweep may have reclaimed the connection between
    // begin_wait and the wait above, and its cancel found nothing to cancel: cancel again. On the
    // strand the extra cancel finds the connection closing and does nothing.
    bool taken;
    {
      std::lock_guard lock(state_->idle_mutex);
      taken = reclaimed;
    }
    if (taken) reclaim();
  }

  // Drops the parser, trims the read buffer and joins the idle list.
  void begin_wait() {
    parser_.reset();
    // A buffer of an ordinary request's size is kept for the next one (it was wiped after the
    // last): freeing and reallocating it per request was an allocation, a free and a zeroing of
    // freed memory each time. Only one that grew for a large request is given back while waiting.
    if (buffer_.capacity() > kKeptBuffer) buffer_.shrink_to_fit();
    std::lock_guard lock(state_->idle_mutex);
    idle_since = std::chrono::steady_clock::now();  // under the lock: State::idle stays in order
    idle_entry = state_->idle.insert(state_->idle.end(), derived().shared_from_this());
  }

  // Leaves the idle list; false if the accept loop reclaimed the connection meanwhile (then it
  // closes, even if a request has just begun to arrive: the accept loop counted it as gone).
  bool end_wait() {
    std::lock_guard lock(state_->idle_mutex);
    if (idle_entry) {
      state_->idle.erase(*idle_entry);
      idle_entry.reset();
    }
    return !reclaimed;
  }

  // The whole request, including an interim 100 Continue, must arrive within one read timeout.
  void read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_->options.header_limit));
    parser_->body_limit(state_->options.body_limit);
    lowest().expires_after(state_->options.read_timeout);
    http::async_read_header(derived().stream(), buffer_, *parser_,
                            [self = derived().shared_from_this()](
                                beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  // The header is checked against both limits (a Content-Length over body_limit included) before
  // any body is read. A client that sent "Expect: 100-continue" waits for an interim answer before
  // sending its body (curl does for bodies over 1 KiB, for a second); it gets that answer only
  // now, so that a refused request never has its body sent at all.
  void on_header(beast::error_code ec) {
    if (ec || parser_->is_done()) return on_read(ec);
    // Never to an HTTP/1.0 client, which does not know interim answers (RFC 9110 §10.1.1).
    if (parser_->get().version() >= 11 &&
        beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      auto interim =
          std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(
          derived().stream(), *interim,
          [self = derived().shared_from_this(), interim](beast::error_code ec, std::size_t) {
            if (ec) return self->derived().do_close();
            self->read_body();
          });
      return;
    }
    read_body();
  }

  void read_body() {
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
    if (ec == http::error::body_limit || ec == http::error::header_limit ||
        ec == http::error::buffer_overflow) {
      const std::string limit =
          std::to_string(ec == http::error::body_limit ? state_->options.body_limit
                                                       : state_->options.header_limit);
      return reply_error(Error(
          Code::kPayloadTooLarge,
          ec == http::error::body_limit ? "request body exceeds " + limit + " bytes"
          : ec == http::error::header_limit
              ? "request headers exceed " + limit + " bytes"
              : "a chunk-size line or trailer exceeds " + limit + " bytes (the header limit)"));
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
    if (at_once) {
      return run_handler(request);
    }
    // Bounded wait for a worker (RequestQueue): a request still queued after queue_timeout is
    // answered by on_queue_timeout and never runs.
    auto shared = std::make_shared<const HttpRequest>(std::move(request));
    auto self = derived().shared_from_this();
    state_->workers->push([self, shared] { self->run_handler(*shared); },
                          [self, shared] { self->answer_queue_timeout(*shared); });
  }

  void answer_queue_timeout(const HttpRequest& request) {
    HttpResponse response;
    try {
      response = state_->options.on_queue_timeout(request);
    } catch (const std::exception&) {
      response = error_response(Error(Code::kUnavailable, "no worker became free in time"),
                                request.request_id);
    }
    responder(request.request_id)(std::move(response));
  }

  // Answers from whichever thread answers (a worker, the audit writer once the record is
  // durable, or this I/O thread), at most once.
  Responder responder(const std::string& request_id) {
    auto answered = std::make_shared<std::atomic<bool>>(false);
    return [self = derived().shared_from_this(), answered, id = request_id](HttpResponse response) {
      if (answered->exchange(true)) return;
      self->answer(std::move(response), id);
    };
  }

  // A keep-alive answer on a plain connection is sent by the answering thread itself, with one
  // non-blocking send, and that thread then waits for the next request too (wait_for_request).
  // Posting the write to the strand instead woke the I/O thread a second time per request, only
  // to write; measured with tests/bench/ab.sh, sending here gave more requests/s and a lower p99
  // (docs/performance.md). Anything else (TLS, closing, a pipelined request behind this one, an
  // answer the kernel does not take whole at once) is written on the strand as before, the rest
  // of a partial send included.
  //
  // Safe from another thread because nothing else touches this connection meanwhile: its request
  // was read whole, no operation of it is pending, and the handoff to the worker (the queue's
  // mutex) and back (the audit log's) orders this thread's accesses after the I/O thread's.
  void answer(HttpResponse response, const std::string& request_id) {
    const bool keep_alive = keep_alive_ && !state_->stopping;
    auto wire =
        std::make_shared<std::string>(serialize(std::move(response), request_id, keep_alive));
    if constexpr (Derived::kCanWaitOnSocket) {
      if (keep_alive && buffer_.size() == 0) {
        const ssize_t sent = ::send(lowest().socket().native_handle(), wire->data(), wire->size(),
                                    MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0 && static_cast<std::size_t>(sent) == wire->size()) {
          wait_for_request();
          // Only now: HttpServer::stop's drain then waits until this thread is done with the
          // connection, before the io_context stops.
          state_->in_flight--;
          return;
        }
        if (sent > 0) wire->erase(0, static_cast<std::size_t>(sent));
      }
    }
    net::post(derived().stream().get_executor(), [self = derived().shared_from_this(), wire,
                                                  keep_alive] { self->write(wire, keep_alive); });
  }

  void run_handler(const HttpRequest& request) {
    Responder respond = responder(request.request_id);
    try {
      state_->handler(request, respond);
    } catch (const std::exception&) {
      respond(error_response(Error(Code::kInternal, "internal error"), request.request_id));
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
    write(std::make_shared<std::string>(serialize(error_response(error, id), id, false)), false);
  }

  // The whole answer as it goes on the wire, as Beast serializes it. One buffer: one send (with
  // TCP_NODELAY set on the socket, a small answer leaves in one segment without waiting for
  // Nagle). The body's bytes are copied; the copy is wiped when freed, as every C++ allocation of
  // kekd (wipe_on_free.cc).
  static std::string serialize(HttpResponse response, const std::string& request_id,
                               bool keep_alive) {
    http::response<http::string_body> res;
    res.version(11);
    res.result(static_cast<unsigned>(response.status));
    res.set(http::field::server, "kekd");
    res.set(http::field::content_type, response.content_type);
    res.set("X-Request-Id", request_id);
    for (auto& [name, value] : response.headers) {
      res.set(name, value);
    }
    res.keep_alive(keep_alive);
    res.body() = std::move(response.body);
    res.prepare_payload();
    std::string wire;
    http::response_serializer<http::string_body> serializer(res);
    beast::error_code ec;
    while (!ec && !serializer.is_done()) {
      serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
        wire.reserve(wire.size() + beast::buffer_bytes(buffers));
        for (const auto buffer : beast::buffers_range_ref(buffers)) {
          wire.append(static_cast<const char*>(buffer.data()), buffer.size());
        }
        serializer.consume(beast::buffer_bytes(buffers));
      });
    }
    return wire;
  }

  // On the strand: writes (the rest of) an answer, then waits for the next request or closes.
  void write(std::shared_ptr<std::string> wire, bool keep_alive) {
    lowest().expires_after(state_->options.read_timeout);
    net::async_write(
        derived().stream(), net::buffer(*wire),
        [self = derived().shared_from_this(), wire, keep_alive](beast::error_code ec, std::size_t) {
          self->state_->in_flight--;
          if (ec || !keep_alive) return self->derived().do_close();
          self->do_read();
        });
  }

  // What the first read of an idle connection takes at least; the rest comes through the parser.
  static constexpr std::size_t kFirstRead = 512;
  // The most read-buffer capacity an idle connection keeps (1000 idle connections: 4 MiB at most).
  static constexpr std::size_t kKeptBuffer = 4096;

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
  PlainSession(Socket&& socket, std::shared_ptr<State> state)
      : Session(std::move(state)), stream_(std::move(socket)) {}
  void run() { do_read(); }
  Stream& stream() { return stream_; }
  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(Socket::shutdown_send, ec);
    if (!linger_ || ec) {
      stream_.socket().close(ec);
      return;
    }
    stream_.expires_after(kLingerTime);
    discard_ = std::make_unique<std::array<char, 16 * 1024>>();  // only while lingering
    discard();
  }

 private:
  static constexpr std::chrono::seconds kLingerTime{2};
  static constexpr std::size_t kLingerBytes = 8 * 1024 * 1024;

  void discard() {
    stream_.async_read_some(net::buffer(*discard_),
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

  Stream stream_;
  std::unique_ptr<std::array<char, 16 * 1024>> discard_;
  std::size_t discarded_ = 0;
};

class TlsSession : public Session<TlsSession>, public std::enable_shared_from_this<TlsSession> {
 public:
  static constexpr bool kCanWaitOnSocket = false;
  TlsSession(Socket&& socket, ssl::context& ctx, std::shared_ptr<State> state)
      : Session(std::move(state)), stream_(std::move(socket), ctx) {}

  void run() {
    // A handshake that never finishes is cut off by the read timeout.
    beast::get_lowest_layer(stream_).expires_after(state_->options.read_timeout);
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (ec) return self->close_socket();
                              self->do_read();
                            });
  }
  beast::ssl_stream<Stream>& stream() { return stream_; }
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
  beast::ssl_stream<Stream> stream_;
};

// Under idle_mutex: takes a waiting connection out of State::idle to close it. From here it no
// longer counts against the connection limit; its destructor takes it out of `reclaiming`.
// Returns the entry after it.
std::list<std::weak_ptr<Connection>>::iterator take_from_idle(
    State& state, std::list<std::weak_ptr<Connection>>::iterator entry, Connection& connection) {
  connection.idle_entry.reset();
  connection.reclaimed = true;
  state.reclaiming++;
  return state.idle.erase(entry);
}

// At the connection limit: takes the connection that has waited longest for a request out of the
// idle list and closes it. False if no connection is idle.
bool reclaim_oldest_idle(State& state) {
  std::shared_ptr<Connection> oldest;
  {
    std::lock_guard lock(state.idle_mutex);
    for (auto it = state.idle.begin(); it != state.idle.end(); ++it) {
      oldest = it->lock();  // null: being destroyed; its destructor erases the entry
      if (oldest) {
        take_from_idle(state, it, *oldest);
        break;
      }
    }
  }
  if (!oldest) return false;
  state.reclaimed++;
  oldest->reclaim();
  return true;
}

// The idle timeout, for every connection at once. A timer per wait cost each request an
// allocation, a timer-queue insertion, a cancellation, a run of the cancelled handler on an I/O
// thread and, when the wait began on a worker or the audit writer (answer()), a timerfd_settime to
// re-arm the reactor's timer: about one system call in 35 per request (docs/performance.md, "One
// idle timer"). Instead this runs every eighth of the timeout (at most once a second) and closes
// the connections at the front of State::idle that have waited longer than the timeout: one is
// closed never before its timeout, and about one tick after it at most. As with a reclaim at the
// connection limit, a request whose first bytes arrive just as the sweep takes the connection is
// not read: the connection closes (the race every keep-alive client has with an idle timeout).
// A TLS connection's wait also has its stream's own timer (do_read); whichever comes first
// closes it.
std::chrono::milliseconds idle_sweep_interval(std::chrono::milliseconds idle_timeout) {
  return std::clamp(idle_timeout / 8, std::chrono::milliseconds(1),
                    std::chrono::milliseconds(1000));
}

void sweep_idle(State& state) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Connection>> expired;
  // Released after the lock: were it the last reference, the connection's destructor would take
  // idle_mutex.
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(state.idle_mutex);
    for (auto it = state.idle.begin(); it != state.idle.end();) {
      connection = it->lock();
      if (!connection) {
        ++it;  // being destroyed: its destructor erases the entry
        continue;
      }
      if (now - connection->idle_since < state.options.idle_timeout) {
        break;  // the rest began to wait later still
      }
      it = take_from_idle(state, it, *connection);
      expired.push_back(std::move(connection));
    }
  }
  for (const auto& connection : expired) {
    connection->reclaim();
  }
}

void sweep_idle_later(std::shared_ptr<State> state) {
  state->idle_sweep->expires_after(idle_sweep_interval(state->options.idle_timeout));
  state->idle_sweep->async_wait([state](beast::error_code ec) {
    if (ec || state->stopping) return;
    sweep_idle(*state);
    sweep_idle_later(state);
  });
}

void do_accept(std::shared_ptr<State> state);

// Accept failed for want of a resource (EMFILE, ENFILE, ENOBUFS): the connection stays in the
// backlog and the listening socket stays readable, so accepting again at once would spin on one
// I/O thread. Pause instead, as nginx does, while closing connections free descriptors.
void accept_later(std::shared_ptr<State> state) {
  auto timer = std::make_shared<net::steady_timer>(*state->ioc);
  timer->expires_after(std::chrono::milliseconds(100));
  timer->async_wait([state, timer](beast::error_code ec) {
    if (!ec && !state->stopping) do_accept(state);
  });
}

void do_accept(std::shared_ptr<State> state) {
  state->acceptor->async_accept(
      Strand(state->ioc->get_executor()), [state](beast::error_code ec, Socket socket) {
        if (state->stopping || ec == net::error::operation_aborted) return;
        if (ec == net::error::connection_aborted) return do_accept(state);  // gone before accept
        if (ec) {
          state->accept_failures++;
          return accept_later(state);
        }
        // Reclaimed connections are decremented from `reclaiming` before `connections`, so the
        // difference never goes below zero, but the two loads are not one snapshot: clamp.
        const std::size_t open = state->connections, going = state->reclaiming;
        const std::size_t counted = open > going ? open - going : 0;
        if (counted >= state->options.max_connections && !reclaim_oldest_idle(*state)) {
          // Every connection is inside a request or a TLS handshake, each bounded by the read
          // timeout: refuse at once rather than queue.
          state->refused++;
          beast::error_code ignored;
          socket.close(ignored);
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
  // The hint tells Asio how many threads will run the io_context; with one, its scheduler keeps
  // handlers that a thread posts to itself on a private queue instead of locking the shared one.
  state->ioc = std::make_unique<net::io_context>(static_cast<int>(o.io_threads));
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
  // Without an answer for it, a timeout would leave requests unanswered: then they wait.
  state->workers.emplace(o.workers,
                         o.on_queue_timeout ? o.queue_timeout : std::chrono::milliseconds(0));
  if (!o.worker_cpus.empty()) {
    KEKD_RETURN_IF_ERROR(state->workers->pin_workers(o.worker_cpus));
  }

  state->work.emplace(state->ioc->get_executor());
  state->idle_sweep = std::make_unique<net::steady_timer>(*state->ioc);
  sweep_idle_later(state);
  do_accept(state);
  for (std::size_t i = 0; i < o.io_threads; ++i) {
    state->io_threads.emplace_back([state] {
      name_this_thread("kekd-io");
      state->ioc->run();
    });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(state));
}

std::uint16_t HttpServer::port() const { return state_->port; }
std::size_t HttpServer::open_connections() const { return state_->connections; }
std::uint64_t HttpServer::queue_timeouts() const { return state_->workers->expired(); }

HttpServer::ConnectionCounts HttpServer::connection_counts() const {
  return {state_->refused, state_->reclaimed, state_->accept_failures};
}

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
  // The close posted above may not have run if the I/O threads stopped first. No thread runs the
  // io_context now, so close the acceptor here: a new client is refused from now on rather than
  // left waiting until the destructor.
  beast::error_code ignored;
  state_->acceptor->close(ignored);
  // Requests still queued after the drain are dropped rather than run: their connections are
  // gone, and each could block on an HSM that hangs. join() then waits only for the handlers that
  // are running; one stuck in an HSM call keeps it waiting (serve bounds that, serve_command.cc).
  state_->workers->stop();
  // The io_context outlives stop(): a request whose handler finished after the drain may still
  // hold its responder (the audit writer calls it once its record is durable, and the audit log is
  // closed after this), and that responder posts to the io_context. Posted to a stopped one, the
  // response is discarded with the connection when the destructor destroys the io_context.
}

HttpServer::~HttpServer() {
  stop(std::chrono::milliseconds(0));
  // The acceptor belongs to the io_context and must go first; destroying the io_context then
  // destroys every pending handler, and with them the remaining sessions and their sockets.
  state_->acceptor.reset();
  state_->idle_sweep.reset();
  state_->ioc.reset();
}

}  // namespace kekd::api
