import { Effect } from "effect"

/** A sleep of real time that `wake` cuts short. */
export interface Alarm {
  readonly sleep: (millis: number) => Effect.Effect<void>
  /** Ends the sleep under way, or, between sleeps, makes the next one end at once. */
  readonly wake: () => void
}

/** An alarm: the renewal rounds' clock, which a reconnection or an answer after give-backs rings. */
export const makeAlarm = (): Alarm => {
  let rung = false
  let ring = () => {
    rung = true
  }
  const sleep = (millis: number) =>
    Effect.async<void>((resume) => {
      if (rung || millis <= 0) {
        rung = false
        return resume(Effect.void)
      }
      const timer = setTimeout(done, millis)
      function done() {
        clearTimeout(timer)
        ring = () => (rung = true)
        resume(Effect.void)
      }
      ring = done
      return Effect.sync(() => clearTimeout(timer))
    })
  return { sleep, wake: () => ring() }
}
