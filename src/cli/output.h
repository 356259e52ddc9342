// What kekctl writes and reads besides the API: JSON on stdout, raw bytes from stdin or files,
// plaintexts into private files.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::cli {

// Removes the base64 "plaintext" member from kekd's answer and returns its bytes in zeroizing
// memory; the base64 copy is scrubbed first.
Result<SecretBytes> take_plaintext(nlohmann::json& answer);

// kekd's answer, pretty-printed with two spaces, and a newline.
Status print_json(const nlohmann::json& value);

// "cannot <what> <path>: <strerror(err)>", the one shape of kekctl's file errors.
Error file_error(const std::string& what, const std::string& path, int err);

// The bytes of FILE, or of stdin for "-"; refuses more than `limit` bytes. Messages call the file
// "<label> <path>" when a label is given ("the token file ...").
Result<SecretBytes> read_input(const std::string& path, std::size_t limit,
                               const std::string& label = "");

// Writes `bytes` to `path`, created or truncated with mode 0600 (an existing file's mode is set
// to 0600 too): it is about to hold a plaintext key.
Status write_private_file(const std::string& path, ByteView bytes);

}  // namespace kekd::cli
