r"""Minibatch training of fold-in `joint`: X and theta by optax on batches of columns, Y never stored.

Under the fold-in formulation the only global parameters are X (d, m) and theta; each column's
factors are the ridge solve y_i(X) = argmin_y sum_u c_ui (r_ui - x_u^T y)^2 + lam ||y||^2 of its
own column. Every part of the objective is then a sum over columns with global normalisers:

.. math::

    L = \rho \frac{\sum_i e_i(X) + \lambda \|X\|^2}{\sum_{ui} c_{ui}}
        + (1 - \rho) \Big( \frac{\sum_{i \in L} \omega_i \ell_i(X, \theta)}{\sum_{i \in L} \omega_i}
        + \text{agg\_l2} \cdot \text{penalty}(\theta) \Big)

with e_i = sum_u c_ui (r_ui - x_u^T y_i)^2 + lam ||y_i||^2. A batch B of columns gives the
estimate L_B with every column sum replaced by (n / |B|) sum_{i in B} and the normalisers
(sum C, the class counts behind omega, sum omega) of *all* columns (`Scale`): each batch of a
uniformly random permutation is an unbiased estimate of L and of its gradient in (X, theta),
and a batch of every column is L itself (`batch_objective`; a test checks the gradient against
`joint.objective`'s).

**The method.** `Config(method="joint", formulation="fold_in", options=(("batch_size", B),))`
turns joint into minibatch joint: each driver iteration is one *epoch*, a `lax.scan` over the
ceil(n / B) batches of a permutation of the columns drawn from the state's key (option
``shuffle``, default True), each an optax step on (X, theta) from the batch's closed-form Y.
`Config.max_iter` counts epochs. At the end of an epoch Y is folded in for every column (the
driver's history and the returned params are those of a full-batch fit), and early stopping is
joint's rule per epoch: the validation supervised loss (else the training loss), patience in
epochs, the best epoch's params returned. Options (validated by `check_options`):

* ``batch_size`` (int >= 1; above n, one batch of all n columns);
* ``schedule``: "plateau" (default: joint's reduce-on-plateau, fed the mean batch loss of each
  epoch through optax's ``accumulation_size``, patience `Config.patience // 2` epochs),
  "constant", or "cosine" (cosine decay from `Hparams.lr` to 0 over max_iter epochs);
* ``shuffle`` (bool, default True): a fresh keyed permutation every epoch, else column order.

With one batch of every column, no shuffle and the "plateau" schedule, an epoch is exactly one
step of full-batch fold-in joint (same optimizer, same plateau decisions, same early stopping),
up to the order of float sums. Free-Y joint and the ALS-type methods update per-column or
closed-form-in-all-columns parameters, so they need the full batch and refuse the option.

K-class problems train the same way: the batch's cross-entropy is the softmax one
(`losses.supervised_cross_entropy`) and `Scale.class_counts` holds the K global counts behind
the class weights (each class 1/K of the weight, as `losses.class_weights`).

`run_batches` is the jitted-anywhere core that the out-of-core path (`cfjax.stream`) calls on
blocks of columns read from disk.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cfjax import aggregators, losses, ridge
from cfjax.solvers.base import initial_params
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = [
    "SCHEDULES",
    "MinibatchState",
    "Scale",
    "Trainable",
    "batch_indices",
    "batch_objective",
    "batch_size",
    "check_options",
    "epoch",
    "init",
    "make_optimizer",
    "run_batches",
    "scale_of",
    "steps_per_epoch",
    "take_columns",
]

SCHEDULES = ("plateau", "constant", "cosine")


class Scale(NamedTuple):
    """The global normalisers of the objective, from every column (scalars).

    Attributes:
      n: the number of columns. confidence: sum of C over all cells.
      class_counts: (K,) training (labeled) columns of each class, for the class weights
        (binary: [negatives, positives], the rows of `Problem.class_indicators`).
    """

    n: jax.Array
    confidence: jax.Array
    class_counts: jax.Array


class Trainable(NamedTuple):
    """What the optimizer updates: the classifier factors and the aggregator (no Y)."""

    X: jax.Array
    theta: Any


class MinibatchState(NamedTuple):
    """joint's state with the shuffling key: `params` has Y folded in for every column after
    each epoch (in memory; (d, 0) out of core), `opt_state` is over `Trainable`."""

    params: Params
    opt_state: Any
    best_params: Params
    best_monitor: jax.Array
    bad_steps: jax.Array
    key: jax.Array


def batch_size(config: Config, n: int) -> int:
    """The batch of `config` for n columns (static): option ``batch_size``, at most n."""
    return max(1, min(int(config.option("batch_size")), int(n)))


def steps_per_epoch(config: Config, n: int) -> int:
    """ceil(n / batch): optimizer steps in one epoch over n columns (static)."""
    return math.ceil(int(n) / batch_size(config, n))


def check_options(config: Config) -> None:
    """Host-side validation of the minibatch options (ValueError naming the option)."""
    size = config.option("batch_size")
    if size is None:
        return
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"options batch_size: expected an int >= 1, got {size!r}")
    if config.formulation != "fold_in":
        raise ValueError(
            f"options batch_size: joint with formulation {config.formulation!r} needs the full batch "
            "(free Y is one parameter per column, so every step needs all of them); minibatch "
            "training needs formulation='fold_in'"
        )
    schedule = config.option("schedule", "plateau")
    if schedule not in SCHEDULES:
        raise ValueError(f"options schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if not isinstance(config.option("shuffle", True), bool):
        raise ValueError(f"options shuffle: expected a bool, got {config.option('shuffle')!r}")


def make_optimizer(hparams: Hparams, config: Config, steps: int) -> optax.GradientTransformationExtraArgs:
    """The optimizer of minibatch joint for `steps` batches per epoch (static); built from the
    traced `hparams.lr` inside the traced function, as joint's. `update` takes value=batch loss."""
    schedule = config.option("schedule", "plateau")
    lr: Any = hparams.lr
    if schedule == "cosine":
        lr = optax.cosine_decay_schedule(hparams.lr, decay_steps=max(config.max_iter * steps, 1))
    if config.optimizer == "adam":
        base = optax.adam(lr)
    elif config.optimizer == "adamw":
        base = optax.adamw(lr, weight_decay=1e-4)
    elif config.optimizer == "sgd":
        base = optax.sgd(lr, momentum=0.9)
    else:
        raise ValueError(f"config.optimizer: unknown {config.optimizer!r}; choose adam, adamw or sgd")
    if schedule != "plateau" or config.patience <= 0:
        return optax.with_extra_args_support(base)
    plateau = optax.contrib.reduce_on_plateau(
        factor=config.plateau_factor, patience=max(config.patience // 2, 1), rtol=1e-4, cooldown=0,
        accumulation_size=steps,  # decide on the epoch's mean batch loss
    )
    return optax.chain(base, plateau)


def scale_of(problem: Problem) -> Scale:
    """`Scale` of a (prepared) problem held in memory."""
    return Scale(n=jnp.asarray(problem.n_instances, problem.R.dtype), confidence=jnp.sum(problem.C),
                 class_counts=losses.class_counts(problem, problem.labeled))


def _omega(batch: Problem, scale: Scale, config: Config) -> tuple[jax.Array, jax.Array]:
    """(omega of the batch's training columns from the global class counts, sum of omega over
    all training columns): `losses.class_weights` with global counts."""
    counts = scale.class_counts
    if not config.class_weight:
        return batch.labeled.astype(batch.R.dtype), jnp.sum(counts)
    return (losses.class_weights(batch, batch.labeled, counts),
            jnp.sum(counts * losses.per_class_weights(counts)))


def batch_objective(
    trainable: Trainable, batch: Problem, count: jax.Array, scale: Scale, hparams: Hparams, config: Config
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(L_B, (recon_B, sup_B)): the unbiased estimate of the fold-in objective from a batch.

    Args:
      trainable: X (d, m) and theta. Traced.
      batch: the batch's columns (m, B) as a prepared `Problem`; padding columns have C = 0 and
        are neither labeled nor counted.
      count: the batch's real columns (scalar); the column sums are scaled by n / count.
      scale: the global normalisers (`Scale`). hparams: traced. config: static.
    """
    X = trainable.X
    Y = ridge.update_Y(X, batch.R, batch.C, hparams.lam, chunk_size=config.chunk_size)
    params = Params(X=X, Y=Y, theta=trainable.theta)
    factor = scale.n / jnp.maximum(count, 1).astype(batch.R.dtype)
    error = losses.weighted_squared_error(X, Y, batch.R, batch.C)
    recon = (factor * (error + hparams.lam * jnp.sum(Y**2)) + hparams.lam * jnp.sum(X**2)) / jnp.maximum(
        scale.confidence, 1e-30)
    agg = aggregators.get(config.aggregator)
    logits = aggregators.logits(params, config, observed=batch.observed, from_factors=True)
    omega, omega_total = _omega(batch, scale, config)
    ce = jnp.sum(omega * losses.supervised_cross_entropy(batch, logits, hparams.focal_gamma))
    sup = factor * ce / jnp.maximum(omega_total, 1e-30) + hparams.agg_l2 * aggregators.penalty(agg, params.theta)
    return hparams.rho * recon + (1.0 - hparams.rho) * sup, (recon, sup)


def take_columns(problem: Problem, index: jax.Array) -> Problem:
    """The columns `index` of `problem`; an index >= n gives a padding column (zeros: C = 0,
    unobserved, unlabeled)."""
    return jax.tree.map(lambda a: jnp.take(a, index, axis=a.ndim - 1, mode="fill", fill_value=0), problem)


def batch_indices(key: jax.Array, n: int, valid: jax.Array | int, size: int, shuffle: bool) -> jax.Array:
    """(ceil(n / size), size) column indices: the first `valid` columns (traced) in a keyed random
    order (or in order), then padding indices n. Columns >= `valid` are never drawn, so only the
    last batches hold padding and a batch of padding only is skipped (`run_batches`)."""
    steps = math.ceil(n / size)
    position = jnp.arange(n)
    if shuffle:
        rank = jnp.where(position < valid, jax.random.uniform(key, (n,)), 2.0)
        order = jnp.argsort(rank)
    else:
        order = position
    order = jnp.where(order < valid, order, n)
    return jnp.concatenate([order, jnp.full((steps * size - n,), n, order.dtype)]).reshape(steps, size)


def run_batches(
    trainable: Trainable, opt_state: Any, problem: Problem, index: jax.Array, scale: Scale, hparams: Hparams,
    config: Config, steps: int,
) -> tuple[Trainable, Any, jax.Array]:
    """One optax step per row of `index` (a `lax.scan`), returning (trainable, opt_state, the
    (rows, 3) batch [objective, recon, sup]). `steps` (static) is the optimizer's batches per epoch
    (its plateau accumulation). A batch whose indices are all padding leaves the state as it was."""
    optimizer = make_optimizer(hparams, config, steps)  # built from traced values, never static
    n = problem.n_instances

    def body(carry, idx):
        trainable, opt_state = carry
        batch = take_columns(problem, idx)
        count = jnp.sum(idx < n)
        (value, parts), grads = jax.value_and_grad(batch_objective, has_aux=True)(
            trainable, batch, count, scale, hparams, config)
        updates, new_opt = optimizer.update(grads, opt_state, trainable, value=value)
        new = optax.apply_updates(trainable, updates)
        keep = count == 0
        carry = jax.tree.map(lambda o, v: jnp.where(keep, o, v), (trainable, opt_state), (new, new_opt))
        return carry, jnp.stack([value, *parts])

    (trainable, opt_state), values = jax.lax.scan(body, (trainable, opt_state), index)
    return trainable, opt_state, values


def _fold_in(trainable: Trainable, problem: Problem, hparams: Hparams, config: Config) -> Params:
    Y = ridge.update_Y(trainable.X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    return Params(X=trainable.X, Y=Y, theta=trainable.theta)


def init(key: jax.Array, problem: Problem, hparams: Hparams, config: Config,
         params: Params | None = None) -> MinibatchState:
    """joint's start (SVD factors, Y folded in) with the optimizer over (X, theta) and the
    shuffling key (drawn from `key`, apart from the init's own draws)."""
    from cfjax.solvers.joint import monitored_loss

    params = initial_params(key, problem, hparams, config) if params is None else params
    params = _fold_in(Trainable(params.X, params.theta), problem, hparams, config)
    steps = steps_per_epoch(config, problem.n_instances)
    return MinibatchState(
        params=params,
        opt_state=make_optimizer(hparams, config, steps).init(Trainable(params.X, params.theta)),
        best_params=params,
        best_monitor=monitored_loss(params, problem, hparams, config),
        bad_steps=jnp.zeros((), jnp.int32),
        key=jax.random.fold_in(key, 2),
    )


def epoch(state: MinibatchState, problem: Problem, hparams: Hparams, config: Config) -> MinibatchState:
    """One epoch (joint's `step` under the batch_size option): the batches of a keyed permutation,
    then Y folded in for every column and joint's early-stopping bookkeeping on the epoch."""
    from cfjax.solvers.joint import track_best

    n = problem.n_instances
    size, steps = batch_size(config, n), steps_per_epoch(config, n)
    key, draw = jax.random.split(state.key)
    index = batch_indices(draw, n, n, size, config.option("shuffle", True))
    trainable, opt_state, _ = run_batches(Trainable(state.params.X, state.params.theta), state.opt_state, problem,
                                          index, scale_of(problem), hparams, config, steps)
    params = _fold_in(trainable, problem, hparams, config)
    return track_best(state, params, problem, hparams, config)._replace(opt_state=opt_state, key=key)
