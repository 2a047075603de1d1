"""Each method's new idea can be lifted into another codebase: its paper functions use only torch, math,
builtins and functions/classes of their own file that obey the same rule (never `common`, a config, or a
module-level constant). Checked from the compiled source (every global each one loads, recursively), then
run from the collected source alone in a fresh namespace and compared with the imported function."""
from __future__ import annotations
import __future__

import builtins
import dis
import importlib
import inspect
import math
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

PAPER_FUNCTIONS = {
    "edd_darts": ("sn_softmax", "ets_temperatures", "edd_decay", "edd_temperature", "mean_entropy"),
    "aer_darts": ("architecture_entropy", "aer_coefficient"),
    "sp_darts": ("tempered_softmax", "mixing_probability", "draw_phi"),
    "sa_darts": ("sa_loss", "sa_coefficient", "beta_loss"),
}
_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}
_FLAGS = __future__.annotations.compiler_flag  # the method files' annotations are strings: never loaded


class NotLiftable(AssertionError):
    pass


def _source(obj: object) -> str:
    return textwrap.dedent(inspect.getsource(obj))


def _global_loads(obj: object) -> set[str]:
    """Every name `obj`'s source (decorators, defaults, bases, bodies, nested code) loads from the module or
    builtins; names the snippet binds itself (a class body's methods, the def's own name) are left out."""
    top = compile(_source(obj), f"<{obj.__qualname__}>", "exec", flags=_FLAGS, dont_inherit=True)
    loads: set[str] = set()

    def walk(code: types.CodeType, is_class_body: bool) -> None:
        stored = {i.argval for i in dis.get_instructions(code) if i.opname == "STORE_NAME"} if is_class_body else set()
        for ins in dis.get_instructions(code):
            if ins.opname in _LOADS and ins.argval not in stored and not (is_class_body and ins.argval == "__name__"):
                loads.add(ins.argval)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const, is_class_body=const.co_name == getattr(obj, "__name__", None) and inspect.isclass(obj))

    walk(top, is_class_body=False)
    return loads - {obj.__name__}


def _allowed_external(value: object) -> bool:
    """torch (any of its modules or objects) or math."""
    if isinstance(value, types.ModuleType):
        name = value.__name__
    else:
        name = getattr(value, "__module__", None) or ""
    return name in ("math", "torch") or name.startswith("torch.")


def resolve(fn: object, module: types.ModuleType, seen: dict[str, object] | None = None,
            externals: dict[str, object] | None = None, path: str = "") -> tuple[dict[str, object], dict[str, object]]:
    """(same-file functions/classes `fn` needs, incl. itself; the torch/math names they load). Raises
    NotLiftable naming the first global that is none of torch, math, a builtin or a same-file
    function/class obeying the rule, and the chain of functions that reached it."""
    seen = {} if seen is None else seen
    externals = {} if externals is None else externals
    path = f"{path} → {fn.__name__}" if path else fn.__name__
    seen[fn.__name__] = fn
    for name in sorted(_global_loads(fn)):
        if name in module.__dict__:
            value = module.__dict__[name]
            if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == module.__name__:
                if name not in seen:
                    resolve(value, module, seen, externals, path)
            elif _allowed_external(value):
                externals[name] = value
            else:
                where = getattr(value, "__module__", None) or type(value).__name__
                raise NotLiftable(f"{module.__name__}.{path} uses the global {name!r} ({where}): "
                                  "not torch, math, a builtin or a function/class of its own file")
        elif hasattr(builtins, name):
            continue
        else:
            raise NotLiftable(f"{module.__name__}.{path} uses the global {name!r}, which its module does not define")
    return seen, externals


def lift(fn: object, module: types.ModuleType) -> dict[str, object]:
    """Exec the collected source alone, in a namespace holding only torch, math and the torch names it loads
    (what `import torch, math; from torch.nn import functional as F` gives a user), and return that namespace."""
    parts, externals = resolve(fn, module)
    namespace: dict[str, object] = {"__name__": "lifted", "torch": torch, "math": math}
    for name, value in externals.items():  # re-imported by name, not taken from the method's module
        if isinstance(value, types.ModuleType):
            namespace[name] = importlib.import_module(value.__name__)
        else:
            namespace[name] = getattr(importlib.import_module(value.__module__), value.__qualname__)
        assert namespace[name] is value
    # classes first (a function's body looks them up only when called), each in file order
    for obj in sorted(parts.values(), key=lambda o: (not inspect.isclass(o), inspect.getsourcelines(o)[1])):
        exec(compile(_source(obj), f"<lifted {obj.__name__}>", "exec", flags=_FLAGS, dont_inherit=True), namespace)
    return namespace


# --------------------------------------------------------------------------------- the rule, per function

@pytest.mark.parametrize("module_name,name", [(m, n) for m, names in PAPER_FUNCTIONS.items() for n in names])
def test_paper_function_uses_only_torch_math_and_its_own_file(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    parts, externals = resolve(getattr(module, name), module)  # raises NotLiftable with the offending name
    assert name in parts
    assert all(_allowed_external(v) for v in externals.values())


# --------------------------------------------------------------------------------- run from source alone

def _alphas(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"normal": torch.randn(14, 8, generator=g, dtype=torch.float64),
            "reduce": torch.randn(14, 8, generator=g, dtype=torch.float64)}


def _same(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _grad_check(imported, lifted, make_input, *args) -> None:
    """Value and gradient (the backward is part of the method, e.g. sn-softmax's Eq. 8) agree exactly."""
    x1, x2 = make_input(), make_input()
    for x in (x1, x2):
        x.requires_grad_(True)
    y1, y2 = imported(x1, *args), lifted(x2, *args)
    _same(y1.detach(), y2.detach())
    g = torch.randn(y1.shape, dtype=y1.dtype, generator=torch.Generator().manual_seed(1))
    (d1,), (d2,) = torch.autograd.grad(y1, [x1], g), torch.autograd.grad(y2, [x2], g)
    _same(d1, d2)


def test_edd_functions_run_from_source_alone() -> None:
    import edd_darts as m
    for name, argsets in {
        "ets_temperatures": [(3.99e-4, 1.0, 1e-3, 5), (4e-4, 2.0, 1e-7, 10), (1e-3, 0.5, 0.1, 0)],
        "edd_decay": [(0.0, 1.2, 0.06), (0.3, 0.9, 0.24, 0.7)],
        "edd_temperature": [(3.99e-4, math.exp(3.99e-4), 0, 0.0), (3.99e-4, 1.5, 7, 0.03)],
    }.items():
        lifted = lift(getattr(m, name), m)[name]
        for args in argsets:
            _same(getattr(m, name)(*args), lifted(*args))
    lifted = lift(m.mean_entropy, m)["mean_entropy"]
    for weights in (torch.softmax(_alphas(6)["normal"], -1), {k: torch.softmax(a / 1e-3, -1) for k, a in _alphas(7).items()}):
        for reduction in ("mean", "sum"):
            _same(m.mean_entropy(weights, reduction), lifted(weights, reduction))
    lifted = lift(m.sn_softmax, m)["sn_softmax"]
    for t, s, dim in ((1.0, 100.0, -1), (1e-3, 1e3, -1), (0.05, 4.0, 0)):
        _grad_check(m.sn_softmax, lifted, lambda: torch.randn(6, 5, dtype=torch.float64,
                                                              generator=torch.Generator().manual_seed(3)), t, s, dim)


def test_aer_functions_run_from_source_alone() -> None:
    import aer_darts as m
    lifted = lift(m.architecture_entropy, m)["architecture_entropy"]
    for seed, drop in ((0, None), (1, 0)):
        _same(m.architecture_entropy(_alphas(seed), drop), lifted(_alphas(seed), drop))
        _grad_check(m.architecture_entropy, lifted, lambda: _alphas(seed)["normal"].clone(), drop)
    lifted = lift(m.aer_coefficient, m)["aer_coefficient"]
    for args in ((0, 50), (25, 50), (49.5, 50, -0.1, 0.3), (3, 50, -0.2, 0.2, 15), (30, 50, -0.2, 0.2, 15)):
        _same(m.aer_coefficient(*args), lifted(*args))


def test_sp_functions_run_from_source_alone() -> None:
    import sp_darts as m
    lifted = lift(m.tempered_softmax, m)["tempered_softmax"]
    for t in (1.0, 1.1e-3, 4e-4):
        _grad_check(m.tempered_softmax, lifted, lambda: _alphas(2)["reduce"].clone(), t)
    lifted = lift(m.mixing_probability, m)["mixing_probability"]
    for args in ((0, 50, 0.0, 1.0, 15), (20, 50, 0.1, 0.9, 15), (49, 50, 0.0, 1.3, 0), (5, 5, 0.2, 0.4, 5)):
        _same(m.mixing_probability(*args), lifted(*args))
    lifted = lift(m.draw_phi, m)["draw_phi"]
    for n, p in ((1, 0.5), (97, 0.3), (20, 1.0)):
        _same(m.draw_phi(n, p, torch.Generator().manual_seed(n)), lifted(n, p, torch.Generator().manual_seed(n)))


def test_sa_functions_run_from_source_alone() -> None:
    import sa_darts as m
    for name, args in (("sa_loss", (0.4,)), ("sa_loss", (2.0, 0.0, 1 / math.sqrt(2))), ("sa_loss", (1.0, -0.5, 3.0)),
                       ("beta_loss", (0.5,))):
        lifted = lift(getattr(m, name), m)[name]
        alphas = _alphas(4)
        _same(getattr(m, name)(alphas, *args), lifted(alphas, *args))  # a dict of cell kinds
        _same(getattr(m, name)(list(alphas.values()), *args), lifted(list(alphas.values()), *args))
        _grad_check(getattr(m, name), lifted, lambda: _alphas(5)["normal"].clone(), *args)  # one tensor
    lifted = lift(m.sa_coefficient, m)["sa_coefficient"]
    for args in ((1,), (50,), (7, 2.5)):
        _same(m.sa_coefficient(*args), lifted(*args))


# --------------------------------------------------------------------------------- the check can fail

_OFFENDERS = '''
from __future__ import annotations

import math

import torch
from torch import Tensor

from common.search import softmax_weights

SCALE = 2.0


def clean(a: Tensor) -> Tensor:
    return torch.softmax(a, -1) * math.pi


def uses_common(alphas):
    return softmax_weights(alphas)


def uses_a_constant(a: Tensor) -> Tensor:
    return a * SCALE


def default_from_a_constant(a: Tensor, s: float = SCALE) -> Tensor:
    return a * s


def reaches_common_through_a_helper(a: Tensor) -> Tensor:
    return clean(a) + helper(a)


def helper(a):
    return sum(softmax_weights({"x": a}).values())


class Op(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * SCALE

    @staticmethod
    def backward(ctx, g):
        return g


def through_a_class(x):
    return Op.apply(x)


def undefined(x):
    return not_defined_anywhere(x)  # noqa: F821
'''


@pytest.fixture
def offenders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    path = tmp_path / "offenders_mod.py"
    path.write_text(_OFFENDERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "offenders_mod", raising=False)
    return importlib.import_module("offenders_mod")


@pytest.mark.parametrize("name,culprit", [
    ("uses_common", "'softmax_weights' (common.search)"),
    ("uses_a_constant", "'SCALE' (float)"),
    ("default_from_a_constant", "'SCALE' (float)"),
    ("reaches_common_through_a_helper", "reaches_common_through_a_helper → helper uses the global 'softmax_weights'"),
    ("through_a_class", "through_a_class → Op uses the global 'SCALE'"),
    ("undefined", "'not_defined_anywhere', which its module does not define"),
])
def test_a_function_outside_the_rule_is_rejected_by_name(offenders: types.ModuleType, name: str, culprit: str) -> None:
    with pytest.raises(NotLiftable) as err:
        resolve(getattr(offenders, name), offenders)
    assert culprit in str(err.value)


def test_a_clean_function_is_accepted_and_lifted(offenders: types.ModuleType) -> None:
    parts, externals = resolve(offenders.clean, offenders)
    assert set(parts) == {"clean"} and set(externals) == {"torch", "math"}
    a = torch.randn(3, 4, dtype=torch.float64)
    _same(lift(offenders.clean, offenders)["clean"](a), offenders.clean(a))


def test_a_method_file_function_that_imports_common_is_rejected() -> None:
    """edd_darts.expected_positive_alpha's default is common.supernet's ALPHA_INIT_STD: not liftable as is."""
    import edd_darts
    with pytest.raises(NotLiftable, match="'ALPHA_INIT_STD'"):
        resolve(edd_darts.expected_positive_alpha, edd_darts)
