import { Cause, Effect, Exit, FiberId, ManagedRuntime, Option, Runtime } from "effect"
import type { QueueManager } from "../QueueManager.js"
import { badOption } from "./userKey.js"

/** A runtime providing the `QueueManager`, as code outside Effect holds one. */
export type QueueRuntime = Runtime.Runtime<QueueManager> | ManagedRuntime.ManagedRuntime<QueueManager, unknown>

/**
 * Runs effects needing the `QueueManager` from code that is not Effect, each to its exit (a
 * layer that failed to build: its failure, as the exit's).
 */
export type Run = <A, E>(effect: Effect.Effect<A, E, QueueManager>) => Promise<Exit.Exit<A, unknown>>

/** How code that is not Effect runs its calls on a `QueueRuntime`. */
export interface Runner {
  readonly run: Run
  /**
   * The runtime, when a call made now may use it without a fiber (`Run` would start one at
   * once): built, no call still waiting on the build, not disposed; `undefined` otherwise.
   */
  readonly ready: () => Runtime.Runtime<QueueManager> | undefined
}

/**
 * Whether a runtime's build died because the runtime was disposed: Effect's `ManagedRuntime`,
 * once disposed, dies with a message (a string), where a layer's own failure is a typed error
 * and its defects are errors.
 */
const gone = (cause: Cause.Cause<unknown>) => {
  const defects = Array.from(Cause.defects(cause))
  return Option.isNone(Cause.failureOption(cause)) && defects.length > 0 && defects.every((d) => typeof d === "string")
}

/** The runner of each `ManagedRuntime` in use: every face and middleware on one runtime shares it. */
const runners = new WeakMap<ManagedRuntime.ManagedRuntime<QueueManager, unknown>, Runner>()

/**
 * Runs effects on `runtime`, started in the order they were asked for, also while a
 * `ManagedRuntime` is still building: every call made meanwhile, through any face or
 * middleware of that runtime, waits on one and the same build (a `ManagedRuntime` asked for
 * its runtime by each call builds in a fiber per call, and those resume in no set order, so
 * the first requests would not be served first). Once built, calls go through the
 * `ManagedRuntime` itself, which knows when it has been disposed; a call made after it was
 * disposed ends interrupted, as one cut short by the dispose does. Throws naming `module`
 * when `runtime` is neither kind.
 */
export const makeRunner = (module: string, runtime: QueueRuntime): Runner => {
  if (ManagedRuntime.isManagedRuntime(runtime)) {
    const existing = runners.get(runtime)
    if (existing !== undefined) return existing
    let built: Runtime.Runtime<QueueManager> | undefined
    let building: Promise<Exit.Exit<Runtime.Runtime<QueueManager>, unknown>> | undefined
    let waiting = 0
    const run = <A, E>(effect: Effect.Effect<A, E, QueueManager>): Promise<Exit.Exit<A, unknown>> => {
      if (built !== undefined && waiting === 0) {
        // a runtime disposed since dies before it runs the call: to the caller, the call was cut
        // short by the runtime's end, as one running then is (interrupted), not a defect
        let entered = false
        const call = Effect.suspend(() => {
          entered = true
          return effect
        })
        return runtime
          .runPromiseExit(call)
          .then((exit) => (entered || Exit.isSuccess(exit) ? exit : Exit.interrupt(FiberId.none)))
      }
      // registered first, so `built` is set before any call queued behind it runs
      building ??= Effect.runPromiseExit(runtime.runtimeEffect).then((exit) => {
        if (Exit.isSuccess(exit)) built = exit.value
        return exit
      })
      waiting++
      return building.then((exit): Promise<Exit.Exit<A, unknown>> | Exit.Exit<never, unknown> => {
        waiting--
        if (Exit.isSuccess(exit)) return Runtime.runPromiseExit(exit.value)(effect)
        return gone(exit.cause) ? Exit.interrupt(FiberId.none) : Exit.failCause(exit.cause)
      })
    }
    // a disposed runtime fails whatever it runs; a live one returns `Effect.void` without a fiber
    const ready = () =>
      built !== undefined && waiting === 0 && Exit.isSuccess(runtime.runSyncExit(Effect.void)) ? built : undefined
    const runner = { run, ready }
    runners.set(runtime, runner)
    return runner
  }
  if (typeof runtime === "object" && runtime !== null && "context" in runtime && "fiberRefs" in runtime) {
    return { run: Runtime.runPromiseExit(runtime), ready: () => runtime }
  }
  return badOption(module, "runtime", "a Runtime or a ManagedRuntime", runtime)
}

/**
 * A promise of code that is not Effect (a slot's work, the rest of a grammY chain) as an effect:
 * uninterruptible, as a promise cannot be stopped, and remembering whether it fulfilled and
 * with what. A run that ends interrupted only (the runtime disposed, closing the store) after
 * the work fulfilled has still done the work: `fulfilled` tells the caller so.
 */
export const unstoppable = <A>(work: () => PromiseLike<A> | A) => {
  let fulfilled: { readonly value: A } | undefined
  const effect = Effect.uninterruptible(
    Effect.promise(async () => {
      const value = await work()
      fulfilled = { value }
      return value
    })
  )
  return { effect, fulfilled: () => fulfilled }
}
