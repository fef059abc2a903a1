/**
 * The Promise face's `withSlot` without a fiber (in memory, where nothing would log at debug
 * level or trace): the same answers, state and metrics as the fiber it skips, and the fiber
 * wherever the fiber does more.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, DefaultServices, Effect, FastCheck, FiberRef, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { Metric, MetricLabel, Supervisor, Tracer } from "effect"
import { QueueManager, QueueMetrics } from "../src/index.js"

/** The metrics of the runs under `label`. */
const metricsOf = (label: MetricLabel.MetricLabel) =>
  Effect.runSync(
    Effect.all({
      inFlight: Metric.value(QueueMetrics.slotsInFlight),
      users: Metric.value(QueueMetrics.usersActive),
      acquisitions: Metric.value(QueueMetrics.acquisitions),
      refusedUser: Metric.value(Metric.tagged(QueueMetrics.refusals, "reason", "user")),
      refusedGlobal: Metric.value(Metric.tagged(QueueMetrics.refusals, "reason", "global")),
      refusedShutdown: Metric.value(Metric.tagged(QueueMetrics.refusals, "reason", "shutdown"))
    }).pipe(Effect.labelMetrics([label]))
  )

/** A tier function: user 3 gets 1 slot, user 4 none, "bad" a value no tier may be (a defect), others the default. */
const userLimit: QueueManager.UserLimit = (userId, maxUserQueue) =>
  userId === 3 ? 1 : userId === 4 ? 0 : userId === "bad" ? (-1 as never) : maxUserQueue

const user = FastCheck.constantFrom<QueueManager.UserId>(1, 2, 3, 4, "bad", "", 1.5)
const step = FastCheck.oneof(
  FastCheck.record({
    op: FastCheck.constant("withSlot" as const),
    user,
    bypass: FastCheck.boolean(),
    work: FastCheck.constantFrom("value", "throw", "hold", "reject-later")
  }),
  FastCheck.record({ op: FastCheck.constant("settle" as const), which: FastCheck.nat() }),
  FastCheck.record({ op: FastCheck.constant("tryAcquire" as const), user }),
  FastCheck.record({ op: FastCheck.constant("release" as const), user }),
  FastCheck.record({ op: FastCheck.constant("drain" as const) })
)
type Step = typeof step extends FastCheck.Arbitrary<infer S> ? S : never

/** What a call ended with, comparable across runs: its value, or its error's class and fields. */
const outcome = (call: Promise<unknown>) =>
  call.then(
    (value) => ({ value }),
    (error: unknown) =>
      error instanceof Error ? { ...error, error: error.constructor.name, message: error.message } : { thrown: error }
  )

let runs = 0

/**
 * Runs `steps` through the Promise face of a fresh manager whose runtime adds `extra` (and
 * logs nowhere), and returns every call's outcome and the state and metrics after each step.
 */
const play = async (steps: ReadonlyArray<Step>, extra: Layer.Layer<never>) => {
  const label = MetricLabel.make("direct", String(++runs))
  const runtime = ManagedRuntime.make(
    Layer.mergeAll(
      QueueManager.layer({ maxUserQueue: 2, maxTotal: 4, userLimit }),
      Layer.locallyScoped(FiberRef.currentMetricLabels, [label]),
      Logger.remove(Logger.defaultLogger),
      extra
    )
  )
  const queue = QueueManager.toPromise(runtime)
  const held: Array<{ readonly settle: () => void; readonly call: Promise<unknown> }> = []
  const seen: Array<unknown> = []
  let draining = false
  for (const s of steps) {
    switch (s.op) {
      case "withSlot": {
        if (s.work === "value" || s.work === "throw") {
          const call = queue.withSlot(
            s.user,
            (slot) => {
              if (s.work === "throw") throw new TypeError(`failed under ${slot.token}`)
              return slot.userId
            },
            { bypassUserLimit: s.bypass }
          )
          seen.push(await outcome(call))
          break
        }
        let settle = () => {}
        const call = queue.withSlot(
          s.user,
          (slot) =>
            new Promise((resolve, reject) => {
              settle = () => (s.work === "hold" ? resolve(slot.token) : reject(new RangeError("later")))
            }),
          { bypassUserLimit: s.bypass }
        )
        held.push({ settle: () => settle(), call: outcome(call) })
        break
      }
      case "settle": {
        if (held.length === 0) break
        const [taken] = held.splice(s.which % held.length, 1)
        taken!.settle()
        seen.push(await taken!.call)
        break
      }
      case "tryAcquire":
        seen.push(await outcome(queue.tryAcquire(s.user)))
        break
      case "release":
        seen.push(await outcome(queue.release(s.user)))
        break
      case "drain":
        if (!draining) void queue.drain()
        draining = true
        break
    }
    seen.push(await queue.stats(), metricsOf(label))
  }
  for (const { settle, call } of held) {
    settle()
    seen.push(await call)
  }
  // a drain ends once no slot is held: never while a tryAcquire's slot is
  seen.push(await queue.stats(), metricsOf(label))
  await runtime.dispose()
  return seen
}

/** A runtime in which the manager logs at debug level (to no logger): every call takes a fiber. */
const debugLevel = Logger.minimumLogLevel(LogLevel.Debug)

describe("QueueManager.toPromise without a fiber", () => {
  it.live.prop(
    "withSlot gives the same answers, state and metrics as through a fiber",
    [FastCheck.array(step, { maxLength: 40 })],
    ([steps]) =>
      Effect.promise(async () => {
        const direct = await play(steps, Layer.empty)
        const throughFiber = await play(steps, debugLevel)
        expect(direct).toEqual(throughFiber)
      }),
    { fastCheck: { numRuns: 150 } }
  )

  it.live("a tracer in the runtime gets the spans of every withSlot", () =>
    Effect.promise(async () => {
      const names: Array<string> = []
      const builtIn = Context.get(DefaultServices.liveServices, Tracer.Tracer)
      const recording = Tracer.make({
        span: (...args) => {
          names.push(args[0])
          return builtIn.span(...args)
        },
        context: builtIn.context
      })
      const runtime = ManagedRuntime.make(
        Layer.merge(QueueManager.layer({ maxUserQueue: 1 }), Layer.setTracer(recording))
      )
      const queue = QueueManager.toPromise(runtime)
      // the first call waits on the build; the second finds the runtime built
      expect(await queue.withSlot(1, () => "first")).toBe("first")
      expect(await queue.withSlot(1, () => "second")).toBe("second")
      expect(names).toEqual(Array(2).fill(["QueueManager.withSlot", "QueueManager.release"]).flat())
      await runtime.dispose()
    })
  )

  it.live("at debug level every withSlot logs its steps", () =>
    Effect.promise(async () => {
      const messages: Array<unknown> = []
      const runtime = ManagedRuntime.make(
        Layer.mergeAll(
          QueueManager.layer({ maxUserQueue: 1 }),
          Logger.minimumLogLevel(LogLevel.Debug),
          Logger.replace(
            Logger.defaultLogger,
            Logger.make(({ message }) => messages.push(message))
          )
        )
      )
      const queue = QueueManager.toPromise(runtime)
      await queue.withSlot(1, () => "first")
      messages.length = 0
      await queue.withSlot(1, () => "second")
      expect(messages).toEqual([["slot acquired"], ["slot released"]])
      await runtime.dispose()
    })
  )

  it.live(
    "a work's promise is awaited as the fiber awaits it, even one with an own then or a throwing constructor",
    () =>
      Effect.promise(async () => {
        const odd: Record<string, () => Promise<string>> = {
          "an own then that throws": () =>
            Object.assign(Promise.resolve("v"), {
              then: () => {
                throw new Error("own then")
              }
            }),
          "an own then that never calls back": () => Object.assign(Promise.resolve("v"), { then: () => undefined }),
          "a constructor that throws": () =>
            Object.defineProperty(Promise.resolve("v"), "constructor", {
              get: () => {
                throw new Error("constructor")
              }
            })
        }
        const answers = async (extra: Layer.Layer<never>) => {
          const runtime = ManagedRuntime.make(
            Layer.mergeAll(QueueManager.layer({ maxUserQueue: 1 }), Logger.remove(Logger.defaultLogger), extra)
          )
          const queue = QueueManager.toPromise(runtime)
          await queue.stats()
          const seen: Record<string, unknown> = {}
          for (const [name, work] of Object.entries(odd)) {
            let call: Promise<unknown> | undefined
            try {
              call = queue.withSlot(1, work)
            } catch (error) {
              seen[name] = { threw: String(error) }
              continue
            }
            seen[name] = { outcome: await outcome(call), held: (await queue.stats()).inFlight }
          }
          await runtime.dispose()
          return seen
        }
        const direct = await answers(Layer.empty)
        expect(direct).toEqual(await answers(debugLevel))
        expect(direct).toEqual({
          "an own then that throws": { outcome: { value: "v" }, held: 0 },
          "an own then that never calls back": { outcome: { value: "v" }, held: 0 },
          "a constructor that throws": {
            outcome: { error: "Error", message: "constructor" },
            held: 0
          }
        })
      })
  )

  it.live("a userLimit that calls the manager is refused, and admits nothing past the limits", () =>
    Effect.promise(async () => {
      let queue: QueueManager.PromiseQueue | undefined
      const nested: Array<Promise<unknown>> = []
      const runtime = ManagedRuntime.make(
        Layer.merge(
          QueueManager.layer({
            maxUserQueue: 1,
            maxTotal: 1,
            userLimit: (userId, maxUserQueue) => {
              if (userId === 1) nested.push(outcome(queue!.withSlot(2, () => "nested")))
              return maxUserQueue
            }
          }),
          Logger.remove(Logger.defaultLogger)
        )
      )
      queue = QueueManager.toPromise(runtime)
      await queue.stats()
      let release = () => {}
      const outer = queue.withSlot(1, () => new Promise<void>((resolve) => (release = resolve)))
      expect(await Promise.all(nested)).toEqual([
        {
          _tag: "IllegalArgumentException",
          error: "Base",
          message:
            "QueueManager: the manager was called from inside one of its own steps (a userLimit function must not call it)"
        }
      ])
      expect(await queue.stats()).toMatchObject({ inFlight: 1, activeUsers: 1 })
      release()
      await outer
      await runtime.dispose()
    })
  )

  it.live("a call made just as the build ends is served after the calls still waiting on the build", () =>
    Effect.promise(async () => {
      // the late call is made `hops` microtasks after the build's last step; over the range of
      // hops one lands after the runtime is known built and before the earlier call has run
      for (let hops = 0; hops < 24; hops++) {
        let built = () => {}
        const lastStep = new Promise<void>((resolve) => (built = resolve))
        const runtime = ManagedRuntime.make(
          Layer.mergeAll(
            QueueManager.layer({ maxUserQueue: 1 }),
            Layer.effectDiscard(Effect.sleep(5).pipe(Effect.andThen(() => built()))),
            Logger.remove(Logger.defaultLogger)
          )
        )
        const queue = QueueManager.toPromise(runtime)
        let release = () => {}
        const earlier = outcome(queue.withSlot("chat", () => new Promise<void>((resolve) => (release = resolve))))
        const later = lastStep.then(async () => {
          for (let i = 0; i < hops; i++) await null
          return outcome(queue.withSlot("chat", () => "later"))
        })
        expect(await later, `made ${hops} microtasks after the build`).toMatchObject({
          _tag: "QueueFull",
          reason: "user"
        })
        release()
        expect(await earlier).toEqual({ value: undefined })
        await runtime.dispose()
      }
    })
  )

  it.live("once the runtime is built, a withSlot that does not wait starts no fiber; one at debug level does", () =>
    Effect.promise(async () => {
      /** Counts the fibers started in the runtime it is added to. */
      class Starts extends Supervisor.AbstractSupervisor<number> {
        count = 0
        value = Effect.sync(() => this.count)
        override onStart() {
          this.count++
        }
      }
      const fibersPerCall = async (extra: Layer.Layer<never>) => {
        const starts = new Starts()
        const runtime = ManagedRuntime.make(
          Layer.mergeAll(QueueManager.layer({ maxUserQueue: 1 }), Supervisor.addSupervisor(starts), extra)
        )
        const queue = QueueManager.toPromise(runtime)
        await queue.stats()
        const before = starts.count
        for (let i = 0; i < 4; i++) await queue.withSlot(i % 2, () => i)
        const after = starts.count
        await runtime.dispose()
        return (after - before) / 4
      }
      expect(await fibersPerCall(Layer.empty)).toBe(0)
      expect(await fibersPerCall(Layer.merge(debugLevel, Logger.remove(Logger.defaultLogger)))).toBeGreaterThanOrEqual(
        1
      )
    })
  )
})
