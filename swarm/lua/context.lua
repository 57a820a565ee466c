#!lua flags=no-writes
-- context: what a mind is shown with a task (read only), for callers that hold no claim.
-- KEYS: the standard eight (_lib.lua); uses task:, children:
-- ARGV[1] = task id
-- Returns {'ancestry', {task}..., 'siblings', {task}..., 'children', {task}...}, each task a
--         flat name/value list of the fields read_context names (_lib.lua), 'id' first
return read_context(ARGV[1])
