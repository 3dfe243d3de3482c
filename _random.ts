/**
 * A small, fast, seeded pseudo-random number generator for policy stages (impairment, sampling)
 * whose decisions tests must be able to reproduce. Not for cryptography.
 *
 * The generator is xoshiro128** 1.1 by David Blackman and Sebastiano Vigna
 * (https://prng.di.unimi.it/xoshiro128starstar.c, public domain): 128 bits of state, period
 * 2^128 − 1, 32-bit output, only 32-bit integer arithmetic (`Math.imul`, shifts), so it is fast in
 * JavaScript without BigInt. Its four state words are filled from the 32-bit seed by SplitMix32
 * (a Weyl sequence with increment 0x9e3779b9, finalised by Chris Wellons' hash-prospector mixer
 * `x ^= x >>> 16; x *= 0x21f0aaad; x ^= x >>> 15; x *= 0x735a2d97; x ^= x >>> 15`), the seeding
 * method the xoshiro authors recommend. The mixer is a bijection, so distinct seeds give distinct
 * states and the state is never all zero.
 *
 * @module
 */

const UINT32_RANGE = 0x1_0000_0000;

/**
 * A fresh seed for {@linkcode Random} from `crypto.getRandomValues`, for callers that were not
 * given one. Report it (e.g. in a ready line) so that a run can be reproduced.
 *
 * @returns An integer in [0, 2^32).
 *
 * @example Seed a generator and keep the seed to report it
 * ```ts
 * import { Random, randomSeed } from "./_random.ts";
 *
 * const seed = randomSeed();
 * const random = new Random(seed);
 * console.log(`seed ${seed}: first draw ${random.next()}`);
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * A seeded xoshiro128** generator: the same seed always gives the same sequence.
 *
 * @example Two generators with one seed agree
 * ```ts
 * import { Random } from "./_random.ts";
 *
 * const a = new Random(42);
 * const b = new Random(42);
 * if (a.next() !== b.next() || a.nextUint32() !== b.nextUint32()) throw new Error("unreachable");
 * ```
 */
export class Random {
  /** The seed this generator was created with, as given. */
  readonly seed: number;
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /**
   * Creates a generator from a 32-bit seed.
   *
   * @param seed An integer in [0, 2^32), e.g. from {@linkcode randomSeed}.
   * @throws {RangeError} If the seed is not an integer in that range.
   *
   * @example
   * ```ts
   * import { Random } from "./_random.ts";
   *
   * const random = new Random(7);
   * const roll = 1 + Math.floor(random.next() * 6);
   * if (roll < 1 || roll > 6) throw new Error("unreachable");
   * ```
   */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= UINT32_RANGE) {
      throw new RangeError(
        `seed must be an integer between 0 and ${UINT32_RANGE - 1}, got ${String(seed)}`,
      );
    }
    this.seed = seed;
    let weyl = seed;
    const splitmix32 = (): number => {
      weyl = (weyl + 0x9e3779b9) >>> 0;
      let z = weyl;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.#s0 = splitmix32();
    this.#s1 = splitmix32();
    this.#s2 = splitmix32();
    this.#s3 = splitmix32();
  }

  /**
   * The next 32-bit output of xoshiro128**.
   *
   * @returns An integer in [0, 2^32).
   *
   * @example
   * ```ts
   * import { Random } from "./_random.ts";
   *
   * const word = new Random(1).nextUint32();
   * if (!Number.isInteger(word) || word < 0 || word > 0xffffffff) throw new Error("unreachable");
   * ```
   */
  nextUint32(): number {
    const s1 = this.#s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 = s1 ^ this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = (this.#s3 << 11) | (this.#s3 >>> 21);
    return result;
  }

  /**
   * The next number in [0, 1): one {@linkcode Random.nextUint32} output divided by 2^32, so it
   * has 32 bits of resolution and each call advances the generator exactly once.
   *
   * @returns A number `u` with `0 <= u < 1`.
   *
   * @example Drop about a fifth of the items
   * ```ts
   * import { Random } from "./_random.ts";
   *
   * const random = new Random(2024);
   * const kept = [1, 2, 3, 4, 5].filter(() => random.next() >= 0.2);
   * console.log(kept);
   * ```
   */
  next(): number {
    return this.nextUint32() / UINT32_RANGE;
  }
}
