-- extdns writes kstatus-style conditions: Ready, Reconciling and Stalled, each with the
-- generation it was computed for. Ready=True alone is not enough: a condition written for
-- an older generation says nothing about the spec Argo CD just applied.
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local status = obj.status or {}
local ready = condition(status.conditions, "Ready")

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if ready ~= nil and ready.reason == "Deleting" then
    hs.message = ready.message
  else
    hs.message = "Waiting for extdns to remove this object's records"
  end
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for extdns to report status"
  return hs
end

-- The generation the conditions describe: the condition's own when it has one.
local observed = ready.observedGeneration
if observed == nil then
  observed = status.observedGeneration
end
if obj.metadata.generation ~= nil and observed ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for extdns to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message
else
  hs.message = ready.message
end
return hs
