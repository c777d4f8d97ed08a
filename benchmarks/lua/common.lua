-- Shared by the benchmark's wrk scripts: thread numbering and the result line
-- that benchmarks/loadgen.py parses (wrk's own report is for humans).

local counter = 0

function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT {\"requests\": %d, \"duration_us\": %d, \"connect\": %d, \"read\": %d, " ..
      "\"write\": %d, \"status\": %d, \"timeout\": %d, \"p50_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
