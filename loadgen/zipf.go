package loadgen

import (
	"fmt"
	"math"
)

// Zipf draws ranks 0..n-1 with P(rank i) proportional to 1/(i+1)^theta, by the method of Gray et al.,
// "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD 1994), the generator YCSB uses.
// It exists because math/rand/v2's Zipf needs an exponent above 1, while YCSB's skew is theta = 0.99.
// Ranks 0 and 1 are exact; the tail comes from a closed-form approximation of the inverse CDF, so one
// draw costs one pow, however many keys there are. Setup sums n terms once (zeta(n, theta)).
// Immutable after construction: safe to share; the randomness comes from the caller.
type Zipf struct {
	n      uint64
	theta  float64
	alpha  float64 // 1 / (1 - theta)
	zetaN  float64 // sum over i = 1..n of 1/i^theta
	eta    float64
	oneCut float64 // 1 + 0.5^theta: below it (scaled by zetaN) the draw is rank 1
}

// NewZipf prepares a generator over n ranks with exponent theta in (0, 1).
func NewZipf(n uint64, theta float64) (*Zipf, error) {
	if !(theta > 0 && theta < 1) {
		return nil, fmt.Errorf("%w: got %v", ErrZipfTheta, theta)
	}
	if n < 2 {
		return nil, fmt.Errorf("%w: zipf needs at least 2 keys, got %d", ErrBadConfig, n)
	}
	z := &Zipf{n: n, theta: theta, alpha: 1 / (1 - theta), zetaN: zeta(n, theta)}
	zeta2 := 1 + math.Pow(0.5, theta)
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/z.zetaN)
	z.oneCut = zeta2
	return z, nil
}

// zeta is the generalized harmonic number H(n, theta), summed from the small terms up so that the
// float rounding error stays small for large n.
func zeta(n uint64, theta float64) float64 {
	var sum float64
	for i := n; i >= 1; i-- {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

// Rank maps u, uniform in [0, 1), to a rank in [0, n).
func (z *Zipf) Rank(u float64) uint64 {
	uz := u * z.zetaN
	if uz < 1 {
		return 0
	}
	if uz < z.oneCut {
		return 1
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if r >= z.n {
		r = z.n - 1
	}
	return r
}

// Prob is the exact probability of rank i under the Zipf law the generator approximates; tests and
// reports compare against it.
func (z *Zipf) Prob(i uint64) float64 {
	return 1 / math.Pow(float64(i+1), z.theta) / z.zetaN
}
