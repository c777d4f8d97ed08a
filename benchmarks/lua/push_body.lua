-- One body pushed over and over to one path:
-- wrk ... -s push_body.lua URL -- METHOD PATH BODY_FILE

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local req

function init(args)
   local f = assert(io.open(args[3], "rb"))
   local body = f:read("*a")
   f:close()
   req = wrk.format(args[1], args[2], { ["Content-Type"] = "text/plain; version=0.0.4" }, body)
end

function request()
   return req
end
