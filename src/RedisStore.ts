/**
 * A QueueManager whose state lives in Redis, so several processes share one set of
 * per-user limits, one global cap and one set of waiting lines. Provide its layer instead
 * of `QueueManager.layer`; programs keep working unchanged.
 *
 * @example
 * ```ts
 * import { QueueManager } from "effect-queue-manager"
 * import * as RedisStore from "effect-queue-manager/RedisStore"
 *
 * const QueueLive = RedisStore.layer({ maxUserQueue: 3, redis: "redis://127.0.0.1:6379", prefix: "downloads" })
 * ```
 * @since 0.1.0
 */
import { Config, ConfigError, type Context, Duration, Effect, Either, Layer } from "effect"
import type { Scope } from "effect"
import type { Cluster, Redis, RedisOptions } from "ioredis"
import * as QueueManager from "./QueueManager.js"
import { limitFromEnv } from "./internal/config.js"
import type { StoreUnavailable } from "./internal/errors.js"
import { withFallback } from "./internal/fallbackStore.js"
import { makeMemoryStore } from "./internal/memoryStore.js"
import { isClient, optionsProblem } from "./internal/redis/connection.js"
import { makeRedisStore } from "./internal/redis/redisStore.js"

/**
 * The manager's options plus where Redis is and how leases behave.
 *
 * @since 0.1.0
 */
export interface Options extends QueueManager.Options {
  /**
   * Where Redis is: a `redis://` URL, ioredis options, or an ioredis client of yours, a `Redis`
   * or a `Cluster` (Redis Cluster, cluster-mode managed Redis), which the store uses for its
   * calls and leaves open when it closes (it opens one connection of its own, a duplicate, for
   * the wake-ups of waiting requests). Default `redis://127.0.0.1:6379`.
   */
  readonly redis?: string | RedisOptions | Redis | Cluster | undefined
  /** The key prefix; managers sharing it share their limits. Default `"queue-manager"`. */
  readonly prefix?: string | undefined
  /** How long a slot survives without renewal (a crashed process's slots come back after it). Default 30 seconds. */
  readonly leaseTime?: Duration.DurationInput | undefined
  /** How long one Redis call may take before it fails with `StoreUnavailable`. Default 1 second. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * What an acquisition does while Redis cannot be reached: `"fail"` (default) fails with
   * `StoreUnavailable`; `"local"` falls back to this process's own in-memory limits (the same
   * options, counted per process) until Redis answers again.
   */
  readonly onUnavailable?: "fail" | "local" | undefined
}

/** What is wrong with a key prefix, if anything: it becomes a hash tag, `{prefix}`. */
const prefixProblem = (prefix: unknown): string | undefined =>
  typeof prefix === "string" && prefix.length > 0 && !/[{}]/.test(prefix)
    ? undefined
    : `must be a non-empty string without braces, got ${JSON.stringify(prefix)}`

/**
 * The query parameters a URL may have. ioredis reads any other as an option, over the store's
 * own settings (`enableOfflineQueue`, `retryStrategy`…) or changing what the store relies on
 * (`keyPrefix` would split one prefix into two states, `stringNumbers` garbles its answers):
 * such options go in an options object, where the store's settings come last.
 */
const queryParameters = new Set(["db", "family"])

/**
 * What is wrong with a Redis URL, if anything: it starts with `redis://` or `rediss://` as
 * written (ioredis turns TLS on only for a lower-case `rediss://` at the very start); a
 * database, when named (in the path, or once as `db` in the query), is a whole number; the
 * query has only `db` and `family`.
 */
const urlProblem = (url: string): string | undefined => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  if (parsed === undefined || !/^rediss?:\/\//.test(url)) {
    return `must be a redis:// or rediss:// URL (in lower case, with nothing before it), got ${JSON.stringify(url)}`
  }
  const named = parsed.searchParams.getAll("db")
  const path = parsed.pathname.slice(1)
  if ((path !== "" && !/^\d+$/.test(path)) || named.length > 1 || named.some((db) => !/^\d+$/.test(db))) {
    return `must name its database once, as a whole number (redis://host:port/2), got ${JSON.stringify(url)}`
  }
  const other = Array.from(new Set(parsed.searchParams.keys())).filter((name) => !queryParameters.has(name))
  return other.length === 0
    ? undefined
    : `must not set ${other.join(", ")} in its query (only db and family; pass other ioredis options as an ` +
        `options object, and name the keys with the prefix option), got ${JSON.stringify(url)}`
}

/** What is wrong with a `redis` that is not a URL, if anything: an ioredis client, or plain ioredis options, without `keyPrefix` or `stringNumbers`. */
const targetProblem = (redis: unknown): string | undefined => {
  if (
    !isClient(redis) &&
    !(typeof redis === "object" && redis !== null && Object.getPrototypeOf(redis) === Object.prototype)
  ) {
    return `must be a redis:// URL, ioredis options, or an ioredis Redis or Cluster, got ${
      typeof redis === "object" && redis !== null ? `a ${redis.constructor?.name ?? "object"}` : String(redis)
    }`
  }
  return optionsProblem(redis)
}

/** A string option or variable, validated by `problem`; the error names it. */
const checked = (name: string, value: unknown, problem: (value: never) => string | undefined) => {
  const wrong = problem(value as never)
  return wrong === undefined ? Effect.succeed(value) : Effect.fail(ConfigError.InvalidData([name], `${name} ${wrong}`))
}

/** A variable of the environment, `fallback` when unset, validated by `problem`; the error names it. */
const stringFromEnv = (name: string, fallback: string, problem: (text: string) => string | undefined) =>
  Config.string(name).pipe(
    Config.withDefault(fallback),
    Config.mapOrFail((text) => {
      const wrong = problem(text)
      return wrong === undefined ? Either.right(text) : Either.left(ConfigError.InvalidData([name], `${name} ${wrong}`))
    })
  )

const positiveMillis = (name: string, value: Duration.DurationInput, minimum: number) =>
  Effect.suspend(() => {
    const duration = Duration.decode(value)
    const millis = Duration.toMillis(duration)
    return Number.isFinite(millis) && millis >= minimum
      ? Effect.succeed(millis)
      : Effect.fail(
          ConfigError.InvalidData([name], `${name} must be at least ${minimum} ms, got ${Duration.format(duration)}`)
        )
  }).pipe(
    Effect.catchAllDefect(() =>
      Effect.fail(ConfigError.InvalidData([name], `${name} must be a duration, got ${JSON.stringify(value)}`))
    )
  )

/** What a Redis store needs besides the manager's options. */
export type StoreOptions = Omit<Options, keyof QueueManager.Options>

/**
 * The Redis store as a `QueueStore`, its options checked now: a store per manager built on it,
 * connected when the manager is built (and closed with it). Fails with a `ConfigError` naming
 * an invalid option and its value.
 *
 * @since 0.2.0
 */
export const store = (
  options: StoreOptions
): Effect.Effect<Context.Tag.Service<QueueManager.QueueStore>, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const prefix = (yield* checked("prefix", options.prefix ?? "queue-manager", prefixProblem)) as string
    const leaseMillis = yield* positiveMillis("leaseTime", options.leaseTime ?? "30 seconds", 100)
    const timeoutMillis = yield* positiveMillis("timeout", options.timeout ?? "1 second", 1)
    // a renewal round runs every third of a lease and may take a timeout to fail: with leases this
    // short, the first round that fails leaves too little time for the next, and every slot is lost
    if (leaseMillis <= 6 * timeoutMillis) {
      yield* Effect.logWarning(
        `leaseTime (${leaseMillis} ms) is at most 6 × timeout (${timeoutMillis} ms): one renewal round that ` +
          `fails or times out loses every slot of this process; give leaseTime more than 6 × timeout`
      )
    }
    const onUnavailable = options.onUnavailable ?? "fail"
    if (onUnavailable !== "fail" && onUnavailable !== "local") {
      return yield* Effect.fail(
        ConfigError.InvalidData(
          ["onUnavailable"],
          `onUnavailable must be "fail" or "local", got ${JSON.stringify(onUnavailable)}`
        )
      )
    }
    const redis = options.redis ?? "redis://127.0.0.1:6379"
    if (typeof redis === "string") yield* checked("redis", redis, urlProblem)
    else yield* checked("redis", redis, targetProblem)
    return QueueManager.QueueStore.of({
      make: (config) =>
        Effect.map(makeRedisStore({ redis, prefix, leaseMillis, timeoutMillis }, config), (shared) =>
          onUnavailable === "local"
            ? withFallback(shared, makeMemoryStore(config, { count: shared.held, total: () => shared.local.inFlight }))
            : shared
        )
    })
  })

/**
 * The Redis store as a layer, for `QueueManager.layerWithStore`.
 *
 * @example
 * ```ts
 * QueueManager.layerWithStore({ maxUserQueue: 3 }).pipe(Layer.provide(RedisStore.layerStore({ prefix: "downloads" })))
 * ```
 * @since 0.2.0
 */
export const layerStore = (options: StoreOptions): Layer.Layer<QueueManager.QueueStore, ConfigError.ConfigError> =>
  Layer.effect(QueueManager.QueueStore, store(options))

/**
 * Builds a Redis-backed manager in `Scope` (its connections close with it). Fails with a
 * `ConfigError` on invalid options and with `StoreUnavailable` when Redis cannot be reached
 * or is not Redis.
 *
 * @since 0.1.0
 */
export const make = (
  options: Options
): Effect.Effect<QueueManager.Service, ConfigError.ConfigError | StoreUnavailable, Scope.Scope> =>
  Effect.flatMap(store(options), (redis) =>
    QueueManager.makeWithStore(options).pipe(Effect.provideService(QueueManager.QueueStore, redis))
  )

/**
 * A layer building one Redis-backed manager: use it where `QueueManager.layer` was.
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options
): Layer.Layer<QueueManager.QueueManager, ConfigError.ConfigError | StoreUnavailable> =>
  Layer.scoped(QueueManager.QueueManager, make(options))

/**
 * The default configuration: the manager's (`QueueManager.defaultConfig`), and `REDIS_URL`
 * (default `redis://127.0.0.1:6379`), `REDIS_PREFIX` (default `queue-manager`),
 * `REDIS_LEASE_SECONDS` (default 30), `REDIS_TIMEOUT_MS` (default 1000), `REDIS_ON_UNAVAILABLE`
 * (`fail` or `local`, default `fail`).
 *
 * @since 0.1.0
 */
export const defaultConfig: Config.Config<Options> = Config.all({
  options: Config.unwrap(QueueManager.defaultConfig),
  redis: stringFromEnv("REDIS_URL", "redis://127.0.0.1:6379", urlProblem),
  prefix: stringFromEnv("REDIS_PREFIX", "queue-manager", prefixProblem),
  leaseSeconds: limitFromEnv("REDIS_LEASE_SECONDS", 30, 1, "a whole number of seconds >= 1"),
  timeoutMillis: limitFromEnv("REDIS_TIMEOUT_MS", 1000, 1, "a whole number of milliseconds >= 1"),
  onUnavailable: Config.literal("fail", "local")("REDIS_ON_UNAVAILABLE").pipe(Config.withDefault("fail" as const))
}).pipe(
  Config.map(({ leaseSeconds, options, timeoutMillis, ...rest }) => ({
    ...options,
    ...rest,
    leaseTime: Duration.seconds(leaseSeconds),
    timeout: Duration.millis(timeoutMillis)
  }))
)

/**
 * A layer reading its options from `Config`, by default {@link defaultConfig}.
 *
 * @since 0.1.0
 */
export const layerConfig = (
  config: Config.Config<Options> = defaultConfig
): Layer.Layer<QueueManager.QueueManager, ConfigError.ConfigError | StoreUnavailable> =>
  Layer.scoped(QueueManager.QueueManager, Effect.flatMap(config, make))
