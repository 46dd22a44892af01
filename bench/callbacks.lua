-- wrk script: replays pre-signed callbacks (bench/out/callbacks.tsv), each thread its own
-- share, so every request is a distinct, correctly signed transition.
-- Optional: WRK_DELAY_MS paces each connection (for latency at a fixed rate); WRK_OFFSET
-- skips that many of each thread's requests (consecutive runs then send new callbacks).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local file = os.getenv("CALLBACKS") or "bench/out/callbacks.tsv"
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  requests = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == id then
      local signature, token, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/twilio/status", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = signature,
        ["I-Twilio-Idempotency-Token"] = token,
      }, body)
    end
    n = n + 1
  end
  index = tonumber(os.getenv("WRK_OFFSET") or "0") % #requests
  pace = tonumber(os.getenv("WRK_DELAY_MS") or "0")
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

-- wrk drives a script with a delay() through timers, which costs far more CPU than the
-- plain loop, so delay() exists only when pacing was asked for.
if tonumber(os.getenv("WRK_DELAY_MS") or "0") > 0 then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout))
end
