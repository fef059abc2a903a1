import { Effect } from "effect"
import type { UserId } from "../QueueManager.js"
import type { StoreUnavailable } from "./errors.js"
import type { MemoryStore } from "./memoryStore.js"
import type { Grant, Lease, Local, Store, Ticket } from "./store.js"

/** A shared store a local one can stand in for. */
export interface SharedStore extends Store {
  /** Slots this process holds in the shared store for `userId` (until their holders release them). */
  readonly held: (userId: UserId) => number
  /** Fails every request of this process waiting in the shared store (it cannot be reached). */
  readonly abandonWaiters: () => void
}

/** The lease of a slot taken from the local store while the shared one was unreachable: never lost. */
class LocalLease implements Lease {
  watch() {}
  isLost() {
    return false
  }
}

/**
 * A shared store that falls back to a local one while it is unavailable: acquisitions then use
 * this process's own limits, counting the slots it still holds in the shared store too, and
 * every slot or waiter goes back to the store it came from. Once the local store is in use,
 * acquisitions stay with it until it holds nothing and nobody waits in it, so that this
 * process never runs more than its limits allow, in either store; requests of this process
 * waiting in the shared store are failed when the fallback begins (they would be admitted
 * there without counting the local slots). Reads fall back to the local view too.
 */
export const withFallback = (shared: SharedStore, local: MemoryStore): Store => {
  const localTickets = new WeakSet<Ticket>()
  const localGrant = (grant: Grant): Grant => ({ ...grant, lease: new LocalLease() })
  /** Local slots taken for `tryAcquire`, per user: only those does a `release` without a lease give back. */
  const localRaw = new Map<UserId, number>()
  const inUse = () => local.local.inFlight > 0 || local.local.waiting > 0
  const orLocal = <A>(read: Effect.Effect<A, StoreUnavailable>, fallback: Effect.Effect<A, StoreUnavailable>) =>
    Effect.catchTag(read, "StoreUnavailable", () => fallback)
  const acquireLocally: Store["acquire"] = (userId, bypass, wait, raw) =>
    Effect.suspend(() => {
      if (!inUse()) shared.abandonWaiters()
      // the local limits follow the shared ones (another process may have resized them)
      const limits = shared.limits()
      const { maxUserQueue, maxTotal } = local.limits()
      const follow =
        maxUserQueue === limits.maxUserQueue && maxTotal === limits.maxTotal ? Effect.void : local.resize(limits)
      return Effect.map(Effect.zipRight(follow, local.acquire(userId, bypass, wait, raw)), (outcome) => {
        if (outcome._tag === "Acquired") {
          if (raw) localRaw.set(userId, (localRaw.get(userId) ?? 0) + 1)
          return { _tag: "Acquired" as const, grant: localGrant(outcome.grant) }
        }
        if (outcome._tag === "Waiting") localTickets.add(outcome.ticket)
        return outcome
      })
    })
  const releaseLocalRaw = (userId: UserId) =>
    Effect.suspend(() => {
      const held = localRaw.get(userId)
      if (held === undefined) return Effect.succeed(undefined)
      if (held === 1) localRaw.delete(userId)
      else localRaw.set(userId, held - 1)
      return local.release(userId, undefined)
    })
  const sum = (key: Exclude<keyof Local, "refused">) => shared.local[key] + local.local[key]
  return {
    acquire: (userId, bypass, wait, raw) =>
      inUse()
        ? acquireLocally(userId, bypass, wait, raw)
        : orLocal(
            Effect.flatMap(shared.acquire(userId, bypass, wait, raw), (outcome) =>
              // the fallback began while this acquisition was on its way: what it got in the shared
              // store is given back, as it did not count the local slots
              !inUse()
                ? Effect.succeed(outcome)
                : outcome._tag === "Acquired"
                  ? Effect.zipRight(
                      shared.release(userId, outcome.grant.lease),
                      acquireLocally(userId, bypass, wait, raw)
                    )
                  : outcome._tag === "Waiting"
                    ? Effect.zipRight(shared.leave(outcome.ticket), acquireLocally(userId, bypass, wait, raw))
                    : Effect.succeed(outcome)
            ),
            acquireLocally(userId, bypass, wait, raw)
          ),
    awaitTurn: (ticket) =>
      localTickets.has(ticket) ? Effect.map(local.awaitTurn(ticket), localGrant) : shared.awaitTurn(ticket),
    leave: (ticket) =>
      localTickets.has(ticket)
        ? local.leave(ticket)
        : // a slot the shared store had already granted it may let a local waiter in
          Effect.zipRight(shared.leave(ticket), local.recheck(ticket.userId)),
    release: (userId, lease) => {
      if (lease instanceof LocalLease) return local.release(userId, undefined)
      return Effect.flatMap(shared.release(userId, lease), (released) =>
        // a slot given back in the shared store may let a local waiter in
        Effect.zipLeft(
          released === undefined && lease === undefined ? releaseLocalRaw(userId) : Effect.succeed(released),
          local.recheck(userId)
        )
      )
    },
    // the local view, under the shared limits (the local store follows them only as it acquires)
    standing: (userId) =>
      orLocal(
        shared.standing(userId),
        Effect.map(local.standing(userId), (standing) => ({ ...standing, limits: shared.limits() }))
      ),
    users: orLocal(shared.users, local.users),
    snapshot: orLocal(shared.snapshot, local.snapshot),
    totals: orLocal(shared.totals, local.totals),
    limits: shared.limits,
    resize: (limits) => Effect.zipRight(shared.resize(limits), local.resize(limits)),
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
