import { Clock, Context, DefaultServices, Effect, Schedule } from "effect"

/** Real time, whatever clock the test runs under (a TestClock would never move on its own). */
const liveClock = Context.get(DefaultServices.liveServices, Clock.Clock)

/**
 * Polls `read` until `done` holds, and fails with `what` if it has not after a few seconds. For
 * state another process or a Node callback changes after the event the test can await (a slot
 * is released just after the client has read the last byte of the response). It waits in real
 * time, also under `it.effect` and `it.scoped`, whose TestClock would never end a wait.
 */
export const eventually = <A, E, R>(
  what: string,
  read: Effect.Effect<A, E, R>,
  done: (a: A) => boolean
): Effect.Effect<A, E | string, R> =>
  read.pipe(
    Effect.filterOrFail(done, () => `not yet: ${what}`),
    Effect.retry(Schedule.spaced("10 millis")),
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => `never happened: ${what}` }),
    Effect.withClock(liveClock)
  )
