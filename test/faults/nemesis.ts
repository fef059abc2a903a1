/**
 * The nemesis: what the fault tests do to Redis and to the workers. Every redis-server here is
 * the test's own, on a free loopback port (never the shared one), and is stopped by its pid
 * when the scope closes.
 */
import type { ChildProcess } from "node:child_process"
import { Effect } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import { freePort, spawnRedis, stop } from "../redis/server.js"
import { now } from "./protocol.js"

/** A redis-server of the test's own, which the nemesis kills, restarts and pauses in place. */
export interface RedisServer {
  readonly port: number
  readonly url: string
  /** The pid of the server running now. */
  readonly pid: () => number | undefined
  /** kill -9: Redis is gone, its state with it (it keeps nothing on disk). */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same port, empty; resolves once it answers. */
  readonly start: Effect.Effect<void>
  /** kill -9 then start again: a restart without persistence. */
  readonly restart: Effect.Effect<void>
  /** SIGSTOP: its connections stay open and it answers nothing. */
  readonly pause: Effect.Effect<void>
  /** SIGCONT. */
  readonly resume: Effect.Effect<void>
}

/** A redis-server on a free loopback port (no persistence), stopped by its pid when the scope closes. */
export const ownRedis: Effect.Effect<RedisServer, never, Scope.Scope> = Effect.gen(function* () {
  const port = yield* freePort
  let current: ChildProcess | undefined
  const start = Effect.gen(function* () {
    current = yield* spawnRedis(port)
  }).pipe(Effect.uninterruptible)
  const kill = Effect.suspend(() => (current === undefined ? Effect.void : stop(current))).pipe(
    Effect.zipRight(Effect.sync(() => void (current = undefined)))
  )
  const signal = (name: NodeJS.Signals) => Effect.sync(() => void current?.kill(name))
  yield* Effect.acquireRelease(start, () => kill)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => current?.pid,
    kill,
    start,
    restart: Effect.zipRight(kill, start),
    pause: signal("SIGSTOP"),
    resume: signal("SIGCONT")
  }
})

/**
 * Runs `f` on an admin connection of its own to the Redis on `port`, closed afterwards; fails
 * (a defect) if Redis does not answer within `timeoutMs`.
 */
export const admin = <A>(port: number, f: (redis: Redis) => Promise<A>, timeoutMs = 5000) =>
  Effect.promise(async () => {
    const redis = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 })
    redis.on("error", () => {})
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await redis.connect()
      return await Promise.race([
        f(redis),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis on ${port} did not answer in ${timeoutMs} ms`)), timeoutMs)
        })
      ])
    } finally {
      clearTimeout(timer)
      redis.disconnect()
    }
  })

/** `CLIENT KILL TYPE normal|pubsub`, sparing the admin connection itself; how many were killed. */
export const clientKill = (port: number, type: "normal" | "pubsub") =>
  admin(port, (redis) => redis.call("CLIENT", "KILL", "TYPE", type, "SKIPME", "yes") as Promise<number>)

/** `FUNCTION FLUSH`: Redis forgets every function library (the store must load its own again). */
export const functionFlush = (port: number) => admin(port, (redis) => redis.call("FUNCTION", "FLUSH"))

/** The keys under `prefix`, sorted. */
export const keysUnder = (port: number, prefix: string) =>
  admin(port, (redis) => redis.keys(`{${prefix}}:*`).then((keys) => keys.sort()))

/** A restart without persistence that the witness can tell: when it happened, and the token below which holders belong to the lost state. */
export interface Wipe {
  readonly at: number
  /**
   * A new state's fencing counter starts at Redis's clock in microseconds, and the lost one's
   * tokens stayed below it (fewer than one grant per microsecond since it began): so a token
   * below this moment's microseconds was granted before the wipe.
   */
  readonly tokenBelow: number
}

/** The moment of a wipe (call it just before killing Redis). */
export const wipeNow = (): Wipe => {
  const at = now()
  return { at, tokenBelow: Math.floor(at * 1000) }
}

/** Sends `signal` to the process `pid`, if it is still there. */
export const signal = (pid: number, name: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(pid, name)
    } catch {
      // already gone
    }
  })
