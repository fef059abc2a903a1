/** A timer for the earliest of many deadlines (milliseconds of `performance.now()`). */
export interface Watchdog {
  /** Makes sure the watchdog fires by `at`. */
  readonly arm: (at: number) => void
  readonly stop: () => void
}

/**
 * One timer for many deadlines: when it fires, `expire(now)` ends what is due and returns the
 * next deadline, if any. Arming for a later deadline than the one armed changes nothing, so
 * adding an entry costs a comparison; entries whose deadline moved later are looked at again
 * only when the earliest armed one comes. After a stall of this process Node runs due timers
 * before it reads the sockets: the watchdog looks once the answers already received (renewals
 * that moved deadlines) have been read.
 */
export const makeWatchdog = (expire: (now: number) => number | undefined): Watchdog => {
  let timer: ReturnType<typeof setTimeout> | undefined
  let armedFor = Infinity
  const fire = () => {
    timer = undefined
    armedFor = Infinity
    const next = expire(performance.now())
    if (next !== undefined) arm(next)
  }
  const arm = (at: number) => {
    if (at >= armedFor) return
    if (timer !== undefined) clearTimeout(timer)
    armedFor = at
    timer = setTimeout(() => setImmediate(fire), Math.max(0, at - performance.now()))
    timer.unref() // a holder keeps its process up; the watchdog alone should not
  }
  return {
    arm,
    stop: () => {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      armedFor = -Infinity // never again
    }
  }
}
