-- wrk script for scripts/bench.sh: one kekd operation over HTTP/1.1 keep-alive, single items or
-- batches, and a RESULT line of JSON at the end. Configured by the environment:
--
--   BENCH_OP           wrap | unwrap | datakey | health (GET /v1/health)
--   BENCH_KEY          the key, default "demo"
--   BENCH_BATCH        items per request; 1 (default) sends single-item bodies,
--                      more sends {"items": [...]} (the native batch API)
--   BENCH_CIPHERTEXTS  unwrap: a file of base64 ciphertexts of BENCH_KEY, one a line, made with
--                      an empty context; requests cycle through them
--   KEKD_BENCH_TOKEN   a client token with the operation's grant on BENCH_KEY
--   BENCH_DELAY_MS     if set and > 0, each connection waits this long between an answer and its
--                      next request (wrk's delay(); not counted in the latency): a paced probe,
--                      such as a load balancer's health check, instead of a closed-loop flood
--
-- Every data key is 32 bytes. Answers that are not 2xx are counted (for single items wrk's own
-- count, status >= 400; for batches the script looks at every answer and also counts the items
-- that answered {"error": ...}). Socket errors are wrk's connect, read, write and timeout counts.

local op = os.getenv("BENCH_OP") or "wrap"
local key = os.getenv("BENCH_KEY") or "demo"
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local token = os.getenv("KEKD_BENCH_TOKEN")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

-- Thirty-two bytes as base64, a different value for each i.
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function dek_b64(i)
  local out = {}
  for j = 1, 42 do
    local k = (i * 7 + j * 13) % 64 + 1
    out[j] = b64chars:sub(k, k)
  end
  -- 32 bytes are 43 characters and one '='; the 43rd carries 4 bits, so its low 2 bits are 0.
  out[43] = "A"
  return table.concat(out) .. "="
end

local function load_ciphertexts()
  local path = os.getenv("BENCH_CIPHERTEXTS")
  assert(path, "BENCH_CIPHERTEXTS is not set")
  local list = {}
  for line in io.lines(path) do
    if #line > 0 then
      list[#list + 1] = line
    end
  end
  assert(#list > 0, "no ciphertexts in " .. path)
  return list
end

local function item(i, cts)
  if op == "wrap" then
    return '{"plaintext":"' .. dek_b64(i) .. '"}'
  elseif op == "unwrap" then
    return '{"ciphertext":"' .. cts[(i - 1) % #cts + 1] .. '"}'
  else
    return '{"bytes":32}'
  end
end

-- The request bodies a thread cycles through.
local function bodies(thread_seed)
  local cts = (op == "unwrap") and load_ciphertexts() or {}
  local n = (op == "unwrap") and 64 or 1
  local list = {}
  for b = 1, n do
    local first = thread_seed * 997 + (b - 1) * batch + 1
    if batch <= 1 then
      list[b] = item(first, cts)
    else
      local items = {}
      for i = 1, batch do
        items[i] = item(first + i - 1, cts)
      end
      list[b] = '{"items":[' .. table.concat(items, ",") .. ']}'
    end
  end
  return list
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

local requests_list
local next_request = 0
non2xx = 0
item_errors = 0

function init(args)
  if op == "health" then
    wrk.method = "GET"
    wrk.path = "/v1/health"
    return
  end
  wrk.method = "POST"
  wrk.path = "/v1/keys/" .. key .. "/" .. op
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
  local list = bodies(id or 1)
  if #list == 1 then
    wrk.body = list[1]  -- one fixed request: wrk formats it once
  else
    requests_list = {}
    for i, body in ipairs(list) do
      requests_list[i] = wrk.format(nil, nil, nil, body)
    end
  end
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

if op == "unwrap" then
  function request()
    next_request = next_request % #requests_list + 1
    return requests_list[next_request]
  end
end

if batch > 1 then
  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    else
      local _, n = body:gsub('"error":', "")
      item_errors = item_errors + n
    end
  end
end

function done(summary, latency, requests)
  local n2, ie = 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + (t:get("non2xx") or 0)
    ie = ie + (t:get("item_errors") or 0)
  end
  if batch <= 1 then
    n2 = summary.errors.status
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'RESULT {"op":"%s","batch":%d,"requests":%d,"seconds":%.3f,"rps":%.1f,"ops_per_sec":%.1f,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"non2xx":%d,"item_errors":%d,' ..
    '"socket_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    op, batch, summary.requests, seconds, summary.requests / seconds,
    ((summary.requests - n2) * batch - ie) / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, n2, ie, e.connect + e.read + e.write + e.timeout,
    e.connect, e.read, e.write, e.timeout))
end
