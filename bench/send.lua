-- wrk script: POST /api/SMS/Send with DESTS distinct destinations per request, cycling through a pool of
-- pre-built bodies so that the load generator spends its time sending, not building strings.
local dests = tonumber(os.getenv("DESTS") or "1")
local key = os.getenv("API_KEY") or ""
local pool = {}
local pool_size = tonumber(os.getenv("POOL") or "2000")
local counter = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for i = 1, pool_size do
    local parts = {}
    for j = 1, dests do
      parts[j] = string.format('{"MobileNo":"00161755%05d"}', math.random(0, 99999))
    end
    pool[i] = '{"Destination":[' .. table.concat(parts, ",") ..
      '],"Message":"Your code is 123456","Sender":"OM","ReferenceID":"bench"}'
  end
end

request = function()
  counter = counter + 1
  local body = pool[(counter % pool_size) + 1]
  return wrk.format("POST", "/api/SMS/Send",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
