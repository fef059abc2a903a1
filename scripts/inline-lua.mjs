// Inlines the Lua of the Redis store into the compiled library (the directory given, e.g. dist):
// the source reads store.lua beside lua.ts, the built module carries it as a string, so that
// bundlers and installs need nothing but the JavaScript.
import { readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const compiled = path.join(process.argv[2] ?? "dist", "internal", "redis", "lua.js")
const read = `readFileSync(new URL("./store.lua", import.meta.url), "utf8")`
const module = readFileSync(compiled, "utf8")
if (!module.includes(read)) throw new Error(`${compiled} does not read store.lua as expected: cannot inline it`)
const lua = readFileSync(path.join(root, "src", "internal", "redis", "store.lua"), "utf8")
writeFileSync(
  compiled,
  module.replace(read, () => JSON.stringify(lua))
)
