import { Effect } from "effect"
import type { Scope } from "effect"
import { type Cluster, Command, Redis, type RedisOptions } from "ioredis"
import { StoreUnavailable } from "../errors.js"
import { evalScripts, functionNames, library, type Script } from "./lua.js"

/**
 * A call that failed; `reached` tells whether Redis may have run it (a timeout, a connection
 * lost with the call in flight) or surely did not (the connection was down when it was made).
 */
export class CallFailed extends Error {
  constructor(
    message: string,
    readonly reached: boolean
  ) {
    super(message)
  }
}

/** An ioredis client: one server, or a cluster. */
export type Client = Redis | Cluster

/** Where Redis is: a URL, ioredis options, or a client of the caller's (which stays the caller's). */
export type Target = string | RedisOptions | Client

/**
 * Whether `value` is an ioredis client (a `Redis` or a `Cluster`), also one from another copy
 * of ioredis than this package's, where `instanceof` would say no.
 */
export const isClient = (value: unknown): value is Client =>
  typeof value === "object" &&
  value !== null &&
  typeof (value as Partial<Client>).duplicate === "function" &&
  typeof (value as Partial<Client>).sendCommand === "function" &&
  typeof (value as Partial<Client>).defineCommand === "function" &&
  typeof (value as Partial<Client>).status === "string" &&
  typeof (value as Partial<Client>).options === "object"

/** The ioredis options the store cannot work under, as a client, options or a Cluster's `redisOptions` may set them. */
interface RefusedOptions {
  readonly keyPrefix?: string
  readonly stringNumbers?: boolean
}

/**
 * What is wrong with the ioredis options of a client or of options, if anything. The store
 * cannot take a `keyPrefix` (ioredis adds it to the keys of scripts but not to those of the raw
 * `FCALL`s, so two processes of one prefix would keep two states) nor `stringNumbers` (the
 * store's answers are numbers).
 */
export const optionsProblem = (target: Client | RedisOptions): string | undefined => {
  const options = (isClient(target) ? target.options : target) as RefusedOptions & {
    readonly redisOptions?: RefusedOptions
  }
  const prefix = options.keyPrefix ?? options.redisOptions?.keyPrefix
  if (prefix !== undefined && prefix !== "") {
    return `must not set ioredis' keyPrefix (the store's prefix option names its keys), got keyPrefix ${JSON.stringify(prefix)}`
  }
  return options.stringNumbers === true || options.redisOptions?.stringNumbers === true
    ? "must not set ioredis' stringNumbers (the store reads its answers as numbers), got stringNumbers true"
    : undefined
}

const isCluster = (client: Client): client is Cluster => (client as { readonly isCluster?: boolean }).isCluster === true

/** A connection that runs the store's calls, each in one round trip. */
export interface Connection {
  readonly redis: Client
  /** Runs `script` on `keys` with `args`; fails with `CallFailed` unless answered within the timeout. */
  readonly run: (script: Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => Promise<unknown>
  /** Fails `answer` (a call on `redis`) with `CallFailed` if it does not come within the timeout. */
  readonly within: <A>(answer: Promise<A>) => Promise<A>
  /** Stops listening to the client, and disconnects it unless it is the caller's. */
  readonly release: () => void
}

/** The message of a failed call's error. */
export const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** With the offline queue off, ioredis refuses a call made while disconnected: it never left. */
const neverSent = (error: unknown) => messageOf(error).startsWith("Stream isn't writeable")

/** A failed call as `CallFailed`, telling whether it may have reached Redis. */
const asFailure = (error: unknown) =>
  error instanceof CallFailed ? error : new CallFailed(messageOf(error), !neverSent(error))

/** Turns a failed or garbled call into `StoreUnavailable` naming the operation. */
export const unavailable = (operation: string) => (error: unknown) =>
  new StoreUnavailable({ operation, reason: messageOf(error), cause: error })

/**
 * Fails each call not answered within `timeoutMillis`, with one timer for all the calls in
 * flight (they end in the order they were sent) rather than one per call. After a stall of this
 * process (a long GC, a busy CPU) Node runs due timers before it reads the sockets: a call is
 * failed only once the answers already received have been read (`setImmediate` runs after them).
 */
const makeDeadlines = (timeoutMillis: number) => {
  const pending = new Set<{ readonly at: number; readonly fail: (error: Error) => void }>()
  let timer: ReturnType<typeof setTimeout> | undefined
  const arm = (millis: number) => {
    timer = setTimeout(() => setImmediate(expire), millis)
    timer.unref() // a call in flight keeps the process up through its socket; after the last, nothing should
  }
  const expire = () => {
    timer = undefined
    const now = performance.now()
    for (const call of pending) {
      if (call.at > now) return arm(call.at - now)
      pending.delete(call)
      call.fail(new CallFailed(`Redis did not answer within ${timeoutMillis} ms`, true))
    }
  }
  return <A>(answer: Promise<A>): Promise<A> =>
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
          reject(asFailure(error))
        }
      )
    })
}

type Run = Connection["run"]

/** Sends `command` with its arguments already flat and as strings (ioredis would flatten them again). */
const send = (redis: Client, command: string, head: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => {
  const flat = [...head]
  for (const arg of args) flat.push(String(arg))
  const call = new Command(command, [], { replyEncoding: "utf8" })
  call.args = flat
  return redis.sendCommand(call) as Promise<unknown>
}

/** Runs the calls with `EVALSHA`, each script loaded on its first use (and again if Redis lost it). */
const byScripts = (redis: Client): Run => {
  for (const [script, lua] of Object.entries(evalScripts)) redis.defineCommand(`qm_${script}`, { lua })
  const commands = redis as unknown as Record<string, (...args: ReadonlyArray<string | number>) => Promise<unknown>>
  return (script, keys, args) => commands[`qm_${script}`]!(keys.length, ...keys, ...args)
}

/**
 * Runs the calls as functions of the library, loaded now (resolves once it is) and again
 * whenever Redis has lost it (a restart without persistence, `FUNCTION FLUSH`). A call Redis
 * refused for want of it never ran: it is sent again once the library is back, unless its
 * caller has given up by then (`timeoutMillis`); calls made meanwhile wait for the library, so
 * that they go out after the earlier ones sent again, in the order they were made.
 */
const byFunctions = async (redis: Client, timeoutMillis: number): Promise<Run> => {
  let loading: Promise<unknown> | undefined
  const load = () =>
    (loading ??= redis.call("FUNCTION", "LOAD", "REPLACE", library).finally(() => (loading = undefined)))
  await load()
  const fcall: Run = (script, keys, args) =>
    send(redis, "FCALL", [functionNames[script], String(keys.length), ...keys], args)
  const run: Run = (script, keys, args) => {
    const madeAt = performance.now()
    return fcall(script, keys, args).catch((error: unknown) => {
      if (!messageOf(error).includes("Function not found")) throw error
      return load().then(() => {
        if (performance.now() - madeAt >= timeoutMillis) throw new CallFailed(messageOf(error), false)
        return fcall(script, keys, args)
      })
    })
  }
  return (script, keys, args) =>
    loading === undefined ? run(script, keys, args) : loading.then(() => run(script, keys, args))
}

/** Whether Redis refused a command for want of an ACL permission. */
export const isNoPermission = (error: unknown) => messageOf(error).startsWith("NOPERM")

const clientClosed = "the client has been closed (quit, disconnect, or it stopped reconnecting)"

/**
 * Why starting failed, when the error tells: nothing listening, a wrong user or password, a
 * permission the ACL user lacks, a client passed in that is closed, a connection closed under
 * the start (`caller`: the connection is a client passed in).
 */
const knownFailure = (error: string, step: string, caller: boolean): string | undefined => {
  if (/ECONNREFUSED/.test(error)) return `connection refused (${error}): is Redis listening there?`
  if (/^(WRONGPASS|NOAUTH)|invalid username-password/.test(error)) {
    return `authentication failed (${error}): check the user and password of the URL or options`
  }
  if (/^NOPERM/.test(error)) return `the ACL user may not run what ${step} needs (${error})`
  if (error === clientClosed) return `${error}: a client passed as redis must be open`
  if (/^Connection is closed/.test(error)) {
    return caller
      ? `the connection was closed while ${step}: was the client passed in closed, or did Redis drop it?`
      : `the connection was closed while ${step}; is it a Redis server?`
  }
  return undefined
}

/**
 * Why starting failed, told apart: nothing listening, a wrong user or password, a permission the
 * ACL user lacks (Redis names the command), or a server that does not speak Redis at all.
 */
const startFailure = (error: string, step: string, caller: boolean): string =>
  knownFailure(error, step, caller) ?? `${error} while ${step}; is it a Redis server?`

/** A server's version as a number: 6.2 is 602. */
const versionOf = (info: string) => {
  const version = /redis_version:(\d+)\.(\d+)/.exec(info)
  return version === null ? undefined : Number(version[1]) * 100 + Number(version[2])
}

/** The database a URL or ioredis options ask for (0 when none is named; a cluster has only 0). */
const databaseOf = (redis: Client) => (isCluster(redis) ? 0 : (redis.options.db ?? 0))

/**
 * `redis` connected: connecting now if it was made lazy, or once it is ready if it is on its way;
 * `stop` stops waiting for it (a start that failed leaves no listener on a client of the caller's).
 */
const connected = (redis: Client): { readonly ready: Promise<unknown>; readonly stop: () => void } => {
  if (redis.status === "wait") return { ready: redis.connect(), stop: () => {} }
  if (redis.status === "ready") return { ready: Promise.resolve(), stop: () => {} }
  const closed = new Error(clientClosed)
  // a Cluster quit before it was ready stays "disconnecting" and never ends
  if (redis.status === "end" || (isCluster(redis) && redis.status === "disconnecting")) {
    return { ready: Promise.reject(closed), stop: () => {} }
  }
  let onReady = () => {}
  let onEnd = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve
    onEnd = () => reject(closed)
  })
  redis.once("ready", onReady)
  redis.once("end", onEnd)
  return { ready, stop: () => void redis.off("ready", onReady).off("end", onEnd) }
}

/**
 * Opens a connection (a URL or ioredis options; with a client of the caller's, that client, or
 * with `duplicate` a duplicate of it of this store's own) and checks that the server is Redis
 * 6.2 or later and, on a connection it made from a URL or options, that the database asked for
 * exists (a client passed in stays in the database it is in), within `timeoutMillis`; calls then fail
 * after `timeoutMillis` instead of hanging, and, on a connection of the store's own, at once
 * while disconnected (ioredis reconnects in the background). On Redis 7 and later the calls run
 * as a function library, unless the server refuses to load it (e.g. an ACL without `FUNCTION`)
 * or it is a cluster (a library loaded on one node is not on the others): then, as on 6.2, as
 * scripts. A client of the caller's is left open when the scope closes.
 */
export const connect = (
  target: Target,
  timeoutMillis: number,
  operation: string,
  duplicate = false
): Effect.Effect<Connection, StoreUnavailable, Scope.Scope> =>
  Effect.acquireRelease(
    // interruptible: a start given up on (a timeout around the layer) stops at once, releasing what it opened
    Effect.async<Connection, StoreUnavailable>((resume) => {
      const settings: RedisOptions = {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: timeoutMillis,
        retryStrategy: (times) => Math.min(50 * 2 ** times, 1000),
        // the store subscribes again itself after a reconnection: ioredis's own resubscribe,
        // if Redis refused it, would reject with nobody to catch it and end the process
        autoResubscribe: false
      }
      const caller = isClient(target) && !duplicate
      const redis: Client = isClient(target)
        ? duplicate
          ? isCluster(target)
            ? target.duplicate()
            : target.duplicate({ autoResubscribe: false })
          : target
        : typeof target === "string"
          ? new Redis(target, settings)
          : new Redis({ ...target, ...settings })
      const within = makeDeadlines(timeoutMillis)
      let lastError = "no answer"
      const onError = (error: unknown) => (lastError = messageOf(error))
      redis.on("error", onError)
      const waiting = connected(redis)
      const release = () => {
        waiting.stop()
        redis.off("error", onError)
        if (!caller) redis.disconnect()
      }
      // once the start has failed or been interrupted, its later steps send nothing more
      let settled = false
      const fail = (reason: string): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        release()
        resume(Effect.fail(new StoreUnavailable({ operation, reason })))
      }
      // starting takes up to five round trips (connect, INFO twice, SELECT, FUNCTION LOAD): each
      // may take a timeout, as any call may
      const budget = 5 * timeoutMillis
      let step = "connecting"
      const timer = setTimeout(
        () =>
          fail(
            step === "connecting"
              ? (knownFailure(lastError, step, caller) ?? `could not connect within ${budget} ms (${lastError})`)
              : `no answer within ${budget} ms while ${step}; is it a Redis server?`
          ),
        budget
      )
      const database = databaseOf(redis)
      waiting.ready
        .then(() => {
          if (settled) return undefined
          step = "asking the server what it is (INFO)"
          // an ACL user without INFO (as on some hosted Redis): the version goes unchecked
          return redis
            .info("server")
            .catch((error: unknown) => (isNoPermission(error) ? undefined : Promise.reject(error)))
        })
        .then(async (info) => {
          if (settled) return
          const version = info === undefined ? undefined : versionOf(info)
          if (info !== undefined && version === undefined) {
            return fail(`the server does not look like Redis (INFO server has no redis_version)`)
          }
          if (version !== undefined && version < 602) {
            return fail(
              `Redis ${Math.floor(version / 100)}.${version % 100} is too old: the queue store needs 6.2 or later`
            )
          }
          // ioredis selects the database on its own but only logs a refusal, and goes on in database 0;
          // database 0 is where a connection starts (and some hosted Redis refuse SELECT altogether);
          // a client of the caller's stays in the database it is in, and its duplicate only subscribes
          step = `selecting database ${database}`
          const selected =
            database === 0 || isClient(target)
              ? undefined
              : await redis.select(database).then(
                  () => undefined,
                  (error: unknown) => messageOf(error)
                )
          if (selected !== undefined) return fail(`database ${database} cannot be selected: ${selected}`)
          if (settled) return
          step = "loading the function library"
          const run =
            (version === undefined || version >= 700) && !isCluster(redis)
              ? await byFunctions(redis, timeoutMillis).catch((error: unknown) =>
                  error instanceof Error && error.name === "ReplyError" ? byScripts(redis) : Promise.reject(error)
                )
              : byScripts(redis)
          if (settled) return
          settled = true
          clearTimeout(timer)
          waiting.stop()
          resume(
            Effect.succeed({ redis, run: (script, keys, args) => within(run(script, keys, args)), within, release })
          )
        })
        // a connection that failed says only that it is closed: the socket's error says why
        .catch((error: unknown) =>
          fail(
            startFailure(
              step === "connecting" && lastError !== "no answer" ? lastError : messageOf(error),
              step,
              caller
            )
          )
        )
      return Effect.sync(() => {
        settled = true
        clearTimeout(timer)
        release()
      })
    }).pipe(Effect.interruptible),
    // a Redis that does not answer (paused, cut off) is not waited for; the caller's client stays open
    ({ redis, within, release }) =>
      redis === target
        ? Effect.sync(release)
        : Effect.promise(() =>
            within(redis.quit()).then(
              () => undefined,
              () => release()
            )
          )
  )
