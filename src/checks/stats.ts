import jstat from "jstat";

export interface GoodnessOfFit {
  samples: number;
  chiSquare: number;
  degreesOfFreedom: number;
  pValue: number;
  /** max |observed − expected| / expected over the categories. */
  maxRelativeDeviation: number;
  /** Jain's fairness index of observed/expected shares: 1 is perfectly as promised, 1/n worst. */
  jainIndex: number;
  /** Smallest expected count: below ~5 the chi-square approximation is not to be trusted. */
  minExpected: number;
}

/**
 * Pearson's chi-square goodness of fit of counts against probabilities (which are normalised:
 * callers may pass the rules' probabilities as they are).
 */
export function goodnessOfFit(
  counts: readonly number[],
  probabilities: readonly number[],
): GoodnessOfFit {
  const n = counts.reduce((a, b) => a + b, 0);
  const total = probabilities.reduce((a, b) => a + b, 0);
  let chi = 0;
  let maxDev = 0;
  let minExpected = Number.POSITIVE_INFINITY;
  let sumShare = 0;
  let sumShare2 = 0;
  let k = 0;
  for (let i = 0; i < counts.length; i++) {
    const p = (probabilities[i] ?? 0) / (total || 1);
    if (p <= 0) continue;
    k++;
    const expected = n * p;
    const observed = counts[i] ?? 0;
    minExpected = Math.min(minExpected, expected);
    if (expected > 0) {
      chi += ((observed - expected) * (observed - expected)) / expected;
      maxDev = Math.max(maxDev, Math.abs(observed - expected) / expected);
      const share = observed / expected;
      sumShare += share;
      sumShare2 += share * share;
    }
  }
  const dof = Math.max(1, k - 1);
  const pValue = n === 0 || k < 2 ? 1 : 1 - jstat.jStat.chisquare.cdf(chi, dof);
  const jainIndex = sumShare2 === 0 ? 1 : (sumShare * sumShare) / (k * sumShare2);
  return {
    samples: n,
    chiSquare: chi,
    degreesOfFreedom: dof,
    pValue,
    maxRelativeDeviation: maxDev,
    jainIndex,
    minExpected: Number.isFinite(minExpected) ? minExpected : 0,
  };
}
