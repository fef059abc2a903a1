import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"

/**
 * The store's calls, each a function of `store.lua` (see the file for their arguments and
 * answers). Every call declares the same keys, `keysOf(prefix)`, but `probe`, which declares
 * `probeKeysOf(prefix)`.
 */
export type Script = "batch" | "renew" | "leave" | "read" | "configure" | "probe"

const scripts: ReadonlyArray<Script> = ["batch", "renew", "leave", "read", "configure", "probe"]

/** The Lua code, kept in its own file so that it can be linted (the build copies it beside this module). */
const code = readFileSync(new URL("./store.lua", import.meta.url), "utf8")

/** The keys every call declares, under the hash tag `{prefix}` (one cluster slot holds them all). */
export const keysOf = (prefix: string): ReadonlyArray<string> =>
  ["h", "held", "leases", "tickets", "texp", "lines", "ready", "limits"].map((name) => `{${prefix}}:${name}`)

/** The keys `probe` tries the store's commands on: a hash and a sorted set of their own, in the prefix's slot. */
export const probeKeysOf = (prefix: string): ReadonlyArray<string> => [`{${prefix}}:probe:h`, `{${prefix}}:probe:z`]

/** The library's name: it changes with its code, so that processes of different versions never replace each other's. */
export const libraryName = `effect_queue_manager_${createHash("sha1").update(code).digest("hex").slice(0, 12)}`

/** The function that runs each call in the library. */
export const functionNames = Object.fromEntries(
  scripts.map((script) => [script, `${libraryName}_${script}`])
) as Readonly<Record<Script, string>>

/** All calls as one function library, for `FUNCTION LOAD` (Redis 7 and later): its helpers are made once. */
export const library = [
  `#!lua name=${libraryName}`,
  code,
  ...scripts.map(
    (script) =>
      `redis.register_function('${functionNames[script]}', function(KEYS, ARGV) return run('${script}', KEYS, ARGV) end)`
  )
].join("\n")

/** Each call on its own, for `EVALSHA` (Redis 6.2, or a server that refuses `FUNCTION`). */
export const evalScripts = Object.fromEntries(
  scripts.map((script) => [script, `${code}\nreturn run('${script}', KEYS, ARGV)\n`])
) as Readonly<Record<Script, string>>
