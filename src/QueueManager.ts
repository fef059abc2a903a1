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
import type { ConfigError, HashMap, Scope } from "effect"
import { limitFromEnv } from "./internal/config.js"
import type { QueueFull } from "./internal/errors.js"
import * as internal from "./internal/queueManager.js"

export { QueueFull, RefusalReason } from "./internal/errors.js"

/**
 * Who a slot belongs to: a Telegram chat id (negative for groups), a tenant name, an IP.
 * A number must be a safe integer and a string non-empty; any other value makes the
 * operation die with an `IllegalArgumentException` naming it, and changes nothing.
 *
 * @since 0.1.0
 */
export type UserId = number | string

/**
 * How a manager is built.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Slots one user may hold at once; `0` means no per-user limit. A whole number >= 0. */
  readonly maxUserQueue: number
}

/**
 * Per-call options of an acquisition.
 *
 * @since 0.1.0
 */
export interface SlotOptions {
  /** Skip the per-user check (the slot is still counted, and counts against later requests). */
  readonly bypassUserLimit?: boolean | undefined
}

/**
 * The QueueManager service.
 *
 * @since 0.1.0
 */
export interface Service {
  /** The per-user limit; `0` means none. */
  readonly maxUserQueue: number
  /** Slots `userId` holds now; `0` for a user never seen (nothing is created). */
  readonly activeCount: (userId: UserId) => Effect.Effect<number>
  /** The number of users holding at least one slot. */
  readonly activeUsers: Effect.Effect<number>
  /**
   * Takes a slot if the user's limit allows it (or `bypassUserLimit` is set): `true`, and the
   * caller must `release` it later; `false`, and nothing changed. Prefer `slot` or `withSlot`.
   */
  readonly tryAcquire: (userId: UserId, options?: SlotOptions) => Effect.Effect<boolean>
  /** Gives back one slot of `userId`; a user holding none is left alone (counts never go negative). */
  readonly release: (userId: UserId) => Effect.Effect<void>
  /**
   * A slot held until the surrounding scope closes, then released exactly once whatever the
   * exit. Fails with `QueueFull`, holding nothing, when the user is at its limit.
   */
  readonly slot: (userId: UserId, options?: SlotOptions) => Effect.Effect<void, QueueFull, Scope.Scope>
  /**
   * Runs `self` inside a slot of `userId`, released when `self` ends however it ends; fails
   * with `QueueFull` without running `self` when the user is at its limit. The fast path.
   */
  readonly withSlot: (
    userId: UserId,
    options?: SlotOptions
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | QueueFull, R>
  /** Every user holding a slot, with its count. */
  readonly snapshot: Effect.Effect<HashMap.HashMap<UserId, number>>
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
 * value when `maxUserQueue` is not a whole number >= 0.
 *
 * @since 0.1.0
 */
export const make: (options: Options) => Effect.Effect<Service, ConfigError.ConfigError> = internal.make

/**
 * A layer building one manager.
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
 * The default configuration: `maxUserQueue` from `MAX_USER_QUEUE_SIZE`, 3 when the variable
 * is unset, empty or blank; anything but a whole number >= 0 is a `ConfigError`.
 *
 * @since 0.1.0
 */
export const defaultConfig: Config.Config.Wrap<Options> = { maxUserQueue: limitFromEnv("MAX_USER_QUEUE_SIZE", 3) }

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
