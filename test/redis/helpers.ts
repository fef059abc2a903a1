import { Effect, Fiber, Logger } from "effect"
import { Redis } from "ioredis"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import { freePort, startRedis } from "./server.js"

/** Two managers on one prefix, as two processes would be (separate connections, separate process ids). */
export const twoProcesses = (options: Omit<RedisStore.Options, "prefix">) =>
  Effect.gen(function* () {
    const prefix = uniquePrefix()
    yield* Effect.addFinalizer(() => deleteKeys(prefix))
    const a = yield* RedisStore.make({ redis: redisUrl, ...options, prefix })
    const b = yield* RedisStore.make({ redis: redisUrl, ...options, prefix })
    return { a, b, prefix }
  })

/**
 * A redis-server of the test's own on a free port (started with the extra arguments `args`,
 * stopped when the scope closes): its port, its process and its URL.
 */
export const ownRedisServer = (args: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const port = yield* freePort
    const server = yield* startRedis(port, args)
    return { port, server, url: `redis://127.0.0.1:${port}` }
  })

/** A redis-server of the test's own (as `ownRedisServer`) and a store `q` on it made with `options`. */
export const ownRedisStore = (options: Omit<RedisStore.Options, "redis">, args?: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const own = yield* ownRedisServer(args)
    const q = yield* RedisStore.make({ ...options, redis: own.url })
    return { ...own, q }
  })

/** Runs `f` on a connection of its own to the shared Redis, or to the test's own Redis on `port`. */
export const withRedis = <A>(f: (redis: Redis) => Promise<A>, port?: number) =>
  Effect.promise(async () => {
    const redis = port === undefined ? new Redis(redisUrl) : new Redis({ port, host: "127.0.0.1" })
    try {
      return await f(redis)
    } finally {
      await redis.quit()
    }
  })

/** The keys under `prefix`, sorted. */
export const keysOf = (prefix: string, port?: number) =>
  withRedis((redis) => redis.keys(`{${prefix}}:*`).then((keys) => keys.sort()), port)

/** Makes the leases `ids` (or every lease) expired in Redis, as if their process had stopped renewing them. */
export const expireLeases = (prefix: string, ids?: ReadonlyArray<string>, port?: number) =>
  withRedis(async (redis) => {
    for (const id of ids ?? (await redis.zrange(`{${prefix}}:leases`, 0, -1))) {
      await redis.zadd(`{${prefix}}:leases`, "XX", 1, id)
    }
  }, port)

/** The lease ids under `prefix` held for the (encoded) user `user`, e.g. `n1`. */
export const leaseIdsOf = (prefix: string, user: string) =>
  withRedis((redis) => redis.zrange(`{${prefix}}:leases`, 0, -1)).pipe(
    Effect.map((ids) => ids.filter((id) => id.endsWith(`:${user}`)))
  )

/** Makes Redis lose the state under `prefix`, as a restart without persistence or a flush would. */
export const loseState = (prefix: string, port?: number) => withRedis((redis) => redis.del(`{${prefix}}:h`), port)

/** A logger keeping the messages of warnings and of info lines, and the layer that installs it. */
export const warningLog = () => {
  const warnings: Array<string> = []
  const infos: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning") warnings.push(String(message))
    if (logLevel._tag === "Info") infos.push(String(message))
  })
  return { warnings, infos, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/**
 * Runs `hold` (which takes a slot of user 1 on `a`, then runs `work`: `Effect.never`, then a
 * mark) in a fiber, makes Redis lose its state under `prefix`, and returns how the fiber ended
 * and whether the work after `Effect.never` ran. The next answer `a` gets tells it.
 */
export const loseLease = (
  a: QueueManager.Service,
  prefix: string,
  hold: (work: Effect.Effect<void>) => Effect.Effect<unknown, unknown>
) =>
  Effect.gen(function* () {
    let finished = false
    const fiber = yield* Effect.fork(
      hold(
        Effect.zipRight(
          Effect.never,
          Effect.sync(() => void (finished = true))
        )
      )
    )
    yield* eventually("the slot is held", a.stats, (s) => s.inFlight > 0)
    yield* loseState(prefix)
    yield* Effect.either(a.activeCount(0)) // any answer tells a that Redis lost its state
    return { exit: yield* Fiber.await(fiber), finished }
  })

/** Has user 9 wait behind a slot of its own (a limit of 1). */
export const someoneWaits = (manager: QueueManager.Service) =>
  Effect.gen(function* () {
    yield* manager.tryAcquire(9)
    yield* Effect.fork(manager.withSlot(9, { onFull: "wait" })(Effect.void))
    yield* eventually("someone waits", manager.stats, (s) => s.waiting === 1)
  })
