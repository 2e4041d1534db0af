"""The methods, one module each (tf, tf_all, tf_top, dt, ilql, and the scorer ilql_scorer), and their registry
(`dorl.methods.registry`), which every other place reads. `from dorl import methods; methods.get(name, cfg)`."""

from dorl.methods.registry import BASE, REGISTRY, SCORERS, evaluated, get, method_class, names, relabelled

__all__ = ["BASE", "REGISTRY", "SCORERS", "evaluated", "get", "method_class", "names", "relabelled"]
