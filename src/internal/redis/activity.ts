import { Effect } from "effect"
import type { RefusalReason } from "../errors.js"

/**
 * What this process's store is doing and has done: acquisitions on their way (drain and closing
 * wait for them), slots granted, requests refused, whether it was shut down; and who waits for
 * a condition on these or on its leases (`until`), woken by `changed`.
 */
export class Activity {
  pending = 0
  acquired = 0
  readonly refused: Record<RefusalReason | "shutdown", number> = { user: 0, global: 0, waiting: 0, shutdown: 0 }
  isShutdown = false
  private readonly waiters = new Set<() => void>()

  /** Something a waiter of `until` may wait for changed. */
  changed(): void {
    for (const wake of this.waiters) wake()
  }

  /** Waits until `done()` holds, checked now and at each `changed`. */
  until(done: () => boolean): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (done()) return resume(Effect.void)
      const wake = () => {
        if (!done()) return
        this.waiters.delete(wake)
        resume(Effect.void)
      }
      this.waiters.add(wake)
      return Effect.sync(() => this.waiters.delete(wake))
    })
  }

  /** `effect`, counted as pending until it ends. */
  track<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> {
    return Effect.suspend(() => {
      this.pending++
      return Effect.ensuring(
        effect,
        Effect.sync(() => {
          this.pending--
          this.changed()
        })
      )
    })
  }
}
