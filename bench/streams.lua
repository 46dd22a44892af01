-- wrk script: replays pre-signed Twilio Event Streams requests (bench/out/events-N.tsv,
-- written by examples/presign.rs with `events N`), each thread its own share, so every
-- request is a distinct, correctly signed batch of new events.
-- Optional: WRK_DELAY_MS paces each connection.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local file = os.getenv("EVENTS")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  requests = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == id then
      local target, signature, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", target, {
        ["Content-Type"] = "application/json",
        ["X-Twilio-Signature"] = signature,
      }, body)
    end
    n = n + 1
  end
  index = 0
  pace = tonumber(os.getenv("WRK_DELAY_MS") or "0")
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

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
