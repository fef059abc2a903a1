import { Effect, Exit, Logger, LogLevel, Scope } from "effect"
import { Redis } from "ioredis"
import { createConnection } from "node:net"
import { Semaphore } from "redis-semaphore"
import type { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"

/** The Redis the benchmarks run against: `REDIS_URL`, or the local default. */
export const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"

/** Whether something answers on the Redis port within a second. */
export const redisReachable = (): Promise<boolean> =>
  new Promise((resolve) => {
    const url = new URL(redisUrl)
    const socket = createConnection({ host: url.hostname, port: Number(url.port || 6379) })
    socket.setTimeout(1000)
    socket.once("connect", () => (socket.destroy(), resolve(true)))
    socket.once("error", () => resolve(false))
    socket.once("timeout", () => (socket.destroy(), resolve(false)))
  })

let runs = 0

/** redis-semaphore's key for `user`'s semaphore (it adds `semaphore:` in front). */
export const peerKey = (prefix: string, user: number): string => `${prefix}:${user}`

/** What `bench/redisHolder.ts` is told: whose slots to take, how many, on which lease. */
export interface HolderArgs {
  readonly redis: string
  readonly prefix: string
  readonly user: number
  readonly limit: number
  readonly leaseMillis: number
}

/** Both contenders on one Redis, under one prefix of their own, whose keys are deleted at the end. */
export interface RedisPeers {
  readonly prefix: string
  /** A new key prefix under `prefix` (deleted with it), e.g. for a manager in another process. */
  readonly newPrefix: () => string
  /** A QueueManager on the Redis store in this process, under a new prefix unless `options` name one. */
  readonly ours: (options: Omit<RedisStore.Options, "redis">) => Promise<QueueManager.Service>
  /** The ioredis connection redis-semaphore's semaphores use. */
  readonly client: Redis
  /** A redis-semaphore semaphore of `limit` on `user`'s key (one object per acquisition, as its API wants). */
  readonly semaphore: (user: number, limit: number, options?: ConstructorParameters<typeof Semaphore>[3]) => Semaphore
}

/**
 * Runs `use` with the contenders of a Redis benchmark, under a key prefix no other run uses;
 * then closes them and deletes every key under that prefix, however `use` ended.
 */
export const withPeers = async <A>(use: (peers: RedisPeers) => Promise<A>): Promise<A> => {
  const prefix = `bench:${process.pid}:${Date.now().toString(36)}:${(runs++).toString(36)}`
  const scope = Effect.runSync(Scope.make())
  const client = new Redis(redisUrl)
  const deleteKeys = async (pattern: string) => {
    const keys = await client.keys(pattern)
    if (keys.length > 0) await client.del(...keys)
  }
  let prefixes = 0
  const newPrefix = () => `${prefix}:${prefixes++}`
  try {
    return await use({
      prefix,
      newPrefix,
      ours: (options) =>
        Effect.runPromise(
          Scope.extend(RedisStore.make({ prefix: newPrefix(), ...options, redis: redisUrl }), scope).pipe(
            Logger.withMinimumLogLevel(LogLevel.None)
          )
        ),
      client,
      // acquireTimeout: under contention a poller may wait long; a sample must not fail for it
      semaphore: (user, limit, options) =>
        new Semaphore(client, peerKey(prefix, user), limit, { acquireTimeout: 600_000, ...options })
    })
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await deleteKeys(`{${prefix}:*`)
    await deleteKeys(`semaphore:${prefix}:*`)
    await client.quit()
  }
}
