-- wrk script: POSTs hooks read from a file of templates, one body per line.
-- Each "@ID@" in a template becomes a fresh id, unique per run and thread,
-- so that no record coalesces with another and every record is stored.
-- Arguments (after "--"): run prefix, templates file, hook token.

local bodies = {}
local next_body = 0
local counter = 0
local id_prefix = ""
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  id_prefix = args[1] .. "-" .. thread_number .. "-"
  for line in io.lines(args[2]) do
    bodies[#bodies + 1] = line
  end
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  wrk.headers["Content-Type"] = "application/json"
end

local function fresh_id()
  counter = counter + 1
  return id_prefix .. counter
end

function request()
  next_body = next_body % #bodies + 1
  local body = string.gsub(bodies[next_body], "@ID@", fresh_id)
  return wrk.format(nil, nil, nil, body)
end

-- One JSON line for bench/load.py; wrk's own report goes before it.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"duration_us": %d, "requests": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency.max))
end
