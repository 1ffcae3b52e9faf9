-- POST a JSON body, with a fresh Salesforce Account ID in every request.
--
-- BENCH_BODY: the body; each "@ID@" in it becomes "001" .. BENCH_TAG (3 characters)
--   .. thread (2 digits) .. counter (7 digits): a valid 15-character Account ID that no
--   other request of the run uses, so customer upserts create instead of finding.
-- BENCH_KEYED=1: each request also carries "Idempotency-Key: bench-<that ID>", as every
--   request from the Salesforce package does (a new key each: a claim, then a kept answer).
-- Headers come from wrk's -H. done() prints one line, "BENCH_RESULT {json}".

local body_template = os.getenv("BENCH_BODY") or "{}"
local tag = os.getenv("BENCH_TAG") or "AAA"
local keyed = os.getenv("BENCH_KEYED") == "1"
local needs_id = keyed or body_template:find("@ID@", 1, true) ~= nil

local thread_count = 0
function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
end

local counter = 0
local prefix
function init(args)
   prefix = string.format("001%s%02d", tag, thread_number or 0)
   wrk.method = "POST"
   wrk.body = body_template
end

function request()
   if not needs_id then
      return wrk.format()
   end
   counter = counter + 1
   local id = string.format("%s%07d", prefix, counter)
   local headers = nil
   if keyed then
      headers = {}
      for name, value in pairs(wrk.headers) do
         headers[name] = value
      end
      headers["Idempotency-Key"] = "bench-" .. id
   end
   return wrk.format(nil, nil, headers, (body_template:gsub("@ID@", id)))
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
