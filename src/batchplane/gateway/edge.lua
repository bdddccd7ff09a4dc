-- batchplane's edge filter, placed before the gRPC-JSON transcoder.
--
-- Requests: drop headers a client must not control on the gRPC side
-- (`*-bin` would be parsed as binary metadata; `grpc-timeout` would set
-- deadlines).
--
-- Responses: intake announces the HTTP status (202, 207, 402, 422, ...) and,
-- for errors, the exact JSON body in initial metadata (`x-http-status`,
-- `x-error-body`), because the transcoder can only map gRPC codes. Internal
-- and grpc-* headers never reach the client, and no 5xx body ever carries
-- exception text.

local INTERNAL_ERROR = '{"error":"internal error","code":"internal"}'
-- Intake unreachable (restarting, overloaded): the transcoder answers 503, which is
-- retryable and must say so, not look like a failure of the request itself.
local UNAVAILABLE = '{"error":"service unavailable","code":"unavailable"}'

function envoy_on_request(handle)
  local headers = handle:headers()
  -- A NUL byte can never be part of an id, and PostgreSQL refuses it in text:
  -- refuse it here as a bad parameter instead of failing deeper with a 500.
  local path = headers:get(":path") or ""
  if string.find(string.lower(path), "%00", 1, true) then
    handle:respond(
      {[":status"] = "400", ["content-type"] = "application/json"},
      '{"error":"the request path or query contains a NUL byte","code":"invalid_request"}'
    )
    return
  end
  local doomed = {}
  for name, _ in pairs(headers) do
    if string.sub(name, -4) == "-bin" or name == "grpc-timeout" then
      table.insert(doomed, name)
    end
  end
  for _, name in ipairs(doomed) do
    headers:remove(name)
  end
end

local function strip_internal(headers)
  headers:remove("x-http-status")
  headers:remove("x-error-body")
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-status-details-bin")
  headers:remove("grpc-accept-encoding")
  headers:remove("grpc-encoding")
end

local function replace_body(handle, body)
  handle:body():setBytes(body)
  -- After body(), the earlier headers handle is stale: fetch it again.
  local headers = handle:headers()
  headers:replace("content-type", "application/json")
  return headers
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local status = headers:get("x-http-status")
  local error_body = headers:get("x-error-body")
  local current = tonumber(headers:get(":status")) or 200
  if error_body ~= nil then
    headers = replace_body(handle, error_body)
  elseif status == nil and (current == 503 or current == 499) then
    -- 499 is the transcoder's rendering of gRPC CANCELLED: a call that reached an
    -- intake while it stops (SIGTERM). It was not run; retrying it is safe.
    headers = replace_body(handle, UNAVAILABLE)
    headers:replace(":status", "503")
  elseif status == nil and current >= 500 then
    headers = replace_body(handle, INTERNAL_ERROR)
  end
  if status ~= nil then
    headers:replace(":status", status)
  end
  strip_internal(headers)
end
