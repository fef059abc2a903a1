import { Effect, ManagedRuntime, Runtime } from "effect"
import type { Exit } from "effect"
import type { QueueManager } from "../QueueManager.js"
import { badOption } from "./userKey.js"

/** A runtime providing the `QueueManager`, as code outside Effect holds one. */
export type QueueRuntime = Runtime.Runtime<QueueManager> | ManagedRuntime.ManagedRuntime<QueueManager, unknown>

/** Runs effects needing the `QueueManager` from code that is not Effect, each to its exit. */
export type Run = <A, E>(effect: Effect.Effect<A, E, QueueManager>) => Promise<Exit.Exit<A, E>>

/**
 * Runs effects on `runtime`, started in the order they were asked for, also while a
 * `ManagedRuntime` is still building: every call made meanwhile waits on one and the same
 * build (a `ManagedRuntime` asked for its runtime by each call builds in a fiber per call, and
 * those resume in no set order, so the first requests would not be served first). A layer
 * that fails to build rejects every call with its error. Throws naming `module` when
 * `runtime` is neither kind.
 */
export const makeRunner = (module: string, runtime: QueueRuntime): Run => {
  if (ManagedRuntime.isManagedRuntime(runtime)) {
    let built: Runtime.Runtime<QueueManager> | undefined
    let building: Promise<Runtime.Runtime<QueueManager>> | undefined
    let waiting = 0
    return (effect) => {
      if (built !== undefined && waiting === 0) return Runtime.runPromiseExit(built)(effect)
      // registered first, so `built` is set before any call queued behind it runs
      building ??= runtime.runtime().then((ready) => (built = ready))
      waiting++
      return building.then(
        (ready) => {
          waiting--
          return Runtime.runPromiseExit(ready)(effect)
        },
        (error: unknown) => {
          waiting--
          throw error
        }
      )
    }
  }
  if (typeof runtime === "object" && runtime !== null && "context" in runtime && "fiberRefs" in runtime) {
    return Runtime.runPromiseExit(runtime)
  }
  return badOption(module, "runtime", "a Runtime or a ManagedRuntime", runtime)
}
