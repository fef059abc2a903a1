import { Cause, Effect, Exit, Option } from "effect"
import type { AcquireOptions, PromiseQueue, QueueManager, Service, SlotOptions, UserId } from "../QueueManager.js"
import { QueueShutdown } from "./errors.js"
import { makeRunner, type QueueRuntime } from "./runner.js"

const module = "effect-queue-manager/QueueManager.toPromise"

/**
 * The value of `exit`, or what it failed with as it was: the library's own error, the work's
 * rejection, the error of a layer that failed to build. A call of `userId` only interrupted was
 * cut short by the store closing (the runtime disposed): `QueueShutdown`.
 */
const settle =
  (userId?: UserId) =>
  <A>(exit: Exit.Exit<A, unknown>): A => {
    if (Exit.isSuccess(exit)) return exit.value
    if (userId !== undefined && Cause.isInterruptedOnly(exit.cause)) throw new QueueShutdown({ userId })
    throw Cause.squash(exit.cause)
  }

/** The manager `tag` finds in `runtime`, for code that is not Effect: see `QueueManager.toPromise`. */
export const toPromise = (runtime: QueueRuntime, tag: Effect.Effect<Service, never, QueueManager>): PromiseQueue => {
  const run = makeRunner(module, runtime)
  const withQueue = <A, E>(f: (queue: Service) => Effect.Effect<A, E>, userId?: UserId) =>
    run(Effect.flatMap(tag, f)).then(settle(userId))
  return {
    withSlot: (userId: UserId, work, options?: SlotOptions) =>
      withQueue(
        (queue) =>
          queue.withSlot(
            userId,
            options
          )((slot) =>
            // a promise cannot be stopped: the slot stays held until it settles (a lost lease, on
            // Redis, rejects with LeaseLost once it has)
            Effect.uninterruptible(Effect.promise(async () => work(slot)))
          ),
        userId
      ),
    tryAcquire: (userId: UserId, options?: AcquireOptions) =>
      withQueue((queue) => queue.tryAcquire(userId, options), userId),
    release: (userId: UserId) => withQueue((queue) => queue.release(userId), userId),
    check: (userId: UserId, options?: SlotOptions) =>
      withQueue((queue) => Effect.map(queue.check(userId, options), Option.getOrUndefined)),
    status: (userId: UserId) => withQueue((queue) => queue.status(userId)),
    stats: () => withQueue((queue) => queue.stats),
    drain: () => withQueue((queue) => queue.drain)
  }
}
