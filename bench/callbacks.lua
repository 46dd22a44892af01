-- wrk script: replays pre-signed callbacks (bench/out/callbacks.tsv), each thread its own
-- share, so every request is a distinct, correctly signed transition.
-- Each thread takes every WRK_THREADS-th line of the file and sends its share in order;
-- after its last request it starts again from its first, and the RESULT line counts those
-- repeats (`repeated=`): a repeated callback is a duplicate that writes nothing, so a run
-- that repeats flatters the figure. Make the file long enough for the run.
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
  repeated = 0
  wrapped = false
  pace = tonumber(os.getenv("WRK_DELAY_MS") or "0")
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wrapped = true
  end
  if wrapped then repeated = repeated + 1 end
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
  local repeats = 0
  for _, thread in ipairs(threads) do
    repeats = repeats + (thread:get("repeated") or 0)
  end
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f requests=%d errors=%d repeated=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout, repeats))
end
