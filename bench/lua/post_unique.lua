-- POST $BENCH_BODY with every "%NAME%" replaced by a name unique across threads and runs.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end
local counter = 0
function request()
   counter = counter + 1
   local name = string.format("b%s-%d-%d", run, tid, counter)
   return wrk.format("POST", nil, nil, (body:gsub("%%NAME%%", name)))
end
