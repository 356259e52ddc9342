#include "support/loopback_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdlib>

namespace kekd::testing {

LoopbackClient::LoopbackClient(std::uint16_t port, int receive_buffer)
    : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
  REQUIRE(fd_ >= 0);
  if (receive_buffer > 0) {
    REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) == 0);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
}

LoopbackClient::~LoopbackClient() { ::close(fd_); }

void LoopbackClient::send(std::string_view data) {
  REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

bool LoopbackClient::closed_within(std::chrono::milliseconds timeout) {
  if (!pending_.empty()) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char c;
  return ::recv(fd_, &c, 1, MSG_PEEK) <= 0;
}

std::string LoopbackClient::response(std::chrono::milliseconds timeout) {
  std::size_t total = std::string::npos;  // header and body, once the header is complete
  char buf[65536];
  for (;;) {
    if (total == std::string::npos) {
      const std::size_t end = pending_.find("\r\n\r\n");
      if (end != std::string::npos) {
        // Header names as the server writes them: this client reads kekd's answers only.
        const std::size_t at = pending_.find("\r\nContent-Length: ");
        REQUIRE_MESSAGE((at != std::string::npos && at < end), pending_.substr(0, end));
        total = end + 4 + std::strtoull(pending_.c_str() + at + 18, nullptr, 10);
      }
    }
    if (total != std::string::npos && pending_.size() >= total) {
      std::string answer = pending_.substr(0, total);
      pending_.erase(0, total);
      return answer;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return "";
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return "";
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace kekd::testing
