/** Tells one operation of a batch its answer (`ok`), or the error that failed the whole batch. */
export type Settle = (ok: boolean, value: unknown) => void

/** Operations queued to go out together, as one call, in the order they were added. */
export interface Batcher {
  /** Queues an operation (its arguments, flat); it goes out on the next turn of the event loop, or with `flush`. */
  readonly add: (args: ReadonlyArray<string | number>, settle: Settle) => void
  /** Sends what is queued now: a call that must follow those operations on the connection goes after this. */
  readonly flush: () => void
}

/**
 * Gathers the operations added within one turn of the event loop (at most `maxOps`) into one
 * `send`, whose answer must hold one entry per operation, in order (an `Error` fails its
 * operation alone); anything else fails them all.
 */
export const makeBatcher = (send: (args: Array<string | number>) => Promise<unknown>, maxOps: number): Batcher => {
  let queue: Array<{ readonly args: ReadonlyArray<string | number>; readonly settle: Settle }> = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (queue.length === 0) return
    const ops = queue
    queue = []
    const args: Array<string | number> = []
    for (const op of ops) for (const arg of op.args) args.push(arg)
    const failAll = (error: unknown) => {
      for (const op of ops) op.settle(false, error)
    }
    send(args).then((answers) => {
      if (!Array.isArray(answers) || answers.length !== ops.length) {
        return failAll(new Error(`Redis answered a batch of ${ops.length} with ${JSON.stringify(answers)}`))
      }
      ops.forEach((op, i) => op.settle(!(answers[i] instanceof Error), answers[i]))
    }, failAll)
  }
  return {
    add: (args, settle) => {
      queue.push({ args, settle })
      if (queue.length >= maxOps) flush()
      else if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    flush
  }
}
