import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Exit, Layer } from "effect"
import { Redis } from "ioredis"
import * as RedisStore from "../src/RedisStore.js"

/** Builds `RedisStore.layerConfig()` from `env`: these fail before any connection is tried. */
const fromEnv = (env: Record<string, string>) =>
  Layer.build(RedisStore.layerConfig()).pipe(
    Effect.scoped,
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.exit,
    Effect.map((exit) => (Exit.isFailure(exit) ? String(exit.cause) : "built"))
  )

describe("RedisStore configuration", () => {
  it.effect.each<[string, string, string]>([
    ["REDIS_LEASE_SECONDS", "0", 'REDIS_LEASE_SECONDS must be a whole number of seconds >= 1, got "0"'],
    ["REDIS_LEASE_SECONDS", "1.5", 'REDIS_LEASE_SECONDS must be a whole number of seconds >= 1, got "1.5"'],
    ["REDIS_TIMEOUT_MS", "0", 'REDIS_TIMEOUT_MS must be a whole number of milliseconds >= 1, got "0"'],
    ["REDIS_PREFIX", "{x}", 'REDIS_PREFIX must be a non-empty string without braces, got "{x}"'],
    ["REDIS_URL", "redis://127.0.0.1:6379/abc", "REDIS_URL must name its database once, as a whole number"],
    [
      "REDIS_URL",
      "127.0.0.1:6379",
      'REDIS_URL must be a redis:// or rediss:// URL (in lower case, with nothing before it), got "127.0.0.1:6379"'
    ],
    ["REDIS_ON_UNAVAILABLE", "maybe", "REDIS_ON_UNAVAILABLE"],
    // ioredis would read these from the query, over the store's own settings
    [
      "REDIS_URL",
      "redis://127.0.0.1:6379?keyPrefix=app:",
      'REDIS_URL must not set keyPrefix in its query (only db and family; pass other ioredis options as an options object, and name the keys with the prefix option), got "redis://127.0.0.1:6379?keyPrefix=app:"'
    ],
    [
      "REDIS_URL",
      "redis://127.0.0.1:6379/1?enableOfflineQueue=1&maxRetriesPerRequest=20&stringNumbers=1",
      "REDIS_URL must not set enableOfflineQueue, maxRetriesPerRequest, stringNumbers in its query"
    ],
    ["REDIS_URL", "redis://127.0.0.1:6379/?db=abc", "REDIS_URL must name its database once, as a whole number"],
    // an empty db would make ioredis send SELECT NaN, outside any promise: the process would crash
    ["REDIS_URL", "redis://127.0.0.1:6379/?db=", "REDIS_URL must name its database once, as a whole number"],
    ["REDIS_URL", "redis://127.0.0.1:6379/?db=1&db=2", "REDIS_URL must name its database once, as a whole number"],
    // ioredis turns TLS on only for "rediss://" as written: this one would go in plaintext
    ["REDIS_URL", "REDISS://secure.example:6380", "REDIS_URL must be a redis:// or rediss:// URL (in lower case"]
  ])("%s=%s fails naming the variable and its text", ([name, value, expected]) =>
    Effect.gen(function* () {
      expect(yield* fromEnv({ [name]: value })).toContain(expected)
    })
  )

  it.effect.each<[string, RedisStore.Options, string]>([
    ["leaseTime", { maxUserQueue: 1, leaseTime: Duration.zero }, "leaseTime must be at least 100 ms, got 0"],
    ["timeout", { maxUserQueue: 1, timeout: "0 millis" }, "timeout must be at least 1 ms, got 0"],
    ["redis", { maxUserQueue: 1, redis: "redis://host/x" }, "redis must name its database once, as a whole number"],
    ["prefix", { maxUserQueue: 1, prefix: "a{b" }, 'prefix must be a non-empty string without braces, got "a{b"'],
    // ioredis would prefix the keys of scripts but not of functions: two processes, two states
    [
      "redis",
      { maxUserQueue: 1, redis: { port: 6379, keyPrefix: "app:" } },
      `redis must not set ioredis' keyPrefix (the store's prefix option names its keys), got keyPrefix "app:"`
    ],
    [
      "redis",
      { maxUserQueue: 1, redis: new Redis({ lazyConnect: true, keyPrefix: "app:" }) },
      `redis must not set ioredis' keyPrefix (the store's prefix option names its keys), got keyPrefix "app:"`
    ],
    // the store's answers would come back as strings
    [
      "redis",
      { maxUserQueue: 1, redis: { port: 6379, stringNumbers: true } },
      "redis must not set ioredis' stringNumbers (the store reads its answers as numbers), got stringNumbers true"
    ],
    [
      "redis",
      { maxUserQueue: 1, redis: new Redis({ lazyConnect: true, stringNumbers: true }) },
      "redis must not set ioredis' stringNumbers (the store reads its answers as numbers), got stringNumbers true"
    ],
    // another client library's client (here, its shape) is not taken for an ioredis one
    [
      "redis",
      {
        maxUserQueue: 1,
        redis: new (class RedisClient {
          duplicate() {}
          sendCommand() {}
        })() as never
      },
      "redis must be a redis:// URL, ioredis options, or an ioredis Redis or Cluster, got a RedisClient"
    ]
  ])("an invalid %s option fails naming it and its value", ([, options, expected]) =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Effect.scoped(RedisStore.make(options)))
      expect(Exit.isFailure(exit) ? String(exit.cause) : "built").toContain(expected)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).not.toContain("Duration(")
    })
  )
})
