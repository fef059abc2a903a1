import { Clock, Context, DefaultServices, Duration, Effect } from "effect"
import type { Scope } from "effect"
import { Command, Redis, type RedisOptions } from "ioredis"
import { StoreUnavailable } from "../errors.js"
import { evalScripts, functionNames, library, type Script } from "./scripts.js"

/** Effect's live clock: leases live in Redis's real time, whatever clock the caller runs under (e.g. a TestClock). */
export const liveClock = Context.get(DefaultServices.liveServices, Clock.Clock)

/** Sleeps in real time. */
export const sleepLive = (millis: number) => Effect.withClock(Effect.sleep(Duration.millis(millis)), liveClock)

/** A connection that runs the store's scripts, each in one round trip. */
export interface Connection {
  readonly redis: Redis
  readonly run: (script: Script, args: ReadonlyArray<string | number>) => Promise<unknown>
  /** Fails `answer` (a call on `redis`) if it does not come within the timeout; `run` does so itself. */
  readonly within: <A>(answer: Promise<A>) => Promise<A>
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** Turns a failed or garbled Redis call into `StoreUnavailable` naming the operation. */
export const unavailable = (operation: string) => (error: unknown) =>
  new StoreUnavailable({ operation, reason: describe(error) })

/**
 * Fails each call not answered within `timeoutMillis`, with one timer for all the calls in
 * flight (they end in the order they were sent) rather than one per call.
 */
const makeDeadlines = (timeoutMillis: number) => {
  const pending = new Set<{ readonly at: number; readonly fail: (error: Error) => void }>()
  let timer: ReturnType<typeof setTimeout> | undefined
  const arm = (millis: number) => {
    timer = setTimeout(expire, millis)
    timer.unref() // a call in flight keeps the process up through its socket; after the last, nothing should
  }
  const expire = () => {
    timer = undefined
    const now = performance.now()
    for (const call of pending) {
      if (call.at > now) return arm(call.at - now)
      pending.delete(call)
      call.fail(new Error(`Redis did not answer within ${timeoutMillis} ms`))
    }
  }
  return {
    within: <A>(answer: Promise<A>): Promise<A> =>
      new Promise<A>((resolve, reject) => {
        const call = { at: performance.now() + timeoutMillis, fail: reject }
        pending.add(call)
        if (timer === undefined) arm(timeoutMillis)
        answer.then(
          (value) => {
            pending.delete(call)
            resolve(value)
          },
          (error: unknown) => {
            pending.delete(call)
            reject(error)
          }
        )
      })
  }
}

type Run = Connection["run"]

/** Runs the scripts with `EVALSHA`, each loaded on its first use (and again if Redis lost it). */
const byScripts = (redis: Redis): Run => {
  for (const [script, lua] of Object.entries(evalScripts)) redis.defineCommand(`qm_${script}`, { numberOfKeys: 0, lua })
  const commands = redis as unknown as Record<string, (...args: ReadonlyArray<string | number>) => Promise<unknown>>
  return (script, args) => commands[`qm_${script}`]!(...args)
}

/**
 * Runs the scripts as functions of the library, loaded now (resolves once it is) and again
 * whenever Redis has lost it (a restart without persistence, `FUNCTION FLUSH`). A call Redis
 * refused for want of it is sent again once it is back, unless its caller has given up by
 * then (`timeoutMillis`); calls made meanwhile wait for the library, so that they go out after
 * the earlier ones sent again, in the order they were made.
 */
const byFunctions = async (redis: Redis, timeoutMillis: number): Promise<Run> => {
  let loading: Promise<unknown> | undefined
  const load = () =>
    (loading ??= redis.call("FUNCTION", "LOAD", "REPLACE", library).finally(() => (loading = undefined)))
  await load()
  // the arguments go in already flat and as strings: `redis.call` would flatten them with
  // `Array.prototype.flat`, which took about 6 µs for a batch's 90 arguments
  const fcall: Run = (script, args) => {
    const command = new Command("FCALL", [], { replyEncoding: "utf8" })
    const flat = [functionNames[script], "0"]
    for (const arg of args) flat.push(String(arg))
    command.args = flat
    return redis.sendCommand(command) as Promise<unknown>
  }
  const run: Run = (script, args) => {
    const madeAt = performance.now()
    return fcall(script, args).catch((error: unknown) => {
      if (!describe(error).includes("Function not found")) throw error
      return load().then(() => {
        if (performance.now() - madeAt >= timeoutMillis) throw error
        return fcall(script, args)
      })
    })
  }
  return (script, args) => (loading === undefined ? run(script, args) : loading.then(() => run(script, args)))
}

/** A server's version as a number: 6.2 is 602. */
const versionOf = (info: string) => {
  const version = /redis_version:(\d+)\.(\d+)/.exec(info)
  return version === null ? undefined : Number(version[1]) * 100 + Number(version[2])
}

/**
 * Opens a connection (a URL or ioredis options) and checks that the server is Redis 6.2 or
 * later, within `timeoutMillis`; commands then fail after `timeoutMillis` instead of hanging,
 * and at once while disconnected (ioredis reconnects in the background). On Redis 7 and later
 * the scripts run as a function library, unless the server refuses to load it (e.g. an ACL
 * without `FUNCTION`): then, as on 6.2, as scripts.
 */
export const connect = (
  target: string | RedisOptions,
  timeoutMillis: number,
  operation: string
): Effect.Effect<Connection, StoreUnavailable, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Connection, StoreUnavailable>((resume) => {
      const settings: RedisOptions = {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: timeoutMillis,
        retryStrategy: (times) => Math.min(50 * 2 ** times, 1000)
      }
      const redis = typeof target === "string" ? new Redis(target, settings) : new Redis({ ...target, ...settings })
      const deadlines = makeDeadlines(timeoutMillis)
      let lastError = "no answer"
      redis.on("error", (error: unknown) => (lastError = describe(error)))
      const fail = (reason: string) => {
        clearTimeout(timer)
        redis.disconnect()
        resume(Effect.fail(new StoreUnavailable({ operation, reason })))
      }
      const timer = setTimeout(
        () => fail(`no Redis answered within ${timeoutMillis} ms (${lastError}); is it a Redis server?`),
        timeoutMillis
      )
      redis
        .connect()
        .then(() => redis.info("server"))
        .then(async (info) => {
          const version = versionOf(info)
          if (version === undefined) {
            return fail(`the server does not look like Redis (INFO server has no redis_version)`)
          }
          if (version < 602) {
            return fail(
              `Redis ${Math.floor(version / 100)}.${version % 100} is too old: the queue store needs 6.2 or later`
            )
          }
          const run =
            version >= 700
              ? await byFunctions(redis, timeoutMillis).catch((error: unknown) =>
                  error instanceof Error && error.name === "ReplyError" ? byScripts(redis) : Promise.reject(error)
                )
              : byScripts(redis)
          clearTimeout(timer)
          resume(
            Effect.succeed({
              redis,
              run: (script, args) => deadlines.within(run(script, args)),
              within: deadlines.within
            })
          )
        })
        .catch((error: unknown) => fail(`${describe(error)}; is it a Redis server?`))
      return Effect.sync(() => {
        clearTimeout(timer)
        redis.disconnect()
      })
    }),
    // a Redis that does not answer (paused, cut off) is not waited for
    ({ redis, within }) =>
      Effect.promise(() =>
        within(redis.quit()).then(
          () => undefined,
          () => redis.disconnect()
        )
      )
  )
