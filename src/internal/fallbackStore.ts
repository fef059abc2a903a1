import { Effect } from "effect"
import type { UserId } from "../QueueManager.js"
import type { StoreUnavailable } from "./errors.js"
import type { Grant, Lease, Local, Store, Ticket } from "./store.js"

/** The lease of a slot taken from the local store while the shared one was unreachable. */
class LocalLease implements Lease {
  readonly watch = undefined
}

/**
 * A shared store that falls back to a local one while it is unavailable: acquisitions then
 * use per-process limits, and every slot or waiter goes back to the store it came from.
 * Reads fall back to the local view too.
 */
export const withFallback = (shared: Store, local: Store): Store => {
  const localTickets = new WeakSet<Ticket>()
  const localGrant = (grant: Grant): Grant => ({ active: grant.active, lease: new LocalLease() })
  const orLocal = <A>(read: Effect.Effect<A, StoreUnavailable>, fallback: Effect.Effect<A, StoreUnavailable>) =>
    Effect.catchTag(read, "StoreUnavailable", () => fallback)
  const sum = (key: Exclude<keyof Local, "refused">) => shared.local[key] + local.local[key]
  return {
    acquire: (userId, limit, bypass, wait) =>
      orLocal(
        shared.acquire(userId, limit, bypass, wait),
        Effect.map(local.acquire(userId, limit, bypass, wait), (outcome) => {
          if (outcome._tag === "Acquired") return { _tag: "Acquired", grant: localGrant(outcome.grant) }
          if (outcome._tag === "Waiting") localTickets.add(outcome.ticket)
          return outcome
        })
      ),
    awaitTurn: (ticket) =>
      localTickets.has(ticket) ? Effect.map(local.awaitTurn(ticket), localGrant) : shared.awaitTurn(ticket),
    leave: (ticket) => (localTickets.has(ticket) ? local.leave(ticket) : shared.leave(ticket)),
    release: (userId: UserId, lease) =>
      lease instanceof LocalLease
        ? local.release(userId, undefined)
        : lease !== undefined
          ? shared.release(userId, lease)
          : (shared.release(userId, undefined) ?? local.release(userId, undefined)),
    count: (userId) => orLocal(shared.count(userId), local.count(userId)),
    users: orLocal(shared.users, local.users),
    snapshot: orLocal(shared.snapshot, local.snapshot),
    totals: orLocal(shared.totals, local.totals),
    maxTotal: shared.maxTotal,
    resize: (maxTotal, limitOf) => Effect.zipRight(local.resize(maxTotal, limitOf), shared.resize(maxTotal, limitOf)),
    shutdown: Effect.zipRight(shared.shutdown, local.shutdown),
    isShutdown: shared.isShutdown,
    awaitIdle: Effect.zipRight(shared.awaitIdle, local.awaitIdle),
    local: {
      get inFlight() {
        return sum("inFlight")
      },
      get users() {
        return sum("users")
      },
      get waiting() {
        return sum("waiting")
      },
      get acquired() {
        return sum("acquired")
      },
      get refused() {
        const a = shared.local.refused
        const b = local.local.refused
        return {
          user: a.user + b.user,
          global: a.global + b.global,
          waiting: a.waiting + b.waiting,
          shutdown: a.shutdown + b.shutdown
        }
      }
    }
  }
}
