import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option } from "effect"
import { Redis } from "ioredis"
import type { Scope } from "effect"
import { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
import { keysOf } from "../src/internal/redis/lua.js"
import { clusterClient } from "./cluster/helpers.js"

/** The defect an exit died with, if it did. */
export const defectOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined

/** Holds one slot of `userId` in a background fiber until the test's scope closes. */
export const holdOne = (q: QueueManager.Service, userId: QueueManager.UserId, options?: QueueManager.SlotOptions) =>
  Effect.gen(function* () {
    const held = yield* Deferred.make<void>()
    yield* Effect.forkScoped(
      Effect.scoped(
        q.slot(userId, options).pipe(Effect.zipRight(Deferred.succeed(held, undefined)), Effect.zipRight(Effect.never))
      )
    )
    yield* Deferred.await(held)
  })

/** Holds one slot of `userId` until the returned effect is run; the slot is then released. */
export const hold = (
  q: QueueManager.Service,
  userId: QueueManager.UserId,
  options?: QueueManager.SlotOptions
): Effect.Effect<Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const held = yield* Deferred.make<void>()
    const done = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkScoped(
      q.withSlot(userId, options)(Effect.zipRight(Deferred.succeed(held, undefined), Deferred.await(done)))
    )
    yield* Deferred.await(held)
    return Effect.zipRight(Deferred.succeed(done, undefined), Effect.asVoid(Fiber.await(fiber)))
  })

/** Waits (yielding) until the manager has `n` requests waiting. */
export const untilWaiting = (q: QueueManager.Service, n: number) =>
  Effect.gen(function* () {
    while ((yield* q.stats).waiting !== n) yield* Effect.yieldNow()
  })

/** Forks a wait-mode request of `userId` whose body appends `label` to `order`, once it is queued. */
export const enqueue = (
  q: QueueManager.Service,
  userId: QueueManager.UserId,
  order: Array<string>,
  label: string,
  options?: QueueManager.SlotOptions
) =>
  Effect.gen(function* () {
    const before = (yield* q.stats).waiting
    const fiber = yield* Effect.fork(
      q.withSlot(userId, { onFull: "wait", ...options })(Effect.sync(() => order.push(label)))
    )
    yield* untilWaiting(q, before + 1)
    return fiber
  })

/**
 * The store the contract tests run against: `QUEUE_STORE=redis` (the `redis` vitest project),
 * `cluster` (`vitest.cluster.config.ts`, on the cluster whose ports `REDIS_CLUSTER_PORTS` names)
 * or in memory.
 */
export const storeUnderTest: "memory" | "redis" | "cluster" =
  process.env["QUEUE_STORE"] === "redis" ? "redis" : process.env["QUEUE_STORE"] === "cluster" ? "cluster" : "memory"

/** The Redis the tests use. */
export const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"

let prefixes = 0

/** A key prefix no other test uses; its keys are deleted when the test's manager closes. */
export const uniquePrefix = () => `test:${process.pid}:${Date.now().toString(36)}:${(prefixes++).toString(36)}`

/** Deletes every key under `prefix`. */
export const deleteKeys = (prefix: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl)
    const keys = await redis.keys(`{${prefix}}:*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })

/** A fresh manager built with `options` on the store under test (Redis: a unique prefix, cleaned up after). */
export const managerLayer = (options: QueueManager.Options) => {
  if (storeUnderTest === "memory") return QueueManager.layer(options)
  const prefix = uniquePrefix()
  if (storeUnderTest === "cluster") {
    return Layer.unwrapScoped(
      Effect.map(clusterClient, (client) =>
        Layer.merge(
          RedisStore.layer({ ...options, redis: client, prefix }),
          // every key of a prefix shares its hash tag: one DEL on the master of its slot
          Layer.scopedDiscard(Effect.addFinalizer(() => Effect.promise(() => client.del(...keysOf(prefix)))))
        )
      )
    )
  }
  return Layer.merge(
    RedisStore.layer({ ...options, redis: redisUrl, prefix }),
    Layer.scopedDiscard(Effect.addFinalizer(() => deleteKeys(prefix)))
  )
}

/** Provides a fresh manager built with `options` on the store under test. */
export const withManager = (options: QueueManager.Options) => Effect.provide(managerLayer(options))
