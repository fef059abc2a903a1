/**
 * The Redis store under an ACL user: the README's grant is enough, with a function library and
 * with scripts, and a user lacking any command the store's Lua runs is refused at start, the
 * command named (Redis itself would name only the script's line, and only once a call ran it).
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { readFileSync } from "node:fs"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { ownRedisServer, withRedis } from "./helpers.js"

const root = new URL("../../", import.meta.url)

/** The README's `ACL SETUSER` line for the prefix `app`, as its words. */
const readmeGrant = (() => {
  const line = readFileSync(new URL("README.md", root), "utf8")
    .split("\n")
    .find((text) => text.trim().startsWith("ACL SETUSER app "))
  if (line === undefined) throw new Error("the README has no ACL SETUSER line")
  return line.trim().split(" ").slice(3)
})()

/** Every command `store.lua` runs, as Redis names them. */
const luaCommands = Array.from(
  new Set(
    Array.from(
      readFileSync(new URL("src/internal/redis/store.lua", root), "utf8").matchAll(/redis\.p?call\('([A-Z]+)'/g),
      (match) => match[1]!
    )
  )
)

/** Makes the ACL user `name` (password `secret`) with the README's grant, for `prefix`, changed by `edit`. */
const setUser = (port: number, name: string, prefix: string, edit: (grant: Array<string>) => Array<string>) =>
  withRedis(
    (redis) =>
      redis.call(
        "ACL",
        "SETUSER",
        name,
        "reset",
        ...edit(readmeGrant.map((word) => word.replaceAll("{app}", `{${prefix}}`)))
      ),
    port
  )

/** A store of the ACL user `name` on `port`. */
const storeOf = (port: number, name: string, prefix: string) =>
  RedisStore.make({ maxUserQueue: 1, prefix, redis: `redis://${name}:secret@127.0.0.1:${port}`, timeout: "500 millis" })

describe("Redis store permissions", () => {
  // each with the function libraries it leaves loaded
  const modes: ReadonlyArray<readonly [string, (grant: Array<string>) => Array<string>, number]> = [
    ["a function library", (grant) => grant, 1],
    [
      "scripts",
      (grant) => grant.filter((word) => word !== "+fcall" && word !== "+function|load").concat("+evalsha", "+eval"),
      0
    ]
  ]
  it.live.each(modes)("the README's grant is enough to take, wait, hand off and read, with %s", ([, edit, libraries]) =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      yield* setUser(port, "app", "granted", edit)
      const q = yield* storeOf(port, "app", "granted")
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(q.withSlot(1)(Deferred.await(release)))
      yield* eventually("the holder has its slot", q.status(1), (s) => s.active === 1)
      const waiter = yield* Effect.fork(q.withSlot(1, { onFull: "wait" })(Effect.succeed("handed off")))
      yield* eventually("the waiter waits", q.status(1), (s) => s.active === 1 && s.waiting === 1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      expect(yield* Fiber.join(waiter).pipe(Effect.timeout("2 seconds"))).toBe("handed off")
      expect(yield* q.stats).toMatchObject({ inFlight: 0, acquired: 2 })
      // the probe's keys are gone; the state's are there
      const keys = yield* withRedis((redis) => redis.keys("{granted}:*"), port)
      expect(keys.filter((key) => key.includes("probe"))).toEqual([])
      expect(keys).toContain("{granted}:h")
      expect(yield* withRedis((redis) => redis.call("FUNCTION", "LIST"), port)).toHaveLength(libraries)
    }).pipe(Effect.scoped)
  )

  it.live("a user granted the state's keys one by one (not the probe's) starts and works", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      const stateKeys = ["h", "held", "leases", "tickets", "texp", "lines", "ready", "limits"]
      yield* setUser(port, "app", "exact", (grant) =>
        grant.filter((word) => !word.startsWith("~")).concat(stateKeys.map((key) => `~{exact}:${key}`))
      )
      const q = yield* storeOf(port, "app", "exact")
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.tryAcquire(1)).toBe(false)
      expect(yield* q.status(1)).toMatchObject({ active: 1 })
    }).pipe(Effect.scoped)
  )

  it.live("a user lacking any one command the store's Lua runs is refused at start, the command named", () =>
    Effect.gen(function* () {
      // the parse found the Lua's commands (a change of its quoting would empty the list)
      expect(luaCommands).toEqual(expect.arrayContaining(["TYPE", "TIME", "HSET", "ZADD", "ZREM", "PUBLISH"]))
      const { port } = yield* ownRedisServer()
      // PUBLISH runs under pcall: its refusal is told by the start's own probe of it
      for (const command of luaCommands) {
        const lacking = `-${command.toLowerCase()}`
        yield* setUser(port, "app", "lacking", (grant) => [...grant, lacking])
        const error = yield* Effect.flip(Effect.scoped(storeOf(port, "app", "lacking")))
        expect(error.message, `without ${command}`).toMatch(
          command === "PUBLISH" ? /may not PUBLISH to / : new RegExp(`may not run ${command} on the prefix's keys`)
        )
      }
      // nothing was written: neither state nor the probe's keys
      expect(yield* withRedis((redis) => redis.keys("*"), port)).toEqual([])
    }).pipe(Effect.scoped)
  )
})
