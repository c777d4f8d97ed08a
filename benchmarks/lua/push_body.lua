-- One body pushed over and over to one path:
-- wrk ... -s push_body.lua URL -- METHOD PATH BODY_FILE [vary]
-- With "vary", each request appends a series of its own (see
-- benchmarks/payloads.py shape_line()), so no body has the shape of
-- another and pushgw cannot prepare it from a template.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local HEADERS = { ["Content-Type"] = "text/plain; version=0.0.4" }
local method, path, body, vary, req
local k = 0

function init(args)
   local f = assert(io.open(args[3], "rb"))
   body = f:read("*a")
   f:close()
   method, path, vary = args[1], args[2], args[4] == "vary"
   req = wrk.format(method, path, HEADERS, body)
end

function request()
   if not vary then
      return req
   end
   k = k + 1
   local line = string.format('bench_c_shape{push="%d-%d"} 1\n', thread_id or 0, k)
   return wrk.format(method, path, HEADERS, body .. line)
end
