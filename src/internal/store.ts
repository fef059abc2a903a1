import type { Effect, HashMap } from "effect"
import type { UserId } from "../QueueManager.js"
import type { QueueShutdown, RefusalReason, StoreUnavailable } from "./errors.js"

/** A held slot, as a store knows it; the in-memory store's slots have none. */
export interface Lease {
  /**
   * For a lease that can be lost (Redis): calls `onLost` if it is lost before it is released
   * (at once if it already is). `undefined` for a lease that cannot be lost.
   */
  readonly watch: ((onLost: () => void) => void) | undefined
}

/** A slot handed to a caller: the user's count after it, and its lease if it has one. */
export interface Grant {
  readonly active: number
  readonly lease: Lease | undefined
}

/** A request waiting in a store; only the store that issued it knows what it holds. */
export interface Ticket {
  readonly userId: UserId
}

/** What one acquisition attempt did. */
export type Outcome =
  | { readonly _tag: "Acquired"; readonly grant: Grant }
  | { readonly _tag: "Refused"; readonly reason: RefusalReason; readonly active: number; readonly limit: number }
  | { readonly _tag: "Waiting"; readonly ticket: Ticket }
  | { readonly _tag: "Shutdown" }

/** Refusal counts by reason. */
export type Refusals = Readonly<Record<RefusalReason | "shutdown", number>>

/** What a store reports of itself (across all processes for a shared store). */
export interface Totals {
  readonly inFlight: number
  readonly activeUsers: number
  readonly waiting: number
  readonly waitingUsers: number
  readonly acquired: number
  readonly refused: Refusals
}

/** What this process holds and did, read synchronously for the metrics. */
export interface Local {
  readonly inFlight: number
  readonly users: number
  readonly waiting: number
  readonly acquired: number
  readonly refused: Refusals
}

/**
 * What a release did: the user's count left; `"sent"` when the store gave the slot back
 * without waiting to learn the count (Redis); `undefined` if the user held none.
 */
export type Released = number | "sent" | undefined

/**
 * The state boundary behind the QueueManager policy: counts, the global cap, waiting
 * lines and fairness. The policy validates, computes each user's limit, logs, reports and
 * makes every acquisition interrupt-safe; a store only keeps its promises per operation.
 */
export interface Store {
  /** Takes a slot unless `limit` (0 = none) or `maxTotal` forbids it; then refuses, or with `wait` queues. */
  readonly acquire: (
    userId: UserId,
    limit: number,
    bypass: boolean,
    wait: boolean
  ) => Effect.Effect<Outcome, StoreUnavailable>
  /** Suspends until the ticket is admitted (interruptible). */
  readonly awaitTurn: (ticket: Ticket) => Effect.Effect<Grant, QueueShutdown | StoreUnavailable>
  /** The ticket's caller stopped waiting without taking its slot: remove it, or give back what it was granted. */
  readonly leave: (ticket: Ticket) => Effect.Effect<void>
  /** Gives back one slot (the one `lease` names, if any), at once: a shared store sends it in the background. */
  readonly release: (userId: UserId, lease: Lease | undefined) => Released
  readonly count: (userId: UserId) => Effect.Effect<number, StoreUnavailable>
  readonly users: Effect.Effect<number, StoreUnavailable>
  readonly snapshot: Effect.Effect<HashMap.HashMap<UserId, number>, StoreUnavailable>
  readonly totals: Effect.Effect<Totals, StoreUnavailable>
  /** The global cap in force (0 = none). */
  readonly maxTotal: () => number
  /** Sets `maxTotal` and the limits of waiting users (`limitOf` may throw: then nothing changes), then admits who fits. */
  readonly resize: (maxTotal: number, limitOf: (userId: UserId) => number) => Effect.Effect<void, StoreUnavailable>
  /** Refuses new acquisitions of this process and fails its waiters with `QueueShutdown`. */
  readonly shutdown: Effect.Effect<void>
  readonly isShutdown: () => boolean
  /** Completes once this process holds no slot. */
  readonly awaitIdle: Effect.Effect<void>
  readonly local: Local
  /** The same `acquire`, for a store that answers synchronously (the hit path skips a step). */
  readonly now?: {
    readonly acquire: (userId: UserId, limit: number, bypass: boolean, wait: boolean) => Outcome
  }
}
