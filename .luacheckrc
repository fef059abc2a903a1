-- luacheck's settings for the Lua of the Redis store (npm run lint)
std = "lua51"
-- what Redis gives a script or function besides Lua 5.1's standard library
read_globals = { "redis" }
max_line_length = 120
files["src/internal/redis/store.lua"] = {
  -- `run` is the entry point: lua.ts appends the code that calls it (a function library or a script)
  ignore = { "211/run" }
}
