import { Effect } from "effect"
import { QueueShutdown } from "./errors.js"
import { type Outside, Scheduler, type Waiter } from "./scheduler.js"
import type { Grant, Store, StoreConfig } from "./store.js"

/** Suspends until `waiter` is admitted (succeeds with its grant) or refused by a shutdown (fails). */
const awaitAdmission = (waiter: Waiter) =>
  Effect.async<Grant, QueueShutdown>((resume) => {
    const wake = (admitted: boolean) =>
      resume(admitted ? Effect.succeed(waiter.grant!) : Effect.fail(new QueueShutdown({ userId: waiter.userId })))
    if (waiter.state === "waiting") waiter.wake = wake
    else wake(waiter.state === "admitted")
  })

/** The in-memory store, and its scheduler (the fallback store tells it about slots held outside it). */
export const makeMemoryStore = (config: StoreConfig, outside?: Outside): Store & { readonly scheduler: Scheduler } => {
  const scheduler = new Scheduler(config, outside)
  return {
    scheduler,
    acquire: (userId, bypass, wait) => Effect.sync(() => scheduler.acquire(userId, bypass, wait)),
    awaitTurn: (ticket) => awaitAdmission(ticket as Waiter),
    leave: (ticket) => Effect.sync(() => scheduler.leave(ticket as Waiter)),
    release: (userId) => scheduler.release(userId),
    count: (userId) => Effect.sync(() => scheduler.count(userId)),
    users: Effect.sync(() => scheduler.users),
    snapshot: Effect.sync(() => scheduler.counts),
    totals: Effect.sync(() => ({
      inFlight: scheduler.inFlight,
      activeUsers: scheduler.users,
      waiting: scheduler.waiting,
      waitingUsers: scheduler.waitingUsers,
      acquired: scheduler.acquired,
      refused: { ...scheduler.refused }
    })),
    limits: () => ({ maxUserQueue: scheduler.maxUserQueue, maxTotal: scheduler.maxTotal }),
    resize: (limits) => Effect.sync(() => scheduler.resize(limits)),
    shutdown: Effect.sync(() => scheduler.shutdown()),
    isShutdown: () => scheduler.isShutdown,
    awaitIdle: Effect.async<void>((resume) => {
      const cancel = scheduler.onIdle(() => resume(Effect.void))
      return Effect.sync(cancel)
    }),
    local: scheduler,
    now: scheduler
  }
}
