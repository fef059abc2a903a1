import { Effect, HashMap, Option, Ref } from "effect"
import type { UserId } from "../QueueManager.js"

/** The outcome of one atomic acquisition attempt: whether a slot was taken and the user's count after it. */
export interface Acquisition {
  readonly acquired: boolean
  readonly active: number
}

/**
 * The state boundary behind the QueueManager policy: per-user counts of held slots,
 * each operation one atomic step. An entry exists only while its count is above zero.
 */
export interface Store {
  /** Takes a slot unless `limit > 0`, `bypass` is false and the user already holds `limit`. */
  readonly acquire: (userId: UserId, limit: number, bypass: boolean) => Effect.Effect<Acquisition>
  /** Gives one slot back; the count after it, or `undefined` when the user held none. */
  readonly release: (userId: UserId) => Effect.Effect<number | undefined>
  /** The number of slots `userId` holds. */
  readonly count: (userId: UserId) => Effect.Effect<number>
  /** The number of users holding at least one slot. */
  readonly users: Effect.Effect<number>
  /** Every user holding a slot, with its count. */
  readonly snapshot: Effect.Effect<HashMap.HashMap<UserId, number>>
}

/** The in-memory store: a `Ref` of an immutable `HashMap`, updated with `Ref.modify`. */
export const makeMemoryStore: Effect.Effect<Store> = Effect.map(
  Ref.make(HashMap.empty<UserId, number>()),
  (ref): Store => ({
    acquire: (userId, limit, bypass) =>
      Ref.modify(ref, (counts): readonly [Acquisition, HashMap.HashMap<UserId, number>] => {
        const active = Option.getOrElse(HashMap.get(counts, userId), () => 0)
        return !bypass && limit > 0 && active >= limit
          ? [{ acquired: false, active }, counts]
          : [{ acquired: true, active: active + 1 }, HashMap.set(counts, userId, active + 1)]
      }),
    release: (userId) =>
      Ref.modify(ref, (counts) => {
        const active = HashMap.get(counts, userId)
        if (Option.isNone(active)) return [undefined, counts]
        const left = active.value - 1
        return [left, left > 0 ? HashMap.set(counts, userId, left) : HashMap.remove(counts, userId)]
      }),
    count: (userId) => Effect.map(Ref.get(ref), (counts) => Option.getOrElse(HashMap.get(counts, userId), () => 0)),
    users: Effect.map(Ref.get(ref), HashMap.size),
    snapshot: Ref.get(ref)
  })
)
