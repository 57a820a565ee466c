#!lua flags=no-writes
-- context: what a mind is shown with a task (read only), for callers that hold no claim.
-- KEYS: the standard eight (_lib.lua); uses task:, children:
-- ARGV[1] = task id
-- Returns {ancestry {id, title, detail}..., siblings {id, title, result, confidence}...,
--          children {id, state, title, result, confidence, reason}...}
return read_context(ARGV[1])
