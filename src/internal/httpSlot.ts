import { HttpApp } from "@effect/platform"
import { Effect, Either, ExecutionStrategy, Exit, Runtime, Scope } from "effect"

const alreadyClosed = (onClose: () => void): (() => void) => {
  onClose()
  return () => {}
}

/**
 * Calls `onClose` once when the connection behind `source` (the `source` of an
 * `HttpServerRequest`) is gone: a Node `IncomingMessage` emits `close` when its response has
 * finished or its client disconnected; a web `Request` aborts its `signal` when its client
 * disconnects. Any other source is never reported. Returns the function removing the listener.
 */
const onConnectionClosed = (source: unknown, onClose: () => void): (() => void) => {
  const node = source as Partial<NodeJS.EventEmitter> & { readonly destroyed?: boolean }
  if (typeof node?.once === "function" && typeof node.off === "function") {
    if (node.destroyed === true) return alreadyClosed(onClose)
    node.once("close", onClose)
    return () => node.off?.("close", onClose)
  }
  const signal = (source as { readonly signal?: unknown } | undefined)?.signal
  if (signal instanceof AbortSignal) {
    if (signal.aborted) return alreadyClosed(onClose)
    signal.addEventListener("abort", onClose, { once: true })
    return () => signal.removeEventListener("abort", onClose)
  }
  return () => {}
}

/**
 * Runs `self` holding what `acquire` takes (or `refused` when `acquire` fails) until the response of the current request has been
 * written: `acquire` runs in a child of the request scope (which the server closes after writing
 * the response, and, for a streaming body behind a web handler, after the stream ends), so
 * whether this wraps a route handler or the whole app, the write is covered.
 *
 * It is also given back as soon as the response is due (the handler has produced it) while the
 * client is gone. `@effect/platform-node` 0.108 waits forever in an uninterruptible region to
 * finish writing a body to a client that disconnected, so the request scope would never close.
 */
export const holdUntilSent = <A, E, R, E2, R2, B, R3>(
  acquire: Effect.Effect<void, E2, R2 | Scope.Scope>,
  refused: (error: E2) => Effect.Effect<B, never, R3>,
  source: unknown,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A | B, E, R | R2 | R3 | Scope.Scope> =>
  Effect.gen(function* () {
    const slotScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const acquired = yield* Effect.either(Scope.extend(acquire, slotScope))
    if (Either.isLeft(acquired)) return yield* refused(acquired.left)
    const release = Runtime.runFork(yield* Effect.runtime<never>())
    let due = false
    let closed = false
    const releaseIfGone = () => {
      if (due && closed) release(Scope.close(slotScope, Exit.void))
    }
    const stopListening = onConnectionClosed(source, () => {
      closed = true
      releaseIfGone()
    })
    yield* Scope.addFinalizer(slotScope, Effect.sync(stopListening))
    const responseDue = Effect.sync(() => {
      due = true
      releaseIfGone()
    })
    yield* HttpApp.appendPreResponseHandler((_request, response) => Effect.as(responseDue, response))
    return yield* Effect.ensuring(self, responseDue)
  })
