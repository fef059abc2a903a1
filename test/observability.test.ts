import { describe, expect, it } from "@effect/vitest"
import { Context, DefaultServices, Effect, Fiber, Metric, MetricLabel, Tracer, Exit } from "effect"
import { QueueManager, QueueMetrics } from "../src/index.js"
import { enqueue, hold, withManager } from "./support.js"

const Queue = QueueManager.QueueManager

/** Reads every QueueMetrics value; under `Effect.labelMetrics`, those of the caller's label only. */
const readMetrics = Effect.all({
  inFlight: Metric.value(QueueMetrics.slotsInFlight),
  users: Metric.value(QueueMetrics.usersActive),
  waiting: Metric.value(QueueMetrics.requestsWaiting),
  acquisitions: Metric.value(QueueMetrics.acquisitions),
  refusedUser: Metric.value(Metric.tagged(QueueMetrics.refusals, "reason", "user")),
  refusedGlobal: Metric.value(Metric.tagged(QueueMetrics.refusals, "reason", "global")),
  waitTime: Metric.value(QueueMetrics.waitTime)
}).pipe(
  Effect.map((m) => ({
    inFlight: m.inFlight.value,
    users: m.users.value,
    waiting: m.waiting.value,
    acquisitions: m.acquisitions.count,
    refusedUser: m.refusedUser.count,
    refusedGlobal: m.refusedGlobal.count,
    waited: m.waitTime.count
  }))
)

/** Effect's built-in tracer, recording every span it makes in `spans`. */
const recordingTracer = () => {
  const spans: Array<Tracer.Span> = []
  const builtIn = Context.get(DefaultServices.liveServices, Tracer.Tracer)
  const recording = Tracer.make({
    span: (...args) => {
      const span = builtIn.span(...args)
      spans.push(span)
      return span
    },
    context: builtIn.context
  })
  return { spans, recording }
}

describe("observability", () => {
  it.scoped("metrics follow slots, users, waiters, acquisitions, refusals by reason and wait time", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      yield* hold(q, 2)
      expect(yield* q.tryAcquire(1)).toBe(false)
      expect(yield* q.tryAcquire(3)).toBe(false)
      const waiter = yield* enqueue(q, 1, [], "waiter")
      expect(yield* readMetrics).toEqual({
        inFlight: 2,
        users: 2,
        waiting: 1,
        acquisitions: 2,
        refusedUser: 1,
        refusedGlobal: 1,
        waited: 0
      })
      yield* done
      yield* Fiber.join(waiter)
      expect(yield* readMetrics).toMatchObject({ inFlight: 1, users: 1, waiting: 0, acquisitions: 3, waited: 1 })
    }).pipe(withManager({ maxUserQueue: 1, maxTotal: 2 }), Effect.labelMetrics([MetricLabel.make("run", "metrics-1")]))
  )

  it.effect("no metric is tagged by user id", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* q.withSlot("someone")(Effect.void)
      yield* q.tryAcquire("someone-else")
      const ours = Metric.unsafeSnapshot().filter((pair) => pair.metricKey.name.startsWith("queue_manager_"))
      expect(ours.length).toBeGreaterThan(0)
      for (const pair of ours) {
        for (const tag of pair.metricKey.tags) {
          expect(tag.key).not.toBe("userId")
          expect(tag.value).not.toContain("someone")
        }
      }
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.effect("spans named after the operation carry the user id, when a tracer is installed", () =>
    Effect.gen(function* () {
      const { spans, recording } = recordingTracer()
      const inner = yield* Effect.gen(function* () {
        const q = yield* Queue
        yield* q.tryAcquire(-7)
        yield* q.release(-7)
        yield* Effect.scoped(q.slot("a", { onFull: "wait" }))
        return yield* q.withSlot(5, { bypassUserLimit: true })(Effect.currentSpan)
      }).pipe(withManager({ maxUserQueue: 1 }), Effect.withTracer(recording))
      expect(spans.map((s) => [s.name, s.attributes.get("userId")])).toEqual([
        ["QueueManager.tryAcquire", -7],
        ["QueueManager.release", -7],
        ["QueueManager.slot", "a"],
        ["QueueManager.release", "a"],
        ["QueueManager.withSlot", 5],
        ["QueueManager.release", 5]
      ])
      expect(spans[2]!.attributes.get("onFull")).toBe("wait")
      expect(spans[4]!.attributes.get("bypassUserLimit")).toBe(true)
      // the body runs inside the withSlot span
      expect(inner.name).toBe("QueueManager.withSlot")
    })
  )

  it.effect("a refusal ends its span without an error, saying why; a failing body's span is an error", () =>
    Effect.gen(function* () {
      const { spans, recording } = recordingTracer()
      yield* Effect.gen(function* () {
        const q = yield* Queue
        yield* q.tryAcquire(1)
        expect(yield* Effect.flip(q.withSlot(1)(Effect.void))).toMatchObject({ _tag: "QueueFull", reason: "user" })
        expect(yield* Effect.flip(q.withSlot(2)(Effect.fail("boom")))).toBe("boom")
      }).pipe(withManager({ maxUserQueue: 1 }), Effect.withTracer(recording))
      const exitOf = (span: Tracer.Span) => (span.status._tag === "Ended" ? span.status.exit : undefined)
      const [refused, failed] = spans.filter((span) => span.name === "QueueManager.withSlot")
      expect(Exit.isSuccess(exitOf(refused!)!)).toBe(true)
      expect(refused!.attributes.get("refused")).toBe("user")
      expect(Exit.isFailure(exitOf(failed!)!)).toBe(true)
    })
  )

  it.scoped("stats returns the totals", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      yield* hold(q, 1)
      yield* q.tryAcquire(1)
      yield* enqueue(q, 1, [], "w")
      yield* hold(q, 2)
      expect(yield* q.stats).toEqual({
        inFlight: 3,
        activeUsers: 2,
        waiting: 1,
        waitingUsers: 1,
        acquired: 3,
        refused: { user: 1, global: 0, waiting: 0, shutdown: 0 },
        maxUserQueue: 2,
        maxTotal: 0,
        maxWaitingPerUser: 100,
        shutdown: false
      })
    }).pipe(withManager({ maxUserQueue: 2 }))
  )
})
