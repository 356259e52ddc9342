// Blocking calls over Beast's asynchronous operations: each operation runs a private io_context
// until it completes, because only the asynchronous operations honour tcp_stream's deadlines.
#include "kekd/api/http_client.h"

#include <botan/mem_ops.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>

namespace kekd::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

// Far above any answer kekd gives (a full batch is a few MB), low enough to bound memory.
constexpr std::uint64_t kMaxResponseBody = 64 * 1024 * 1024;

struct Url {
  bool tls = false;
  std::string host;  // IPv6 literals without their brackets
  std::string port;
  std::string authority;  // as given, for the Host header
  std::string prefix;     // path prefix without a trailing '/'
};

Error bad_url(std::string_view url, std::string_view why) {
  return Error(Code::kInvalidArgument,
               "'" + std::string(url) + "' is not a usable kekd address: " + std::string(why));
}

Result<Url> parse_url(std::string_view text) {
  Url url;
  std::string_view rest;
  if (text.starts_with("http://")) {
    rest = text.substr(7);
  } else if (text.starts_with("https://")) {
    url.tls = true;
    rest = text.substr(8);
  } else {
    return bad_url(text, "it must start with http:// or https://");
  }
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return bad_url(text, "credentials in the URL are not supported");
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return bad_url(text, "it must not have a query or fragment");
  }
  std::string_view host;
  std::string_view port;
  if (authority.starts_with('[')) {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad_url(text, "unterminated '['");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad_url(text, "unexpected text after ']'");
      port = after.substr(1);
    }
  } else {
    std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (port.find(':') != std::string_view::npos) {
      return bad_url(text, "an IPv6 address must be in brackets");
    }
  }
  if (host.empty()) return bad_url(text, "no host");
  if (port.empty()) {
    url.port = url.tls ? "443" : "80";
  } else {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535) return bad_url(text, "bad port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return bad_url(text, "bad port");
    url.port = std::string(port);
  }
  url.host = std::string(host);
  url.authority = std::string(authority);
  while (path.ends_with('/')) path.remove_suffix(1);
  url.prefix = std::string(path);
  return url;
}

bool idempotent(http::verb verb) {
  return verb == http::verb::get || verb == http::verb::head || verb == http::verb::put ||
         verb == http::verb::delete_ || verb == http::verb::options;
}

// A closed connection shows as an error on the next write or read; these are the ways it shows.
bool is_closed(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

std::string seconds(std::chrono::milliseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

// The alerts a server sends about the client certificate it was given. With TLS 1.3 they arrive
// after the client's side of the handshake is done, as the answer to the first request.
bool is_client_certificate_alert(int reason) {
  switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      return true;
    default:
      return false;
  }
}

// OpenSSL's messages carry a library suffix ("... (SSL routines)") that says nothing to a user.
std::string describe(const beast::error_code& ec) {
  if (ec.category() == net::error::get_ssl_category()) {
    int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
      return "the server requires a client certificate";
    }
    const char* text = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    std::string why = text != nullptr ? text : ec.message();
    if (is_client_certificate_alert(reason)) {
      return "the server refused the client certificate (" + why + ")";
    }
    return why;
  }
  if (is_closed(ec)) return "the server closed the connection";
  return ec.message();
}

Status check_readable(const std::string& path, std::string_view what) {
  if (::access(path.c_str(), R_OK) != 0) {
    return Error(Code::kInvalidArgument,
                 "cannot read the " + std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  return ok_status();
}

Status check_header(const std::string& name, const std::string& value) {
  auto bad = [](const std::string& s) { return s.find_first_of("\r\n", 0) != std::string::npos; };
  if (name.empty() || bad(name) || bad(value) || value.find('\0') != std::string::npos) {
    return Error(Code::kInvalidArgument, "header '" + name + "' has a line break or NUL in it");
  }
  return ok_status();
}

}  // namespace

struct HttpClient::Impl {
  Endpoint endpoint;
  Url url;
  ClientTimeouts timeouts;
  net::io_context ioc;
  std::optional<ssl::context> tls;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  ~Impl() { disconnect(); }

  bool connected() const { return plain.has_value() || secure.has_value(); }

  tcp::socket& socket() {
    return secure ? beast::get_lowest_layer(*secure).socket() : plain->socket();
  }

  void disconnect() {
    if (connected()) {
      // No TLS close_notify: waiting for the server's would only delay the caller, and kekd
      // treats a bare close like any other end of a connection.
      beast::error_code ignored;
      socket().close(ignored);
    }
    secure.reset();
    plain.reset();
    buffer.clear();
  }

  // Runs the operations started on the io_context to completion; their deadlines bound them.
  void run_io() {
    ioc.restart();
    ioc.run();
  }

  // A kept-alive connection that has anything to read before we asked (the server's FIN, a TLS
  // close_notify) has been closed by the server's idle timeout: start afresh rather than fail.
  bool stale() {
    pollfd p{socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  Result<tcp::resolver::results_type> resolve() {
    // The handler may run after this call gave up waiting (getaddrinfo cannot be interrupted),
    // so it writes into shared state rather than into locals.
    struct Outcome {
      bool done = false;
      beast::error_code ec;
      tcp::resolver::results_type results;
    };
    auto outcome = std::make_shared<Outcome>();
    auto resolver = std::make_shared<tcp::resolver>(ioc);
    resolver->async_resolve(
        url.host, url.port,
        [outcome, resolver](beast::error_code ec, tcp::resolver::results_type r) {
          outcome->done = true;
          outcome->ec = ec;
          outcome->results = std::move(r);
        });
    ioc.restart();
    ioc.run_for(timeouts.connect);
    if (!outcome->done) {
      resolver->cancel();
      return Error(Code::kUnavailable, "cannot connect to " + endpoint.url + ": resolving '" +
                                           url.host + "' timed out after " +
                                           seconds(timeouts.connect));
    }
    if (outcome->ec) {
      return Error(Code::kUnavailable,
                   "cannot connect to " + endpoint.url + ": " + outcome->ec.message());
    }
    return outcome->results;
  }

  Status connect() {
    KEKD_ASSIGN_OR_RETURN(tcp::resolver::results_type endpoints, resolve());
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeouts.connect);
    beast::error_code ec = net::error::would_block;
    stream.async_connect(endpoints, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
    run_io();
    if (ec) {
      std::string why = ec == beast::error::timeout ? "timed out after " + seconds(timeouts.connect)
                                                    : ec.message();
      return Error(Code::kUnavailable, "cannot connect to " + endpoint.url + ": " + why);
    }
    stream.socket().set_option(tcp::no_delay(true), ec);
    if (!tls) {
      plain.emplace(std::move(stream));
      return ok_status();
    }

    secure.emplace(std::move(stream), *tls);
    SSL* ssl_handle = secure->native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    beast::error_code not_ip;
    net::ip::make_address(url.host, not_ip);
    // An address is checked against the certificate's IP entries; a name is also sent as SNI,
    // which RFC 6066 forbids for addresses.
    bool pinned =
        not_ip ? SSL_set_tlsext_host_name(ssl_handle, url.host.c_str()) == 1 &&
                     X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size()) == 1
               : X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str()) == 1;
    if (!pinned) {
      disconnect();
      return Error(Code::kInternal, "cannot set the TLS peer name '" + url.host + "'");
    }
    beast::get_lowest_layer(*secure).expires_after(timeouts.connect);
    ec = net::error::would_block;
    secure->async_handshake(ssl::stream_base::client, [&ec](beast::error_code e) { ec = e; });
    run_io();
    if (ec) {
      long verify = SSL_get_verify_result(ssl_handle);
      std::string why;
      if (ec == beast::error::timeout) {
        why = "timed out after " + seconds(timeouts.connect);
      } else if (verify != X509_V_OK) {
        // OpenSSL's own message is only "certificate verify failed"; the reason is kept apart.
        why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      } else {
        why = describe(ec);
      }
      disconnect();
      return Error(Code::kUnavailable, "TLS handshake with " + endpoint.url + " failed: " + why);
    }
    return ok_status();
  }

  template <class Stream>
  beast::error_code exchange(Stream& stream, http::request<http::string_body>& request,
                             http::response_parser<http::string_body>& parser, bool& sent) {
    // One deadline for writing and reading together: the whole request is bounded.
    beast::get_lowest_layer(stream).expires_after(timeouts.request);
    beast::error_code ec = net::error::would_block;
    http::async_write(stream, request, [&ec](beast::error_code e, std::size_t) { ec = e; });
    run_io();
    if (ec) return ec;
    sent = true;
    ec = net::error::would_block;
    http::async_read(stream, buffer, parser, [&ec](beast::error_code e, std::size_t) { ec = e; });
    run_io();
    return ec;
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

const std::string& HttpClient::url() const { return impl_->endpoint.url; }

Result<std::unique_ptr<HttpClient>> HttpClient::create(Endpoint endpoint, ClientTimeouts timeouts) {
  KEKD_ASSIGN_OR_RETURN(Url url, parse_url(endpoint.url));
  if (endpoint.client_cert.empty() != endpoint.client_key.empty()) {
    return Error(Code::kInvalidArgument,
                 "a client certificate needs both the certificate and its private key");
  }
  auto impl = std::make_unique<Impl>();
  if (url.tls) {
    beast::error_code ec;
    ssl::context& ctx = impl->tls.emplace(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                    ec);
    // An encrypted key would make OpenSSL prompt on the terminal in the middle of a command.
    ctx.set_password_callback(
        [](std::size_t, ssl::context::password_purpose) { return std::string(); }, ec);
    if (endpoint.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
      if (ec) {
        return Error(Code::kInvalidArgument,
                     "cannot load the system's CA certificates: " + describe(ec));
      }
    } else {
      KEKD_RETURN_IF_ERROR(check_readable(endpoint.ca_file, "CA file"));
      ctx.load_verify_file(endpoint.ca_file, ec);
      if (ec) {
        return Error(Code::kInvalidArgument,
                     "cannot load the CA file " + endpoint.ca_file + ": " + describe(ec));
      }
    }
    ctx.set_verify_mode(ssl::verify_peer, ec);
    if (!endpoint.client_cert.empty()) {
      KEKD_RETURN_IF_ERROR(check_readable(endpoint.client_cert, "client certificate"));
      KEKD_RETURN_IF_ERROR(check_readable(endpoint.client_key, "client key"));
      ctx.use_certificate_chain_file(endpoint.client_cert, ec);
      if (ec) {
        return Error(Code::kInvalidArgument, "cannot load the client certificate " +
                                                 endpoint.client_cert + ": " + describe(ec));
      }
      ctx.use_private_key_file(endpoint.client_key, ssl::context::pem, ec);
      if (ec) {
        return Error(Code::kInvalidArgument,
                     "cannot load the client key " + endpoint.client_key + ": " + describe(ec));
      }
    }
  }
  impl->endpoint = std::move(endpoint);
  impl->url = std::move(url);
  impl->timeouts = timeouts;
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

Result<ClientResponse> HttpClient::request(std::string_view method, std::string_view target,
                                           std::string_view body,
                                           const std::map<std::string, std::string>& headers) {
  Impl& s = *impl_;
  http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == http::verb::unknown) {
    return Error(Code::kInvalidArgument, "unknown HTTP method '" + std::string(method) + "'");
  }
  http::request<http::string_body> request{verb, s.url.prefix + std::string(target), 11};
  request.set(http::field::host, s.url.authority);
  for (const auto& [name, value] : headers) {
    KEKD_RETURN_IF_ERROR(check_header(name, value));
    request.set(name, value);
  }
  request.body() = std::string(body);
  request.keep_alive(true);
  request.prepare_payload();
  // A request body may carry a plaintext key (wrap): this copy is wiped whatever the outcome.
  struct Scrub {
    std::string& text;
    ~Scrub() { Botan::secure_scrub_memory(text.data(), text.size()); }
  } scrub_body{request.body()};

  for (int attempt = 0;; ++attempt) {
    bool reused = s.connected();
    if (reused && s.stale()) {
      s.disconnect();
      reused = false;
    }
    if (!s.connected()) KEKD_RETURN_IF_ERROR(s.connect());

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    bool sent = false;
    beast::error_code ec = s.secure ? s.exchange(*s.secure, request, parser, sent)
                                    : s.exchange(*s.plain, request, parser, sent);
    if (!ec) {
      http::response<http::string_body> response = parser.release();
      ClientResponse out;
      out.status = static_cast<int>(response.result_int());
      for (const auto& field : response) {
        std::string name(field.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto [it, fresh] = out.headers.emplace(name, std::string(field.value()));
        if (!fresh) it->second += ", " + std::string(field.value());
      }
      if (!response.keep_alive()) s.disconnect();
      out.body = std::move(response.body());
      return out;
    }
    s.disconnect();
    // The server may close a kept-alive connection just as we reuse it. Sending again is safe
    // when it cannot have acted on the request: nothing was sent, or the method is idempotent.
    if (reused && attempt == 0 && is_closed(ec) && !parser.got_some() &&
        (!sent || idempotent(verb))) {
      continue;
    }
    if (ec == beast::error::timeout) {
      return Error(Code::kUnavailable,
                   "no answer from " + s.endpoint.url + " within " + seconds(s.timeouts.request));
    }
    if (ec == http::error::body_limit) {
      return Error(Code::kUnavailable, "the answer from " + s.endpoint.url + " is too large");
    }
    return Error(Code::kUnavailable, "request to " + s.endpoint.url + " failed: " + describe(ec));
  }
}

}  // namespace kekd::api
