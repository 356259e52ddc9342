-- wrk script: single-item wraps of a 32-byte plaintext on key "demo" (KEKD_BENCH_TOKEN: a client
-- token with the wrap grant). Any answer other than 200 counts as an error in the summary.
local token = os.getenv("KEKD_BENCH_TOKEN")
wrk.method = "POST"
wrk.path = "/v1/keys/demo/wrap"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"plaintext":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}'

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
