import { Cause, Context, Effect, Exit, Option } from "effect"
import type { Runtime } from "effect"
import type { AcquireOptions, PromiseQueue, QueueManager, Service, Slot, SlotOptions, UserId } from "../QueueManager.js"
import { QueueShutdown } from "./errors.js"
import { type Direct, directIn } from "./queueManager.js"
import { makeRunner, type QueueRuntime, unstoppable } from "./runner.js"

const module = "effect-queue-manager/QueueManager.toPromise"

/**
 * The value of `exit`, or what it failed with as it was: the library's own error, the work's
 * rejection, the error of a layer that failed to build. A call only interrupted was cut short
 * by the runtime's end (disposed, closing the store): its work's value if the work had fulfilled
 * by then (`done`), otherwise `QueueShutdown` for a call of `userId`, an error saying so for others.
 */
const settle =
  <A>(userId?: UserId, done?: () => { readonly value: A } | undefined) =>
  (exit: Exit.Exit<A, unknown>): A => {
    if (Exit.isSuccess(exit)) return exit.value
    if (Cause.isInterruptedOnly(exit.cause)) {
      const fulfilled = done?.()
      if (fulfilled !== undefined) return fulfilled.value
      if (userId !== undefined) throw new QueueShutdown({ userId })
      throw new Error(`${module}: the runtime has been disposed`)
    }
    throw Cause.squash(exit.cause)
  }

/**
 * `work` under a slot taken by `direct`'s steps, without a fiber: given back once the work
 * settles, whatever the outcome; its value, or what the take or the work threw, as a promise.
 * The work is awaited with `await`, as the fiber's `unstoppable` awaits it: a native promise's
 * own `then` is ignored, and a throw while reading it (its `constructor`) rejects the call.
 */
const inSlot = <A>(direct: Direct, userId: UserId, bypass: boolean, work: (slot: Slot) => PromiseLike<A> | A) => {
  let slot: Slot
  try {
    slot = direct.take(userId, bypass)
  } catch (error) {
    return Promise.reject(error)
  }
  return (async () => {
    try {
      return await work(slot)
    } finally {
      direct.give(userId)
    }
  })()
}

/**
 * The manager `tag` finds in `runtime`, for code that is not Effect: see `QueueManager.toPromise`.
 * A `withSlot` that does not wait runs without a fiber where the manager allows it (see
 * `Direct`): the fiber costs several times the steps themselves.
 */
export const toPromise = (runtime: QueueRuntime, tag: Context.Tag<QueueManager, Service>): PromiseQueue => {
  const { run, ready } = makeRunner(module, runtime)
  let cached: { readonly runtime: Runtime.Runtime<QueueManager>; readonly direct: Direct | undefined } | undefined
  /** The manager's `Direct` steps, when a call made now may take them. */
  const direct = () => {
    const built = ready()
    if (built === undefined) return undefined
    if (cached?.runtime !== built) {
      const service = Context.getOption(built.context, tag)
      cached = { runtime: built, direct: Option.isSome(service) ? directIn(service.value, built) : undefined }
    }
    return cached.direct
  }
  const withQueue = <A, E>(
    f: (queue: Service) => Effect.Effect<A, E>,
    userId?: UserId,
    done?: () => { readonly value: A } | undefined
  ) => run(Effect.flatMap(tag, f)).then(settle(userId, done))
  return {
    withSlot: <A>(userId: UserId, work: (slot: Slot) => PromiseLike<A> | A, options?: SlotOptions) => {
      const steps = options?.onFull === "wait" ? undefined : direct()
      if (steps !== undefined) return inSlot(steps, userId, options?.bypassUserLimit === true, work)
      let started: ReturnType<typeof unstoppable<A>> | undefined
      return withQueue(
        (queue) =>
          queue.withSlot(
            userId,
            options
          )((slot) => {
            // the slot stays held until the work settles (a lost lease, on Redis, rejects with
            // LeaseLost once it has)
            started = unstoppable(() => work(slot))
            return started.effect
          }),
        userId,
        () => started?.fulfilled()
      )
    },
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
