import { Effect } from "effect"
import { QueueShutdown } from "./errors.js"
import { Scheduler, type Waiter } from "./scheduler.js"
import type { Store } from "./store.js"

/** Suspends until `waiter` is admitted (succeeds) or refused by a shutdown (fails). */
const awaitAdmission = (waiter: Waiter) =>
  Effect.async<void, QueueShutdown>((resume) => {
    const wake = (admitted: boolean) =>
      resume(admitted ? Effect.void : Effect.fail(new QueueShutdown({ userId: waiter.userId })))
    if (waiter.state === "waiting") waiter.wake = wake
    else wake(waiter.state === "admitted")
  })

/** The in-memory store: one process, one `Scheduler`, nothing to install. */
export const makeMemoryStore = (maxTotal: number, maxWaitingPerUser: number): Store => {
  const scheduler = new Scheduler(maxTotal, maxWaitingPerUser)
  return {
    acquire: (userId, limit, bypass, wait) => Effect.sync(() => scheduler.acquire(userId, limit, bypass, wait)),
    awaitTurn: (ticket) =>
      Effect.as(awaitAdmission(ticket as Waiter), {
        get active() {
          return scheduler.count(ticket.userId)
        },
        lease: undefined
      }),
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
    maxTotal: () => scheduler.maxTotal,
    resize: (maxTotal, limitOf) =>
      Effect.sync(() => {
        const limits = new Map(Array.from(scheduler.waitingUserIds(), (userId) => [userId, limitOf(userId)] as const))
        scheduler.resize(maxTotal, limits)
      }),
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
