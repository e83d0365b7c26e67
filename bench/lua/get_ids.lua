-- GET $BENCH_PATH_PREFIX/<id> for ids taken in turn from the file $BENCH_IDS (one per line).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local ids, n = {}, 0
for line in io.lines(os.getenv("BENCH_IDS")) do n = n + 1; ids[n] = line end
local prefix = os.getenv("BENCH_PATH_PREFIX")
local i = 0
function init(args) i = math.random(n) end
function request()
   i = i % n + 1
   return wrk.format("GET", prefix .. ids[i])
end
