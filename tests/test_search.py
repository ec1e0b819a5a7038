"""Tests for hwgpt_jax.search: operators, the population algorithms, runner, bad input.

The fixed problem: the tiny space (44,226 architectures, enumerated here for the true front)
with `random_mlp_objective`, two conflicting synthetic objectives.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwgpt_jax.search import pareto
from hwgpt_jax.search.base import (
    Problem,
    duplicate_rows,
    mutate,
    mutate_one,
    uniform_crossover,
)
from hwgpt_jax.search.objectives import build_problem, parse_constraint, random_mlp_objective
from hwgpt_jax.search.registry import make_algorithm
from hwgpt_jax.search.runner import (
    hypervolume_curve,
    infeasibility_message,
    run_compiled,
    run_search,
)
from hwgpt_jax.space.arch import get_space

BUDGET = 2048
CONFIG = {"nsga2": {"population_size": 128}, "mo_regularized_evolution": {"population_size": 128},
          "random_search": {"batch_size": 64}, "local_search": {"batch_size": 64}}


def all_genes(space) -> np.ndarray:
    """Every architecture of `space` as canonical genes (brute force)."""
    lmax, rows = space.max_layers, []
    for embed, (depth_index, depth), bias in itertools.product(
            range(len(space.embed_dims)), enumerate(space.n_layers), range(2)):
        per_layer = np.array(list(itertools.product(
            range(len(space.n_heads)), range(len(space.mlp_ratios)), repeat=depth)))
        genes = np.zeros((len(per_layer), 3 + 2 * lmax), np.int32)
        genes[:, :3] = embed, depth_index, bias
        genes[:, 3:3 + depth] = per_layer[:, 0::2]
        genes[:, 3 + lmax:3 + lmax + depth] = per_layer[:, 1::2]
        rows.append(genes)
    return np.concatenate(rows)


@pytest.fixture(scope="module")
def tiny():
    space = get_space("tiny")
    objective = random_mlp_objective(space, seed=0)
    genes = all_genes(space)
    assert len(genes) == space.size
    values = np.asarray(jax.jit(lambda g: objective(space.from_genes(g), None))(genes))
    lower, upper = values.min(0), values.max(0)
    true_hv = pareto.hypervolume(pareto.normalize_objectives(values, lower, upper), np.ones(2))
    return {"space": space, "problem": Problem(space, objective, 2), "values": values,
            "lower": lower, "upper": upper, "true_hv": true_hv, "genes": genes}


@pytest.fixture(scope="module")
def results(tiny):
    out = {}
    for name in CONFIG:  # the GP-based ones: tests/test_search_bayesopt.py
        algorithm = make_algorithm(name, tiny["space"], 2, **CONFIG[name])
        _, result = run_compiled(algorithm, tiny["problem"], BUDGET, jax.random.key(0))
        _, curve = hypervolume_curve(result, tiny["lower"], tiny["upper"])
        out[name] = (algorithm, result, curve / tiny["true_hv"])
    return out


# ---------------------------------------------------------------------------------------------
# Operators


def test_mutation_changes_genes_to_other_valid_choices():
    cardinality = (3, 1, 2, 4)
    genes = jnp.zeros((20_000, 4), jnp.int32)
    mutated = np.asarray(mutate(jax.random.key(0), genes, cardinality, 0.3))
    assert np.all(mutated < np.array(cardinality)) and np.all(mutated >= 0)
    assert np.all(mutated[:, 1] == 0)  # a gene with one choice never changes
    changed = (mutated != 0).mean(0)
    np.testing.assert_allclose(changed[[0, 2, 3]], 0.3, atol=0.02)
    # Uniform over the *other* choices: 1, 2, 3 equally often for the 4-choice gene.
    counts = np.bincount(mutated[:, 3], minlength=4)[1:]
    assert counts.min() > 0.9 * counts.max()
    one = np.asarray(mutate_one(jax.random.key(1), genes, cardinality))
    assert np.all((one != 0).sum(1) == 1) and np.all(one[:, 1] == 0)


def test_uniform_crossover_takes_each_gene_from_a_parent():
    first = jnp.zeros((1000, 7), jnp.int32)
    second = jnp.ones((1000, 7), jnp.int32)
    child = np.asarray(uniform_crossover(jax.random.key(0), first, second, 0.5))
    assert set(np.unique(child)) == {0, 1}
    assert abs(child.mean() - 0.5) < 0.03


# ---------------------------------------------------------------------------------------------
# Algorithms on the fixed problem


@pytest.mark.parametrize("scale", ["tiny", "l"])
def test_duplicate_rows_equals_a_numpy_reference(scale):
    """Copies are flagged after their first occurrence; l packs 75 genes into several words."""
    space = get_space(scale)
    card = tuple(int(c) for c in space.gene_cardinality)
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, card, size=(300, len(card)))
    rows = distinct[rng.integers(0, 300, size=1000)]  # many repeats, in random order
    rows[::7, -1] = (rows[::7, -1] + 1) % card[-1]  # differ in the last gene (last word) only
    _, first = np.unique(rows, axis=0, return_index=True)
    expected = np.ones(len(rows), bool)
    expected[first] = False
    got = np.asarray(jax.jit(duplicate_rows, static_argnums=1)(jnp.asarray(rows), card))
    np.testing.assert_array_equal(got, expected)


def test_true_front_is_nontrivial(tiny):
    assert 0.3 < tiny["true_hv"] < 0.9  # objectives conflict: no single best architecture


def test_nsga2_reaches_99_percent_of_true_hypervolume(results):
    assert results["nsga2"][2][-1] >= 0.99


@pytest.mark.parametrize("name", sorted(CONFIG))
def test_each_algorithm_beats_its_initial_random_population(results, name):
    _, result, relative_hv = results[name]
    assert len(result.genes) == BUDGET
    assert relative_hv[-1] > relative_hv[0] + 0.05
    assert relative_hv[-1] <= 1.0 + 1e-6  # never above the brute-force optimum


@pytest.mark.parametrize("name", ["nsga2", "mo_regularized_evolution", "local_search"])
def test_guided_algorithms_beat_random_search_at_equal_budget(results, name):
    assert results[name][2][-1] > results["random_search"][2][-1]


def test_pareto_set_is_exactly_the_non_dominated_evaluations(results, tiny):
    result = results["local_search"][1]
    mask = result.pareto_mask()
    front = result.objectives[mask]
    for point in front:  # no evaluated point dominates a Pareto member
        dominated = np.all(result.objectives <= point, 1) & np.any(result.objectives < point, 1)
        assert not dominated.any()
    assert len(np.unique(result.genes[mask], axis=0)) == mask.sum()


def test_runs_are_deterministic_given_the_key(results, tiny):
    algorithm, first, _ = results["nsga2"]
    _, again = run_compiled(algorithm, tiny["problem"], BUDGET, jax.random.key(0))
    np.testing.assert_array_equal(first.genes, again.genes)
    np.testing.assert_array_equal(first.objectives, again.objectives)


def test_python_loop_runner_matches_population_semantics(tiny):
    algorithm = make_algorithm("random_search", tiny["space"], 2, batch_size=64)
    seen = []
    result = run_search(algorithm, tiny["problem"], 200, jax.random.key(1), progress=seen.append)
    assert seen == [64, 128, 192] and len(result.genes) == 192  # whole batches only
    objectives, _ = tiny["problem"].evaluate(jnp.asarray(result.genes), jax.random.key(0))
    np.testing.assert_allclose(result.objectives, np.asarray(objectives), rtol=1e-5, atol=1e-5)


def test_compiled_runner_reports_every_batch_from_inside_the_scan(tiny):
    algorithm = make_algorithm("random_search", tiny["space"], 2, batch_size=64)
    seen = []
    _, result = run_compiled(algorithm, tiny["problem"], 200, jax.random.key(1),
                             progress=seen.append)
    assert seen == [64, 128, 192] and len(result.genes) == 192
    _, again = run_compiled(algorithm, tiny["problem"], 200, jax.random.key(1))
    np.testing.assert_array_equal(result.genes, again.genes)  # reporting changes nothing


def test_equal_configurations_share_compiled_code(tiny):
    """Algorithms built with the same options are equal, so a second run (another study, or a
    rebuilt object) reuses the compiled ask/tell and the problem's compiled evaluate."""
    from hwgpt_jax.search.base import SearchAlgorithm
    from hwgpt_jax.search.runner import evaluate_genes

    space = tiny["space"]
    first = make_algorithm("nsga2", space, 2, population_size=32)
    second = make_algorithm("nsga2", space, 2, population_size=32)
    assert first == second and hash(first) == hash(second)
    assert first != make_algorithm("nsga2", space, 2, population_size=64)
    assert first != make_algorithm("nsga2", space, 3, population_size=32)
    run_search(first, tiny["problem"], 64, jax.random.key(0))
    sizes = SearchAlgorithm.ask._cache_size(), evaluate_genes._cache_size()
    run_search(second, tiny["problem"], 64, jax.random.key(1))
    assert (SearchAlgorithm.ask._cache_size(), evaluate_genes._cache_size()) == sizes


# ---------------------------------------------------------------------------------------------
# Constraints


def test_constrained_nsga2_keeps_feasible_front(tiny):
    space = tiny["space"]
    problem = build_problem(space, ["params", "flops"], ["params<=6e6"])
    algorithm = make_algorithm("nsga2", space, 2, n_constraints=1, population_size=64)
    state, result = run_compiled(algorithm, problem, 640, jax.random.key(2))
    assert result.feasible.any()
    assert np.all(np.asarray(state.member_violation) == 0)  # the final population: all feasible
    params = result.objectives[result.pareto_mask(), 0]
    assert params.max() <= 6e6


def test_unsatisfiable_constraint_gives_a_clear_message(tiny):
    space = tiny["space"]
    problem = build_problem(space, ["params", "flops"], ["params<=10"])
    algorithm = make_algorithm("random_search", space, 2, n_constraints=1, batch_size=64)
    result = run_search(algorithm, problem, 64, jax.random.key(0))
    assert not result.feasible.any() and result.pareto_mask().sum() == 0
    message = infeasibility_message(result, problem)
    assert "no evaluated architecture satisfies" in message and "params" in message
    _, curve = hypervolume_curve(result, np.zeros(2), np.ones(2))
    assert np.all(curve == 0)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_clear_errors(tiny):
    space = tiny["space"]
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        make_algorithm("nope", space, 2)
    with pytest.raises(ValueError, match=r"unknown objective\(s\) \['perplexity'\]"):
        build_problem(space, ["perplexity", "params"])
    with pytest.raises(ValueError, match="not of the form"):
        parse_constraint("latency:a100 < 20")
    assert parse_constraint("latency:a100<=20") == ("latency:a100", "<=", 20.0)
    algorithm = make_algorithm("nsga2", space, 2, population_size=64)
    with pytest.raises(ValueError, match="budget 10 is smaller"):
        run_search(algorithm, tiny["problem"], 10, jax.random.key(0))
    with pytest.raises(ValueError, match="population_size"):
        make_algorithm("mo_regularized_evolution", space, 2, population_size=64, batch_size=48)


def test_a_run_larger_than_memory_is_refused_before_it_starts(tiny, monkeypatch):
    from hwgpt_jax.search import runner

    monkeypatch.setattr(runner, "available_memory_bytes", lambda device: 1000)
    algorithm = make_algorithm("random_search", tiny["space"], 2, batch_size=8)
    with pytest.raises(ValueError, match=r"random_search with 8 candidates x 2 steps needs "
                                         r"about .* GiB .* but cpu has 0.0 GiB free") as error:
        run_compiled(algorithm, tiny["problem"], 16, jax.random.key(0))
    assert "\n" not in str(error.value)
