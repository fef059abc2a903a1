// Lints the Lua of the Redis store (src/internal/redis/*.lua), for `npm run lint`: with luacheck
// and .luacheckrc where luacheck is installed (CI installs Debian's lua-check), and elsewhere with a
// check of our own on luaparse's syntax tree: the file parses as Lua 5.1, and it reads and writes
// no global but those Lua 5.1 and Redis provide (a misspelt local is the bug this catches).
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import luaparse from "luaparse"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const directory = path.join(root, "src", "internal", "redis")
const files = readdirSync(directory)
  .filter((name) => name.endsWith(".lua"))
  .map((name) => path.join(directory, name))

const luacheck = spawnSync("luacheck", ["--version"], { stdio: "ignore" })
if (luacheck.status === 0) {
  const run = spawnSync("luacheck", ["-q", "--config", path.join(root, ".luacheckrc"), ...files], { stdio: "inherit" })
  process.exit(run.status ?? 1)
}

const provided = new Set([
  ...["redis", "string", "table", "math", "cjson", "bit", "struct", "cmsgpack"],
  ...["assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawset"],
  ...["select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "unpack", "xpcall"]
])
let problems = 0
for (const file of files) {
  const relative = path.relative(root, file)
  let tree
  try {
    tree = luaparse.parse(readFileSync(file, "utf8"), { scope: true, locations: true, luaVersion: "5.1" })
  } catch (error) {
    console.error(`${relative}: ${error.message}`)
    problems++
    continue
  }
  for (const name of tree.globals) {
    if (provided.has(name.name)) continue
    console.error(`${relative}:${name.loc?.start.line ?? "?"}: global ${name.name} (a misspelt local, or a global)`)
    problems++
  }
}
console.log(`lint:lua: luacheck is not installed (apt-get install lua-check): checked syntax and globals only`)
process.exit(problems === 0 ? 0 : 1)
