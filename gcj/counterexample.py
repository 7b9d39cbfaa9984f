"""Paper 001's analytic counter-example (§2, Fig. 2, App. D): a conditional generative model that is
as close to the data as one likes in both KL directions, yet about half of the points can be moved
by at most Δ into a wrong, confident and *more* likely decision.

In dimension d, with U(a, b) the uniform density on the annulus {a <= ||x|| <= b}:

    p(x|0) = λ1 U(0, 1) + (1 - λ1) U(1, 1 + Δ)      q(x|0) = U(0, 1 + Δ)
    p(x|1) = λ2 U(0, 1) + (1 - λ2) U(2, 3)          q(x|1) = p(x|1)

with p(y) = q(y) = 1/2. The attack moves a class-0 point of the shell 1 <= ||x|| <= 1 + Δ radially
just inside the unit sphere (a step of at most Δ): q then prefers class 1 (if λ2 (1 + Δ)^d >> 1)
while q(x) only grows. Everything here is exact (log-densities, samplers, the KL divergences of
App. D in closed form), in log space so that any d works, and ``log_p`` / ``log_q`` are
``[batch, classes]`` class log-likelihoods like every gcj family's.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, logsumexp

from gcj.errors import UserError


def log_ball_volume(d: int) -> float:
    """log C_d, the volume of the unit ball in R^d."""
    return 0.5 * d * math.log(math.pi) - float(gammaln(d / 2 + 1))


def log_annulus_volume(a: float, b: float, d: int) -> float:
    """log of the volume of {a <= ||x|| <= b} in R^d: log C_d + d log b + log(1 - (a/b)^d)."""
    return log_ball_volume(d) + d * math.log(b) + math.log1p(-math.exp(d * math.log(a / b))) \
        if a > 0 else log_ball_volume(d) + d * math.log(b)


def annulus_log_density(r: jax.Array, a: float, b: float, d: int, rtol: float = 1e-5) -> jax.Array:
    """log U(a, b) at points of norm ``r``: -log vol inside the annulus, -inf outside. ``rtol``:
    the edges widened by this relative amount (float32 norms of exact draws land a rounding
    error outside; the change is of measure ~rtol)."""
    inside = (r >= a * (1 - rtol)) & (r <= b * (1 + rtol))
    return jnp.where(inside, -log_annulus_volume(a, b, d), -jnp.inf)


def sample_annulus(key: jax.Array, n: int, a: float, b: float, d: int) -> jax.Array:
    """``n`` exact draws of U(a, b) in R^d: a uniform direction times r with r^d uniform on
    [a^d, b^d] (written as r = b ((a/b)^d + u (1 - (a/b)^d))^(1/d), exact for any d)."""
    k_dir, k_r = jax.random.split(key)
    z = jax.random.normal(k_dir, (n, d))
    u = jax.random.uniform(k_r, (n, 1))
    low = (a / b) ** d
    r = b * (low + u * (1.0 - low)) ** (1.0 / d)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True) * r


@dataclasses.dataclass(frozen=True)
class CounterExample:
    """The data p and model q of paper 001 eqs. (2)-(3) in dimension ``d``."""
    d: int
    delta: float
    lam1: float
    lam2: float

    def _components(self, which: str):
        """(weight, a, b) per class: p's or q's mixtures."""
        dl, l1, l2 = self.delta, self.lam1, self.lam2
        class1 = ((l2, 0.0, 1.0), (1 - l2, 2.0, 3.0))
        if which == "p":
            return (((l1, 0.0, 1.0), (1 - l1, 1.0, 1 + dl)), class1)
        return (((1.0, 0.0, 1 + dl),), class1)

    def _log(self, which: str, x: jax.Array) -> jax.Array:
        r = jnp.linalg.norm(x, axis=-1)
        cols = []
        for comps in self._components(which):
            terms = [jnp.log(w) + annulus_log_density(r, a, b, self.d) for w, a, b in comps if w > 0]
            cols.append(logsumexp(jnp.stack(terms), axis=0))
        return jnp.stack(cols, -1)

    def log_p(self, x: jax.Array) -> jax.Array:
        """log p(x|y) ``[N, 2]`` (the data)."""
        return self._log("p", x)

    def log_q(self, x: jax.Array) -> jax.Array:
        """log q(x|y) ``[N, 2]`` (the model)."""
        return self._log("q", x)

    def sample(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` exact draws (x [n, d], y [n]) of p(x, y), p(y) = 1/2."""
        k_y, k_c, k_x = jax.random.split(key, 3)
        y = jax.random.bernoulli(k_y, 0.5, (n,)).astype(jnp.int32)
        comps = self._components("p")
        u = jax.random.uniform(k_c, (n,))
        x = jnp.zeros((n, self.d))
        for label in (0, 1):
            (w0, a0, b0), (_, a1, b1) = comps[label]
            inner = sample_annulus(jax.random.fold_in(k_x, 2 * label), n, a0, b0, self.d)
            outer = sample_annulus(jax.random.fold_in(k_x, 2 * label + 1), n, a1, b1, self.d)
            pick = jnp.where((u < w0)[:, None], inner, outer)
            x = jnp.where((y == label)[:, None], pick, x)
        return x, y

    def kl(self) -> dict:
        """KL(p(x,y) || q(x,y)) and KL(q || p) in closed form (App. D: only class 0 differs, and
        p(y) = q(y) = 1/2, so each is half of the class-0 divergence)."""
        d, l1 = self.d, self.lam1
        log_v = d * math.log1p(self.delta)               # log (1 + Δ)^d
        # p(x|0) / q(x|0) is λ1 (1+Δ)^d in the ball and (1-λ1)(1+Δ)^d / ((1+Δ)^d - 1) in the shell
        # (the latter as (1-λ1) / (1 - (1+Δ)^-d): no difference of large logs, exact for any d)
        log_ratio_ball = math.log(l1) + log_v
        log_ratio_shell = math.log1p(-l1) - math.log(-math.expm1(-log_v))
        pq = l1 * log_ratio_ball + (1 - l1) * log_ratio_shell
        q_ball = math.exp(-log_v)                          # q(||x|| <= 1 | 0)
        qp = -(q_ball * log_ratio_ball + (1 - q_ball) * log_ratio_shell)
        return dict(kl_pq=0.5 * pq, kl_qp=0.5 * qp)

    @classmethod
    def from_proposition(cls, d: int, delta: float, eps: float, conf: float) -> "CounterExample":
        """Paper 001 Prop. 1's choice: λ2 = λ1 conf / (1 - conf) so that p is confident (p(0|x) =
        1 - conf in the ball), λ1 between the bounds ((1 - conf) / conf)^2 / (1 + Δ)^d (q's wrong
        decision in the ball is confident) and eps / (d log(1 + Δ)) (KL(p||q) < eps), at their
        geometric mean; ValueError if d is too small for both (the bounds cross)."""
        log_low = 2 * math.log((1 - conf) / conf) - d * math.log1p(delta)
        log_high = math.log(eps / (d * math.log1p(delta)))
        log_high = min(log_high, math.log(eps / 2))  # (and λ1 < 1 - exp(-eps): KL(q||p) < eps)
        if log_low >= log_high:
            raise UserError(f"no valid λ1 in dimension {d}: need ((1-δ)/δ)² (1+Δ)^-d < "
                            f"min(ε / (d log(1+Δ)), ε/2); take d larger")
        lam1 = math.exp(0.5 * (log_low + log_high))
        return cls(d, delta, lam1, lam1 * conf / (1 - conf))


def radial_attack(x: jax.Array, margin: float = 1e-6) -> jax.Array:
    """Every point outside the unit sphere moved along its ray to norm 1 - ``margin`` (a step of
    ||x|| - 1 + margin); points inside stay."""
    r = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jnp.where(r > 1.0, x * (1.0 - margin) / r, x)


def attack_report(log_q, x: jax.Array, y: jax.Array, delta: float, margin: float = 1e-6) -> dict:
    """The radial attack on the class-0 points of the shell, judged by the model ``log_q`` (any
    ``x -> [N, 2]`` class log-likelihoods): success = q now decides class 1, within distance Δ,
    and undetected = log q(x') >= log q(x) and >= the median log q(x) of the clean points (paper
    001 Prop. 1, conditions 4-5). ``wrong_confidence``: the mean q(1|x') of the fooled points
    (None when none is fooled)."""
    ll = log_q(x)
    log_qx = logsumexp(ll, axis=1) - math.log(2.0)
    median = float(jnp.median(log_qx))
    target = (y == 0) & (jnp.linalg.norm(x, axis=1) > 1.0)
    x_adv = radial_attack(x, margin)
    ll_adv = log_q(x_adv)
    log_qa = logsumexp(ll_adv, axis=1) - math.log(2.0)
    dist = jnp.linalg.norm(x_adv - x, axis=1)
    correct = ll.argmax(1) == y
    fooled = target & correct & (ll_adv.argmax(1) == 1) & (dist <= delta + margin)
    undetected = fooled & (log_qa >= log_qx) & (log_qa >= median)
    conf = jnp.exp(ll_adv[:, 1] - logsumexp(ll_adv, axis=1))
    n = len(y)
    return dict(accuracy=float(correct.mean()), fraction_attacked=float(fooled.sum() / n),
                fraction_undetected=float(undetected.sum() / n),
                wrong_confidence=float(conf[fooled].mean()) if bool(fooled.any()) else None,
                max_distance=float(jnp.max(jnp.where(fooled, dist, 0.0))))


def monte_carlo_kl(ce: CounterExample, key: jax.Array, n: int = 200_000) -> dict:
    """KL(p || q) by sampling p (a check of ``kl``; KL(q || p) would need q's samples of class 0)."""
    x, y = ce.sample(key, n)
    lp, lq = ce.log_p(x), ce.log_q(x)
    pick = lambda ll: jnp.take_along_axis(ll, y[:, None], 1)[:, 0]  # noqa: E731
    return dict(kl_pq=float(jnp.mean(pick(lp) - pick(lq))))


def table(dims, delta: float, eps: float, conf: float, key: jax.Array, n: int = 20_000) -> list[dict]:
    """Per d: the construction's λs, both KLs (closed form), and the attack on ``n`` samples."""
    rows = []
    for d in dims:
        ce = CounterExample.from_proposition(d, delta, eps, conf)
        x, y = ce.sample(jax.random.fold_in(key, d), n)
        rows.append(dict(d=d, lam1=ce.lam1, lam2=ce.lam2, **ce.kl(),
                         **attack_report(ce.log_q, x, y, delta)))
    return rows


__all__ = ["CounterExample", "annulus_log_density", "attack_report", "log_ball_volume",
           "monte_carlo_kl", "radial_attack", "sample_annulus", "table"]
