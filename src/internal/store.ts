import { Context } from "effect"
import type { Effect, HashMap, Scope } from "effect"
import type { UserId } from "../QueueManager.js"
import type { QueueShutdown, RefusalReason, StoreUnavailable } from "./errors.js"

/** A held slot that can be lost before it is released (a Redis lease). */
export interface Lease {
  /**
   * Calls `onLost` once if the slot stops being this holder's before it is released (at once if
   * it already has): the lease was lost, or the store is closing (`isLost` tells which).
   */
  readonly watch: (onLost: () => void) => void
  /** Whether the lease was lost (expired, or the store lost its state), not merely revoked by a close. */
  readonly isLost: () => boolean
}

/** A slot handed to a caller: the user's count after it, its fencing token, and its lease if it can be lost. */
export interface Grant {
  readonly active: number
  readonly token: number
  readonly lease?: Lease | undefined
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

/** The limits in force. */
export interface Limits {
  readonly maxUserQueue: number
  readonly maxTotal: number
}

/** A user's limits: slots it may hold (0: none), requests it may have waiting (0: no bound). */
export interface Tier {
  readonly limit: number
  readonly maxWaiting: number
}

/**
 * How a store is configured: the limits it starts with, and `tierOf`, the limits of a user under
 * a default `maxUserQueue` (tiers); `tierOf` throws an `IllegalArgumentException` for a tier
 * function returning garbage, before the store changes anything.
 */
export interface StoreConfig extends Limits {
  readonly tierOf: (userId: UserId, maxUserQueue: number) => Tier
}

/** Where a user stands now (across every process for a shared store): what `check` judges and `status` shows. */
export interface Standing {
  /** Slots the user holds. */
  readonly active: number
  /** The user's requests waiting. */
  readonly waiting: number
  /** Slots all users hold. */
  readonly inFlight: number
  /** The limits in force when it was read. */
  readonly limits: Limits
}

/**
 * What a release did: the user's count left; `"sent"` when the store gave the slot back
 * without waiting to learn the count (Redis); `undefined` if the user held none.
 */
export type Released = number | "sent" | undefined

/**
 * A store's `acquire` and `release` as synchronous calls, for a store that never waits on
 * anything to take a step (in memory): what the Promise face's `withSlot` calls without a fiber.
 */
export interface SyncSteps {
  readonly acquire: (userId: UserId, bypass: boolean, wait: boolean) => Outcome
  readonly release: (userId: UserId) => Released
}

/**
 * The state boundary behind the QueueManager policy: counts, limits, waiting lines and
 * fairness. The policy validates, logs, reports and makes every acquisition interrupt-safe; a
 * store keeps its promises per operation. `E`: how a call to the store can fail (`never` in
 * memory, `StoreUnavailable` for Redis).
 */
export interface Store<E = StoreUnavailable> {
  /**
   * Takes a slot unless the user's limit or `maxTotal` forbids it; then refuses, or with `wait`
   * queues. `raw`: a slot for `tryAcquire`, which only a `release` without a lease gives back.
   */
  readonly acquire: (userId: UserId, bypass: boolean, wait: boolean, raw: boolean) => Effect.Effect<Outcome, E>
  /** Suspends until the ticket is admitted (interruptible). */
  readonly awaitTurn: (ticket: Ticket) => Effect.Effect<Grant, QueueShutdown | E>
  /** The ticket's caller stopped waiting without taking its slot: remove it, or give back what it was granted. */
  readonly leave: (ticket: Ticket) => Effect.Effect<void>
  /**
   * Gives back one slot at once (a shared store sends it in the background): the one `lease`
   * names, or without a lease one taken for `tryAcquire`.
   */
  readonly release: (userId: UserId, lease: Lease | undefined) => Effect.Effect<Released>
  readonly standing: (userId: UserId) => Effect.Effect<Standing, E>
  readonly users: Effect.Effect<number, E>
  readonly snapshot: Effect.Effect<HashMap.HashMap<UserId, number>, E>
  readonly totals: Effect.Effect<Totals, E>
  /** The limits in force (for a shared store, as its last answer told). */
  readonly limits: () => Limits
  /** Sets the limits, recomputing the limits of waiting users, then admits who fits. */
  readonly resize: (limits: Limits) => Effect.Effect<void, E>
  /** Refuses new acquisitions of this process and fails its waiters with `QueueShutdown`. */
  readonly shutdown: Effect.Effect<void>
  readonly isShutdown: () => boolean
  /** Completes once this process holds no slot and has no acquisition on its way. */
  readonly awaitIdle: Effect.Effect<void>
  readonly local: Local
  /** The same `acquire` and `release` (without `raw` or a lease), synchronous, when the store can take them so. */
  readonly syncSteps?: SyncSteps | undefined
}

/**
 * Where a manager keeps its state: a service that makes a store for a manager's configuration
 * (in memory, or in Redis). The policy takes whichever is provided and never asks which.
 */
export class QueueStore extends Context.Tag("effect-queue-manager/QueueStore")<
  QueueStore,
  { readonly make: (config: StoreConfig) => Effect.Effect<Store, StoreUnavailable, Scope.Scope> }
>() {}
