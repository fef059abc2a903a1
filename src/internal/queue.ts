import { List } from "effect"

/**
 * A persistent first-in first-out queue: two immutable lists, the front in order and the back
 * reversed. Push and pop take amortized O(1) (the back is reversed into the front once for
 * every element that goes through), and the front is non-empty whenever the queue is, so the
 * first element is read in O(1).
 */
export interface Queue<A> {
  readonly front: List.List<A>
  readonly back: List.List<A>
}

/** The empty queue. */
export const empty: Queue<never> = { front: List.empty(), back: List.empty() }

const make = <A>(front: List.List<A>, back: List.List<A>): Queue<A> =>
  List.isNil(front) && List.isCons(back) ? { front: List.reverse(back), back: List.empty() } : { front, back }

/** `queue` with `a` at its end. */
export const push = <A>(queue: Queue<A>, a: A): Queue<A> => make(queue.front, List.cons(a, queue.back))

/** The first element, if any. */
export const first = <A>(queue: Queue<A>): A | undefined => (List.isCons(queue.front) ? queue.front.head : undefined)

/** `queue` without its first element. */
export const pop = <A>(queue: Queue<A>): Queue<A> =>
  List.isCons(queue.front) ? make(queue.front.tail, queue.back) : queue

/** Whether the queue is empty. */
export const isEmpty = <A>(queue: Queue<A>): boolean => List.isNil(queue.front)

/** Every element, first to last. */
export const toArray = <A>(queue: Queue<A>): Array<A> => [
  ...List.toArray(queue.front),
  ...List.toArray(List.reverse(queue.back))
]
