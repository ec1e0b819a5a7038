"""Multi-objective architecture search: ask/tell algorithms (one per module), the registry by
name (`registry.py`), problems (`objectives.py`), the runner (`runner.py`), Pareto ranking and
hypervolume. Import from the modules; this package file imports nothing, so importing
`hwgpt_jax.search.pareto` does not import every algorithm.

    from hwgpt_jax.search.objectives import build_problem
    from hwgpt_jax.search.registry import make_algorithm
    from hwgpt_jax.search.runner import run_compiled
    problem = build_problem(space, ["params", "flops"])
    algorithm = make_algorithm("nsga2", space, problem.n_objectives, population_size=256)
    state, result = run_compiled(algorithm, problem, budget=2560, key=jax.random.key(0))
"""
