import { Effect } from "effect"
import {
  effectContender,
  LIMIT,
  makeManager,
  sampleInterleaved,
  timingSampling,
  USERS,
  type Contender
} from "./harness.js"
import { describeSampling, num, ratioTarget, timingRow, type Benchmark } from "./report.js"

const SLOT = "`Effect.scoped(queue.slot(user))`"
const ACQUIRE_RELEASE = "`Effect.scoped(Effect.acquireRelease(Effect.void, () => Effect.void))`"
const SEMAPHORE_IN_SCOPE = "`Effect.scoped`, a semaphore permit taken with a finalizer"
const WITH_SLOT = "QueueManager `withSlot(user)` (no scope)"

/**
 * Benchmark 2: a slot taken with `slot` inside `Effect.scoped`, against a scope holding an
 * `acquireRelease` of nothing (Effect's own cost of a scoped resource).
 */
export const scopedSlot: Benchmark = {
  id: "scoped",
  rows: [SLOT, ACQUIRE_RELEASE, SEMAPHORE_IN_SCOPE, WITH_SLOT],
  run: async (quick) => {
    const queue = makeManager({ maxUserQueue: LIMIT })
    const semaphore = Effect.runSync(Effect.makeSemaphore(LIMIT))
    const permit = Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(semaphore.take(1)),
        Effect.addFinalizer(() => semaphore.release(1))
      )
    )
    const contenders: ReadonlyArray<Contender> = [
      effectContender(SLOT, (i) => Effect.scoped(queue.slot(i % USERS))),
      effectContender(ACQUIRE_RELEASE, () => Effect.scoped(Effect.acquireRelease(Effect.void, () => Effect.void))),
      effectContender(SEMAPHORE_IN_SCOPE, () => Effect.scoped(permit)),
      effectContender(WITH_SLOT, (i) => queue.withSlot(i % USERS)(Effect.void))
    ]
    const sampling = timingSampling(quick, 4_000)
    const samples = await sampleInterleaved(contenders, sampling)
    return {
      title: "2. `slot` under `Effect.scoped`: our cost over Effect's own scope",
      setup:
        `Reject mode, limit ${LIMIT} per user, ${num(USERS)} users in turn; each operation opens a scope, takes a slot ` +
        `in it and closes it. Peers: the same scope around an \`acquireRelease\` of nothing, and around a semaphore ` +
        `permit taken the sound way (\`uninterruptibleMask\`, \`take(1)\`, \`addFinalizer(release(1))\`); \`withSlot\`, ` +
        `which builds no scope, for scale. ` +
        describeSampling(sampling, "the `acquireRelease` of nothing"),
      header: ["contender", "median per operation", "vs `acquireRelease` of nothing"],
      rows: contenders.map((c) => timingRow(samples, c.name, ACQUIRE_RELEASE)),
      targets: [
        ratioTarget(
          "`Effect.scoped(slot)` vs `Effect.scoped(acquireRelease(void))`",
          samples,
          SLOT,
          ACQUIRE_RELEASE,
          1.3
        )
      ],
      notes: []
    }
  }
}
