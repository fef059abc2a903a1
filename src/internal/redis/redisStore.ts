import { Duration, Effect, FiberSet, HashMap } from "effect"
import type { Scope } from "effect"
import type { UserId } from "../../QueueManager.js"
import { QueueShutdown, StoreUnavailable } from "../errors.js"
import type { SharedStore } from "../fallbackStore.js"
import type { Local, StoreConfig, Ticket, Totals } from "../store.js"
import { Activity } from "./activity.js"
import { makeAlarm } from "./alarm.js"
import { connect, type Target } from "./connection.js"
import { LeaseRegistry, type RedisLease } from "./leases.js"
import { Operations } from "./operations.js"
import { checkPermissions } from "./permissions.js"
import { type Call, GiveBacks, renewEvery } from "./renewal.js"
import { decodeUser, encodeUser, Session } from "./session.js"
import { type RedisTicket, TicketRegistry, watchWakeups } from "./tickets.js"

/** How the Redis store is reached and how long a lease lives. */
export interface RedisStoreSettings {
  readonly redis: Target
  readonly prefix: string
  readonly leaseMillis: number
  readonly timeoutMillis: number
}

/** The parts of a Redis store, each with one job. */
interface Parts {
  /** The conversation with Redis: calls, batches, the epoch and the limits. */
  readonly session: Session
  /** The slots this process holds, their deadlines and their loss. */
  readonly leases: LeaseRegistry
  /** The requests of this process waiting in Redis, and their wake-ups. */
  readonly tickets: TicketRegistry
  /** What is on its way, the counts, shutdown, and who waits for them. */
  readonly activity: Activity
  /** Acquisitions, releases and leaves, and what their answers do here. */
  readonly operations: Operations
  /** What Redis may hold for nobody here, given back with the next renewal round. */
  readonly giveBacks: GiveBacks
}

/**
 * The Redis store: counts, leases, waiting lines and the limits live in Redis and are changed
 * only by the functions of `store.lua`; this process keeps its own leases and waiting requests,
 * renews them every third of a lease (`renewEvery`), and is woken through pub/sub when one of
 * its requests is admitted. An answer from another epoch of Redis's state means that Redis
 * lost it: every lease and request of the old one is lost at once.
 */
export const makeRedisStore = (
  settings: RedisStoreSettings,
  config: StoreConfig
): Effect.Effect<SharedStore, StoreUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const { leaseMillis, timeoutMillis } = settings
    const db = yield* connect(settings.redis, timeoutMillis, "connect")
    yield* checkPermissions(db, settings.prefix)
    // a connection of the store's own even when the caller gave a client: a subscribed one runs nothing else
    const subscriber = yield* connect(settings.redis, timeoutMillis, "subscribe", true)
    // logs with this layer's logger and services
    const runInBackground = yield* FiberSet.makeRuntime<never>()
    // the renewal rounds' clock
    const alarm = makeAlarm()
    const activity = new Activity()
    const giveBacks = new GiveBacks(leaseMillis)
    const leases = new LeaseRegistry(
      leaseMillis,
      (lost, why) => runInBackground(warnLost(lost, why)),
      () => activity.changed()
    )
    const tickets = new TicketRegistry(
      (renewedAt) => leases.deadline(renewedAt),
      (ticket, active, token, renewedAt) => operations.admit(ticket, active, token, renewedAt),
      (ticket) => giveBacks.add(ticket.id)
    )
    const session = new Session(db, settings.prefix, leaseMillis, config, {
      stateLost: (epoch) => {
        leases.loseAllBut(epoch)
        tickets.failAll(() => new StoreUnavailable({ operation: "wait", reason: "Redis lost its state" }), epoch)
      },
      answered: () => {
        // Redis answers again: what it may hold for nobody (a backlog of late acquisitions) goes back now
        if (giveBacks.takeAdded()) alarm.wake()
      }
    })
    const operations = new Operations(session, leases, tickets, activity, giveBacks, config)
    const parts: Parts = { session, leases, tickets, activity, operations, giveBacks }
    yield* Effect.addFinalizer(() => Effect.sync(() => session.flush()))

    // subscribed before the first request can wait
    yield* tickets.listen(subscriber, db, session.channel)
    // the first call: this process's limits become the prefix's (the last process to start sets them)
    yield* session.configure(session.limits, "start")

    // a round at once after a reconnection: Redis may have restarted, and a wake-up may have been missed
    db.redis.on("ready", alarm.wake)
    subscriber.redis.on("ready", alarm.wake)
    const resubscribe = () => runInBackground(tickets.resubscribe(subscriber, session.channel))
    subscriber.redis.on("ready", resubscribe)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        db.redis.off("ready", alarm.wake)
        subscriber.redis.off("ready", alarm.wake)
        subscriber.redis.off("ready", resubscribe)
        leases.stop()
        tickets.stop()
      })
    )
    const call: Call = (script, args) => session.call(script, args)
    yield* Effect.forkScoped(renewEvery(call, leases, tickets, giveBacks, alarm))
    yield* Effect.forkScoped(watchWakeups(db, session.channel, leaseMillis / 3))
    yield* Effect.addFinalizer(() => close(parts, call))
    return adapter(parts)
  })

/** Tells the logs that slots were lost (once per event, however many: a log line costs). */
const warnLost = (lost: ReadonlyArray<RedisLease>, why: string) =>
  Effect.annotateLogs(
    Effect.logWarning(lost.length === 1 ? `slot lost: ${why}` : `${lost.length} slots lost: ${why}`),
    {
      userId: lost.length === 1 ? lost[0]!.userId : lost.slice(0, 10).map((lease) => lease.userId)
    }
  )

/** Refuses new acquisitions, and every waiting request of this process. */
const shutdown = ({ activity, tickets }: Parts) =>
  Effect.sync(() => {
    activity.isShutdown = true
    tickets.failAll((ticket) => {
      activity.refused.shutdown++
      return new QueueShutdown({ userId: ticket.userId })
    })
  })

/**
 * Closing: no new work; every holder is stopped, and its lease renewed until it has; then the
 * slots of `tryAcquire`, which nobody can give back once the layer is gone, go back, and what
 * timed-out calls may have been granted goes back now, not after a lease.
 */
const close = (parts: Parts, call: Call) => {
  const { activity, leases, operations, giveBacks } = parts
  const stopped = activity.until(() => !leases.hasHolders && activity.pending === 0)
  return Effect.all([
    shutdown(parts),
    Effect.sync(() => leases.revokeAll()),
    // a holder that does not stop (uninterruptible, or its scope never closes) is waited for, and said so
    Effect.timeoutTo(stopped, {
      duration: Duration.millis(leases.leaseMillis),
      onSuccess: () => Effect.void,
      onTimeout: () =>
        Effect.zipRight(
          Effect.logWarning("closing waits for holders that have not stopped after a lease time"),
          stopped
        )
    }).pipe(Effect.flatten),
    Effect.sync(() => {
      for (const lease of leases.leases) operations.releaseLease(lease)
    }),
    Effect.promise(() => giveBacks.flush(call))
  ])
}

/** The store over its parts: what the policy and the fallback see. */
const adapter = (parts: Parts): SharedStore => {
  const { session, leases, tickets, activity, operations } = parts
  const local: Local = {
    get inFlight() {
      return leases.leases.size
    },
    get users() {
      return leases.users
    },
    get waiting() {
      return tickets.waiting.size
    },
    get acquired() {
      return activity.acquired
    },
    refused: activity.refused
  }
  return {
    acquire: (userId, bypass, wait, raw) =>
      Effect.suspend(() => {
        if (!activity.isShutdown) return operations.acquire(userId, bypass, wait, raw)
        activity.refused.shutdown++
        return Effect.succeed({ _tag: "Shutdown" } as const)
      }),
    awaitTurn: (ticket: Ticket) => (ticket as RedisTicket).awaitEnd(),
    leave: (ticket: Ticket) => operations.leave(ticket as RedisTicket),
    release: (userId, lease) => Effect.sync(() => operations.release(userId, lease)),
    // the limits are this answer's own (the session reads them from its first fields)
    standing: (userId) =>
      session.read("status", ["user", encodeUser(userId)], (answer) => ({
        active: Number(answer[0]),
        waiting: Number(answer[1]),
        inFlight: Number(answer[2]),
        limits: session.limits
      })),
    users: session.read("users", ["all"], (answer) => (answer[0] as Array<string>).length / 2),
    snapshot: session.read("snapshot", ["all"], (answer) => HashMap.fromIterable(pairs(answer[0] as Array<string>))),
    totals: session.read("stats", ["all"], (answer) => totals(answer, activity.refused.shutdown)),
    limits: () => session.limits,
    resize: (next) => session.configure(next),
    shutdown: shutdown(parts),
    isShutdown: () => activity.isShutdown,
    awaitIdle: activity.until(() => leases.leases.size === 0 && activity.pending === 0),
    local,
    held: (userId) => leases.count(userId),
    abandonWaiters: () =>
      tickets.failAll(
        () =>
          new StoreUnavailable({
            operation: "wait",
            reason: "Redis cannot be reached: this process uses its own limits until it can"
          })
      )
  }
}

/** The users and counts of a flat `user, count, ...` answer. */
const pairs = (flat: ReadonlyArray<string>) => {
  const out: Array<readonly [UserId, number]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([decodeUser(flat[i]!), Number(flat[i + 1])])
  return out
}

/** The totals of a `read all` answer (see store.lua); shutdown refusals are this process's own. */
const totals = (answer: ReadonlyArray<unknown>, shutdownRefusals: number): Totals => {
  const [acquired, user, global, waiting] = (answer[4] as Array<string | null>).map(Number)
  return {
    inFlight: Number(answer[1]),
    activeUsers: (answer[0] as Array<string>).length / 2,
    waiting: Number(answer[2]),
    waitingUsers: Number(answer[3]),
    acquired: acquired!,
    refused: { user: user!, global: global!, waiting: waiting!, shutdown: shutdownRefusals }
  }
}
