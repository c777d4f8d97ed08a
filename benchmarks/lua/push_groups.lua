-- Small pushes to many groups: wrk ... -s push_groups.lua URL -- GROUPS SERIES TOKEN METHOD THREADS
-- Request k of thread t goes to group (t + k * THREADS) mod GROUPS, so the
-- threads cover the groups round-robin. Bodies must equal
-- benchmarks/payloads.py push_body(): the scrape check depends on it.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local requests, groups, step, n

function init(args)
   groups = tonumber(args[1])
   local series, token, method = tonumber(args[2]), tonumber(args[3]), args[4]
   step = tonumber(args[5])
   n = thread_id or 0
   requests = {}
   for g = 0, groups - 1 do
      local lines = { "# TYPE bench_push gauge" }
      for i = 0, series - 1 do
         lines[#lines + 1] = string.format('bench_push{i="%d"} %.0f', i, token * 1000000 + g * 100 + i)
      end
      local body = table.concat(lines, "\n") .. "\n"
      requests[g] = wrk.format(method, "/metrics/job/benchpush/instance/g" .. g,
                               { ["Content-Type"] = "text/plain; version=0.0.4" }, body)
   end
end

function request()
   local r = requests[n % groups]
   n = n + step
   return r
end
