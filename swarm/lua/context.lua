#!lua flags=no-writes
-- context: what a mind is shown with a task (read only), for callers that hold no claim.
-- KEYS: the standard eight (_lib.lua); uses task:, children:
-- ARGV[1] = task id
-- Returns {'ancestry', rows, 'siblings', rows, 'children', rows}: each `rows` a header of
--         field names (those read_context reads, _lib.lua, then 'id') and one row of
--         values per task
return read_context(ARGV[1])
