import { Deferred, Effect, Fiber } from "effect"
import type { Scope } from "effect"
import { QueueManager } from "../src/index.js"

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

/** Provides a fresh manager built with `options`. */
export const withManager = (options: QueueManager.Options) => Effect.provide(QueueManager.layer(options))
