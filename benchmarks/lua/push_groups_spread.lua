-- push_groups.lua spread over several replicas: one wrk thread per replica.
-- BENCH_PORTS="p1,p2,p3" wrk -tN -cC ... -s push_groups_spread.lua URL -- GROUPS SERIES TOKEN METHOD N
-- Thread t connects to replica t mod #ports (wrk's thread.addr); with
-- THREADS = N its requests go to groups t, t+N, t+2N, ..., so the threads
-- together cover the groups round-robin as push_groups.lua does.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "push_groups.lua")

local ports = {}
for p in string.gmatch(os.getenv("BENCH_PORTS") or "", "%d+") do
   ports[#ports + 1] = p
end
local threads = 0

function setup(thread)
   thread:set("thread_id", threads)
   if #ports > 0 then
      thread.addr = wrk.lookup("127.0.0.1", ports[threads % #ports + 1])[1]
   end
   threads = threads + 1
end
