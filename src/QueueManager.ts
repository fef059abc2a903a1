/**
 * Per-user concurrency limits: each user may hold at most `maxUserQueue` slots at once;
 * one more is refused at once with {@link QueueFull}. A slot is a Scope-managed resource,
 * released exactly once whatever happens to the fiber holding it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { QueueManager } from "effect-queue-manager"
 *
 * const download = (chatId: number, url: string) =>
 *   Effect.gen(function* () {
 *     const queue = yield* QueueManager.QueueManager
 *     return yield* queue.withSlot(chatId)(fetchVideo(url))
 *   })
 *
 * Effect.runPromise(download(42, url).pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 3 }))))
 * ```
 * @since 0.1.0
 */
import { Config, Context, Effect, Layer } from "effect"
import type { ConfigError, HashMap, Option, Scope } from "effect"
import { limitFromEnv } from "./internal/config.js"
import type { LeaseLost, QueueFull, QueueShutdown, StoreUnavailable } from "./internal/errors.js"
import * as promiseFace from "./internal/promiseFace.js"
import * as internal from "./internal/queueManager.js"
import type { QueueRuntime } from "./internal/runner.js"
import * as Store from "./internal/store.js"

export { LeaseLost, QueueFull, QueueShutdown, RefusalReason, StoreUnavailable } from "./internal/errors.js"

/**
 * Who a slot belongs to: a Telegram chat id (negative for groups), a tenant name, an IP.
 * A number must be a safe integer and a string non-empty and well-formed Unicode (no lone
 * surrogate); any other value makes the operation die with an `IllegalArgumentException`
 * naming it, and changes nothing.
 *
 * @since 0.1.0
 */
export type UserId = number | string

/**
 * Why an acquisition can fail: refused (`QueueFull`), shut down (`QueueShutdown`), or the
 * store could not be reached (`StoreUnavailable`, Redis store only).
 *
 * @since 0.1.0
 */
export type SlotError = QueueFull | QueueShutdown | StoreUnavailable

/**
 * Both limits of a tier: `running`, the slots the user may hold at once (default: `maxUserQueue`),
 * and `waiting`, the requests it may have waiting (default: `maxWaitingPerUser`). Each a whole
 * number >= 0; 0 means no limit.
 *
 * @since 0.3.0
 */
export interface Tier {
  readonly running?: number | undefined
  readonly waiting?: number | undefined
}

/**
 * A per-user limit function (tiers), given the current default `maxUserQueue`: a number is the
 * user's running limit (a whole number >= 0, 0 = no limit); a {@link Tier} sets its running
 * limit, its waiting bound, or both. It is called inside the store's step, so it must not take
 * or give back a slot of the manager (in memory, such a call fails with an
 * `IllegalArgumentException`).
 *
 * @example
 * ```ts
 * // Telegram groups (negative ids) get 10, private chats the default
 * const userLimit: QueueManager.UserLimit = (userId, maxUserQueue) =>
 *   typeof userId === "number" && userId < 0 ? 10 : maxUserQueue
 *
 * // one running per chat; 3 queued + running in a private chat, 10 in a group
 * const perChat: QueueManager.UserLimit = (chatId) =>
 *   typeof chatId === "number" && chatId < 0 ? { running: 1, waiting: 9 } : { running: 1, waiting: 2 }
 * ```
 * @since 0.1.0
 */
export type UserLimit = (userId: UserId, maxUserQueue: number) => number | Tier

/**
 * A slot held: whose it is, and its fencing token. Tokens only grow, across every slot of the
 * manager (of the prefix, on Redis): a resource the work writes to can remember the highest
 * token it has seen for a user and refuse a write carrying a lower one, so that a holder that
 * lost its slot without knowing (a process paused past its lease) cannot overwrite the work of
 * the holder after it.
 *
 * @since 0.2.0
 */
export interface Slot {
  readonly userId: UserId
  readonly token: number
}

/**
 * How a manager is built.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Slots one user may hold at once (the default of `userLimit`); `0` means no per-user limit. A whole number >= 0. */
  readonly maxUserQueue: number
  /** Slots all users together may hold at once, bypass slots included; `0` or absent means none. */
  readonly maxTotal?: number | undefined
  /** Requests one user may have waiting (`onFull: "wait"`); past it a request is refused. Default 100; `0` means no bound. */
  readonly maxWaitingPerUser?: number | undefined
  /** Per-user limits (tiers); by default every user gets `maxUserQueue`. */
  readonly userLimit?: UserLimit | undefined
}

/**
 * Options of `tryAcquire`.
 *
 * @since 0.1.0
 */
export interface AcquireOptions {
  /** Skip the per-user check (the slot is still counted, against later requests and `maxTotal`). */
  readonly bypassUserLimit?: boolean | undefined
}

/**
 * Options of `slot` and `withSlot`.
 *
 * @since 0.1.0
 */
export interface SlotOptions extends AcquireOptions {
  /**
   * What to do when no slot is free: `"reject"` (the default) fails at once with `QueueFull`;
   * `"wait"` waits, holding nothing, first-in first-out per user, until a slot is handed to it
   * (fails with `QueueFull` reason `"waiting"` if the user already has `maxWaitingPerUser`
   * requests waiting). Bound the wait with `Effect.timeout`; an interrupted waiter leaves no trace.
   */
  readonly onFull?: "reject" | "wait" | undefined
}

/**
 * The limits in force, for `resize`.
 *
 * @since 0.1.0
 */
export interface Limits {
  /** The default per-user limit (0 = none). */
  readonly maxUserQueue: number
  /** The global limit (0 = none). */
  readonly maxTotal: number
}

/**
 * The totals `stats` returns.
 *
 * @since 0.1.0
 */
export interface Stats {
  /** Slots held now, across all users. */
  readonly inFlight: number
  /** Users holding at least one slot. */
  readonly activeUsers: number
  /** Requests waiting now. */
  readonly waiting: number
  /** Users with at least one request waiting. */
  readonly waitingUsers: number
  /** Slots granted since the manager was built. */
  readonly acquired: number
  /** Requests refused since the manager was built, by reason. */
  readonly refused: {
    readonly user: number
    readonly global: number
    readonly waiting: number
    readonly shutdown: number
  }
  readonly maxUserQueue: number
  readonly maxTotal: number
  readonly maxWaitingPerUser: number
  /** Whether `shutdown` (or `drain`) was called. */
  readonly shutdown: boolean
}

/**
 * Where one user stands, as `status` returns it (across every process on the Redis store).
 *
 * @since 0.3.0
 */
export interface UserStatus {
  /** Slots the user holds now. */
  readonly active: number
  /** The user's requests waiting now. */
  readonly waiting: number
  /** The user's running limit (its tier, or `maxUserQueue`; 0 = none). */
  readonly limit: number
  /** How many requests the user may have waiting (its tier, or `maxWaitingPerUser`; 0 = no bound). */
  readonly maxWaiting: number
}

/**
 * The QueueManager service.
 *
 * @since 0.1.0
 */
export interface Service {
  /** The default per-user limit now (`0` = none); follows `resize`. */
  readonly maxUserQueue: number
  /** The per-user limit that applies to `userId` (its tier, or `maxUserQueue`). */
  readonly limitFor: (userId: UserId) => Effect.Effect<number>
  /** Slots `userId` holds now; `0` for a user never seen (nothing is created). */
  readonly activeCount: (userId: UserId) => Effect.Effect<number, StoreUnavailable>
  /**
   * Where `userId` stands: its slots held, its requests waiting, and its two limits. `active +
   * waiting` counts every request of the user in the manager, running or queued.
   */
  readonly status: (userId: UserId) => Effect.Effect<UserStatus, StoreUnavailable>
  /**
   * The refusal a request of `userId` with these options would get now (`QueueFull` with its
   * reason, or `QueueShutdown`), or none; takes nothing and changes nothing. Advisory: another
   * request can change the answer a moment later, so the acquisition itself may still be
   * refused (word a reply with `check`, then take the slot and handle its refusal too).
   */
  readonly check: (
    userId: UserId,
    options?: SlotOptions
  ) => Effect.Effect<Option.Option<QueueFull | QueueShutdown>, StoreUnavailable>
  /** The number of users holding at least one slot. */
  readonly activeUsers: Effect.Effect<number, StoreUnavailable>
  /**
   * Takes a slot if the limits allow it now: `true`, and the caller must `release` it later;
   * `false`, and nothing changed. Never waits. Prefer `slot` or `withSlot`.
   */
  readonly tryAcquire: (
    userId: UserId,
    options?: AcquireOptions
  ) => Effect.Effect<boolean, QueueShutdown | StoreUnavailable>
  /** Gives back one slot of `userId`; a user holding none is left alone (counts never go negative). */
  readonly release: (userId: UserId) => Effect.Effect<void>
  /**
   * A slot held until the surrounding scope closes, then released exactly once whatever the
   * exit. Refused (`QueueFull`, holding nothing) or waits, as `onFull` says. With a store whose
   * slots are leases (Redis), a lost lease interrupts the fiber that took the slot.
   */
  readonly slot: (userId: UserId, options?: SlotOptions) => Effect.Effect<Slot, SlotError, Scope.Scope>
  /**
   * Runs `self` inside a slot of `userId`, released when `self` ends however it ends; when
   * refused, fails without running `self`. The fast path. `self` may also be a function of the
   * {@link Slot}, for its fencing token. With a store whose slots are leases (Redis), a lost
   * lease interrupts `self` and fails with `LeaseLost`.
   */
  readonly withSlot: (
    userId: UserId,
    options?: SlotOptions
  ) => <A, E, R>(
    self: Effect.Effect<A, E, R> | ((slot: Slot) => Effect.Effect<A, E, R>)
  ) => Effect.Effect<A, E | SlotError | LeaseLost, R>
  /** Every user holding a slot, with its count. */
  readonly snapshot: Effect.Effect<HashMap.HashMap<UserId, number>, StoreUnavailable>
  /** The totals: slots in flight, users, waiters, acquisitions, refusals by reason, limits. */
  readonly stats: Effect.Effect<Stats, StoreUnavailable>
  /**
   * Changes the default per-user limit and/or `maxTotal` now. Lowering never revokes held
   * slots; raising admits waiters at once. Fails with a `ConfigError` naming an invalid value.
   */
  readonly resize: (limits: Partial<Limits>) => Effect.Effect<void, ConfigError.ConfigError | StoreUnavailable>
  /** Refuses every new acquisition and every waiting request with `QueueShutdown`; held slots finish normally. */
  readonly shutdown: Effect.Effect<void>
  /** Completes when no slot is held. */
  readonly awaitIdle: Effect.Effect<void>
  /** `shutdown`, then `awaitIdle`: for a graceful stop. */
  readonly drain: Effect.Effect<void>
}

/**
 * The manager for code that is not Effect (an express handler, a plain grammY bot): every
 * operation returns a `Promise`, which rejects with the library's own errors as they are
 * (`instanceof QueueFull` holds), or with the work's own rejection.
 *
 * @since 0.3.0
 */
export interface PromiseQueue {
  /**
   * Runs `work` inside a slot of `userId` and resolves with its result; refused, rejects with
   * `QueueFull` / `QueueShutdown` (or `StoreUnavailable`) without running it. A promise cannot
   * be stopped: on the Redis store a slot lost while `work` runs stays counted until it
   * settles, then the call rejects with `LeaseLost`. A runtime disposed while `work` runs (the
   * Redis store's closing stops its holders) resolves with the work's result once it settles;
   * one disposed before the work started rejects with `QueueShutdown`.
   */
  readonly withSlot: <A>(userId: UserId, work: (slot: Slot) => A | PromiseLike<A>, options?: SlotOptions) => Promise<A>
  readonly tryAcquire: (userId: UserId, options?: AcquireOptions) => Promise<boolean>
  readonly release: (userId: UserId) => Promise<void>
  /** The refusal a request would get now, or `undefined`; advisory, as `check`. */
  readonly check: (userId: UserId, options?: SlotOptions) => Promise<QueueFull | QueueShutdown | undefined>
  readonly status: (userId: UserId) => Promise<UserStatus>
  readonly stats: () => Promise<Stats>
  /** `shutdown`, then waits until no slot is held. */
  readonly drain: () => Promise<void>
}

/**
 * The service tag. Provide it once (one built layer = one shared instance); provide a fresh
 * layer to start empty, e.g. in each test.
 *
 * @since 0.1.0
 */
export class QueueManager extends Context.Tag("effect-queue-manager/QueueManager")<QueueManager, Service>() {}

/**
 * Builds a manager with empty state. Fails with a `ConfigError` naming the option and the
 * value when an option is invalid (a limit that is not a whole number >= 0, a `userLimit`
 * that is not a function).
 *
 * @since 0.1.0
 */
export const make: (options: Options) => Effect.Effect<Service, ConfigError.ConfigError> = internal.make

/**
 * Where a manager keeps its state: the in-memory store ({@link layerStoreMemory}) or Redis
 * (`RedisStore.layerStore`). A manager built with {@link layerWithStore} uses whichever is
 * provided, and works the same on both.
 *
 * @since 0.2.0
 */
export const QueueStore: typeof Store.QueueStore = Store.QueueStore

/**
 * @since 0.2.0
 */
export type QueueStore = Store.QueueStore

/**
 * The in-memory store: one process's limits, nothing to install.
 *
 * @since 0.2.0
 */
export const layerStoreMemory: Layer.Layer<Store.QueueStore> = Layer.succeed(Store.QueueStore, internal.memoryStore)

/**
 * Builds a manager over the `QueueStore` provided (in `Scope`: a shared store's connections
 * close with it).
 *
 * @since 0.2.0
 */
export const makeWithStore: (
  options: Options
) => Effect.Effect<Service, ConfigError.ConfigError | StoreUnavailable, Store.QueueStore | Scope.Scope> =
  internal.makeWithStore

/**
 * A layer building one manager over the `QueueStore` provided.
 *
 * @example
 * ```ts
 * QueueManager.layerWithStore({ maxUserQueue: 3 }).pipe(Layer.provide(RedisStore.layerStore({ prefix: "downloads" })))
 * ```
 * @since 0.2.0
 */
export const layerWithStore = (
  options: Options
): Layer.Layer<QueueManager, ConfigError.ConfigError | StoreUnavailable, Store.QueueStore> =>
  Layer.scoped(QueueManager, makeWithStore(options))

/**
 * The manager of `runtime` (a `ManagedRuntime` or a `Runtime` providing the `QueueManager`) as
 * Promises, for code that is not Effect. Calls are started in the order they are made, also
 * while a `ManagedRuntime` is still building. Throws an `IllegalArgumentException` when
 * `runtime` is neither.
 *
 * @example
 * ```ts
 * const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: 3 }))
 * const queue = QueueManager.toPromise(runtime)
 * app.get("/download", async (req, res) => {
 *   try {
 *     res.send(await queue.withSlot(req.user.id, () => download(req.query.url)))
 *   } catch (error) {
 *     if (error instanceof QueueManager.QueueFull) res.status(429).send(error.message)
 *     else throw error
 *   }
 * })
 * ```
 * @since 0.3.0
 */
export const toPromise = (runtime: QueueRuntime): PromiseQueue => promiseFace.toPromise(runtime, QueueManager)

/**
 * A layer building one manager, on the in-memory store.
 *
 * @example
 * ```ts
 * const QueueLive = QueueManager.layer({ maxUserQueue: 3 })
 * ```
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<QueueManager, ConfigError.ConfigError> =>
  Layer.effect(QueueManager, make(options))

/**
 * The default configuration, from the environment: `maxUserQueue` from
 * `MAX_USER_QUEUE_SIZE` (default 3), `maxTotal` from `MAX_TOTAL_SLOTS` (default 0 = none),
 * `maxWaitingPerUser` from `MAX_WAITING_PER_USER` (default 100). An unset, empty or blank
 * variable takes the default; anything but a whole number >= 0 is a `ConfigError`.
 *
 * @since 0.1.0
 */
export const defaultConfig: Config.Config.Wrap<Options> = {
  maxUserQueue: limitFromEnv("MAX_USER_QUEUE_SIZE", 3),
  maxTotal: limitFromEnv("MAX_TOTAL_SLOTS", 0),
  maxWaitingPerUser: limitFromEnv("MAX_WAITING_PER_USER", 100)
}

/**
 * A layer reading its options from `Config`, by default {@link defaultConfig}.
 *
 * @example
 * ```ts
 * QueueManager.layerConfig({ maxUserQueue: Config.integer("DOWNLOADS_PER_CHAT") })
 * ```
 * @since 0.1.0
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = defaultConfig
): Layer.Layer<QueueManager, ConfigError.ConfigError> =>
  Layer.effect(QueueManager, Effect.flatMap(Config.unwrap(config), make))
