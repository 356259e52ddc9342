// A raw TCP client on 127.0.0.1 for the HTTP server's tests: requests go out byte for byte as
// written (partial, pipelined or malformed), and answers are read back whole.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace kekd::testing {

class LoopbackClient {
 public:
  // receive_buffer > 0 sets SO_RCVBUF before connecting: a small window makes the server's
  // sends partial.
  explicit LoopbackClient(std::uint16_t port, int receive_buffer = 0);
  ~LoopbackClient();
  LoopbackClient(const LoopbackClient&) = delete;
  LoopbackClient& operator=(const LoopbackClient&) = delete;

  void send(std::string_view data);

  // True if the server closed the connection (EOF or reset) within the timeout; false if it is
  // still open and silent.
  bool closed_within(std::chrono::milliseconds timeout);

  // The next whole answer: its header and Content-Length bytes of body. Whatever arrives past it
  // (the answer to a pipelined request) is kept for the next call. Empty if the connection
  // closes, or stays silent for `timeout`, before the answer is complete.
  std::string response(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  int fd_;
  std::string pending_;
};

}  // namespace kekd::testing
