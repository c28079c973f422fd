"""sgntk.conversions: our Surrogate equals each library's backward-pass derivative.

Reference formulas are re-typed from the libraries' released sources (snnTorch 1.0.0,
SpikingJelly 2.0.0, Norse 1.1.0 / 1.0.0, stork activations.py); their peak and area (scipy.quad)
give the dampening and sharpness of each row. The libraries' own autograd is compared in the
``interop`` tests at the end (``pip install -e ".[interop]"``, ``python -m pytest -m interop``;
not in the default run, and a failed import there is a failure, not a skip).
"""
import math

import numpy as np
import pytest
import scipy.integrate as si

from sgntk import conversions as cv
from sgntk import surrogates as sg


pytestmark = pytest.mark.usefixtures("x64")


def _sig(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _relu(z):
    return np.maximum(z, 0.0)


# (library, name) -> (reference dS/dx(x, **params) as in their source, non-default params)
REFERENCE = {
    # snnTorch 1.0.0 snntorch/surrogate.py
    ("snntorch", "fast_sigmoid"): (lambda x, slope=25: 1 / (slope * np.abs(x) + 1.0) ** 2,
                                   [dict(slope=5.0)]),
    ("snntorch", "atan"): (lambda x, alpha=2.0: alpha / 2 / (1 + (np.pi / 2 * alpha * x) ** 2),
                           [dict(alpha=7.5)]),
    ("snntorch", "sigmoid"): (lambda x, slope=25: slope * np.exp(-slope * x)
                              / (np.exp(-slope * x) + 1) ** 2, [dict(slope=3.0)]),
    ("snntorch", "straight_through_estimator"): (lambda x: np.ones_like(x), []),
    # SpikingJelly 2.0.0 activation_based/surrogate.py
    ("spikingjelly", "Sigmoid"): (lambda x, alpha=4.0: alpha * (1 - _sig(alpha * x))
                                  * _sig(alpha * x), [dict(alpha=10.0)]),
    ("spikingjelly", "ATan"): (lambda x, alpha=2.0: (alpha / 2)
                               / (1 + (math.pi / 2 * alpha * x) ** 2), [dict(alpha=0.3)]),
    ("spikingjelly", "PiecewiseQuadratic"): (
        lambda x, alpha=1.0: np.where(np.abs(x) > 1 / alpha, 0.0, -(alpha**2) * np.abs(x) + alpha),
        [dict(alpha=4.0)]),
    ("spikingjelly", "PiecewiseExp"): (lambda x, alpha=1.0: alpha / 2 * np.exp(-alpha * np.abs(x)),
                                       [dict(alpha=6.0)]),
    ("spikingjelly", "SoftSign"): (lambda x, alpha=2.0: 1 / (2 * alpha * (1 / alpha + np.abs(x)) ** 2),
                                   [dict(alpha=0.5)]),
    ("spikingjelly", "SuperSpike"): (lambda x, alpha=1.0: alpha / (np.abs(x) + 1.0) ** 2,
                                     [dict(alpha=3.0)]),
    ("spikingjelly", "Erf"): (lambda x, alpha=2.0: np.exp(-((x * alpha) ** 2)) * (alpha / math.sqrt(math.pi)),
                              [dict(alpha=0.7)]),
    ("spikingjelly", "QPseudoSpike"): (
        lambda x, alpha=2.0: (1 + 2 / (alpha - 1) * np.abs(x)) ** (-alpha),
        [dict(alpha=1.5), dict(alpha=8.0)]),
    ("spikingjelly", "Rect"): (lambda x, alpha=1.0: alpha * (np.abs(x) < 0.5 / alpha),
                               [dict(alpha=3.0)]),
    ("spikingjelly", "PiecewiseLeakyReLU"): (
        lambda x, w=1.0, c=0.01: np.where(np.abs(x) < w, 1 / (2 * w), c),
        [dict(c=0.0), dict(w=0.25, c=0.0)]),
    ("spikingjelly", "DeterministicPass"): (lambda x: np.ones_like(x), []),
    # Norse 1.1.0 norse/torch/functional/{threshold,superspike}.py (1.0.0 for version="1.0")
    ("norse", "super"): (
        lambda x, alpha=100.0, version="1.1": (
            1 / (np.abs(x) + 1.0) ** 2 if version >= "1.1" else 1 / (alpha * np.abs(x) + 1.0) ** 2),
        [dict(alpha=5.0), dict(alpha=5.0, version="1.0"), dict(version="1.0")]),
    ("norse", "triangle"): (lambda x, alpha=100.0: alpha * _relu(1 - np.abs(x)), [dict(alpha=0.3)]),
    ("norse", "tanh"): (lambda x, alpha=100.0: 1 - np.tanh(x * alpha) ** 2, [dict(alpha=2.0)]),
    ("norse", "logistic"): (lambda x, k=100.0: 1 - np.tanh(x * k) ** 2, [dict(k=1.5)]),
    ("norse", "heavi_erfc"): (lambda x, alpha=100.0: 2 * np.exp(-((alpha * x) ** 2)) / np.sqrt(np.pi),
                              [dict(alpha=1.0)]),
    # stork stork/activations.py (fmi-basel/stork)
    ("stork", "SuperSpike"): (lambda x, beta=20.0: 1 / (beta * np.abs(x) + 1.0) ** 2, [dict(beta=5.0)]),
    ("stork", "SuperSpike_asymptote"): (lambda x, beta=100.0: beta / (beta * np.abs(x) + 1) ** 2,
                                        [dict(beta=10.0)]),
    ("stork", "SuperSpike_rescaled"): (
        lambda x, beta=20.0: 1 / (beta * np.abs(x) + 1.0) ** 2 / (1 / ((beta + 1) ** 2)),
        [dict(beta=3.0)]),
    ("stork", "SigmoidSpike"): (lambda x, beta=100.0: _sig(beta * x) * (1.0 - _sig(beta * x)),
                                [dict(beta=4.0)]),
    ("stork", "EsserSpike"): (lambda x, beta=1.0: np.maximum(0.0, 1.0 - np.abs(beta * x)),
                              [dict(beta=2.5)]),
    ("stork", "CustomSpike:SuperSpike"): (lambda x, beta=10: 1 / (beta * np.abs(x) + 1) ** 2,
                                          [dict(beta=2.0)]),
    ("stork", "CustomSpike:sigmoid"): (lambda x, beta=10: beta * _sig(beta * x) * (1 - _sig(beta * x)),
                                       [dict(beta=2.0)]),
    ("stork", "CustomSpike:scaled_sigmoid"): (lambda x, beta=10: _sig(beta * x) * (1 - _sig(beta * x)),
                                              [dict(beta=2.0)]),
}

FROM = {"snntorch": cv.from_snntorch, "spikingjelly": cv.from_spikingjelly,
        "norse": cv.from_norse, "stork": cv.from_stork}

# Points in units of the surrogate's width 1/sharpness, avoiding the kinks/edges at |u| = 1/2, 1.
_U = np.array([0.013, 0.1, 0.37, 0.49, 0.51, 0.73, 0.99, 1.01, 1.7, 3.1, 6.3])
_U = np.concatenate([-_U[::-1], [0.0], _U])  # 23 points

# PiecewiseLeakyReLU's default c = 0.01 does not map (tested in test_bad_parameters).
_NO_DEFAULT = {("spikingjelly", "PiecewiseLeakyReLU")}
CASES = [(lib, name, p) for (lib, name), (_, ps) in REFERENCE.items()
         for p in ([] if (lib, name) in _NO_DEFAULT else [{}]) + ps]


def _points(s: sg.Surrogate):
    return _U / float(s.sharpness)


def _check(ours, ref):
    peak = np.max(np.abs(ref))
    # rtol 1e-12; atol covers cancellation in *their* formulas (1 - tanh^2, alpha - alpha^2|x|).
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-13 * peak)


def test_reference_covers_every_representable_row():
    rows = {(r.library, r.name) for r in cv.CONVERSION_TABLE if r.representable}
    assert rows == set(REFERENCE)


@pytest.mark.parametrize("lib,name,params", CASES,
                         ids=[f"{l}-{n}-{p}" for l, n, p in CASES])
def test_matches_library_formula(lib, name, params):
    s = FROM[lib](name, **params)
    assert isinstance(s, sg.Surrogate)
    x = _points(s)
    ref_fn = REFERENCE[(lib, name)][0]
    ours = np.asarray(s.derivative(x))
    assert ours.dtype == np.float64
    _check(ours, ref_fn(x, **params))


@pytest.mark.parametrize("lib,name,params", CASES,
                         ids=[f"{l}-{n}-{p}" for l, n, p in CASES])
def test_row_consistent(lib, name, params):
    """The table row's shape matches the returned Surrogate; defaults are the library's."""
    row = cv.lookup(lib, name)
    s = FROM[lib](name, **params)
    assert s.shape == row.shape
    assert set(params) <= set(row.defaults)


def test_reference_formulas_cover_every_shape():
    """The published formulas above pin down every sgntk profile g(u) (test_surrogates checks
    only shape-independent properties: peak, area, autodiff of the spike)."""
    shapes = {FROM[lib](name, **ps[0] if (lib, name) in _NO_DEFAULT else {}).shape
              for (lib, name), (_, ps) in REFERENCE.items()}
    assert shapes == set(sg.SHAPES)


def _integral(fn, width):
    """int_R fn(x) dx of an even fn by scipy.quad: [0, inf) split at the kinks and a ladder of
    widths, the tail mapped to (0, 1] by x = big / t; doubled."""
    pts = [0.0] + [k * width for k in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 1e3, 1e4, 1e5)]
    half = sum(si.quad(fn, a, b, limit=200, epsabs=0, epsrel=1e-12)[0]
               for a, b in zip(pts[:-1], pts[1:]))
    big = pts[-1]
    half += si.quad(lambda t: fn(big / t) * big / t**2, 0.0, 1.0, limit=200, epsabs=0,
                    epsrel=1e-10)[0]
    return 2.0 * half


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("lib,name,params", CASES,
                         ids=[f"{l}-{n}-{p}" for l, n, p in CASES])
def test_peak_and_area_of_library_formula(lib, name, params):
    """The table's dampening and sharpness columns, from the library's own formula alone:
    peak = dS/dx(0) = dampening, area = int dS/dx = dampening / sharpness (erf: 2/sqrt(pi)
    times the peak and 2 times the area, README). scipy.quad to 1e-10, so rtol 1e-9."""
    s = FROM[lib](name, **params)
    ref_fn = REFERENCE[(lib, name)][0]
    gamma, beta = float(s.dampening), float(s.sharpness)
    scale = 2.0 / np.sqrt(np.pi) if s.shape == "erf" else 1.0
    peak = float(np.asarray(ref_fn(np.array([0.0]), **params))[0])
    assert peak == pytest.approx(scale * gamma, rel=1e-13)
    if s.shape == "straight_through":
        return  # constant derivative: no finite area
    area = _integral(lambda x: float(np.asarray(ref_fn(np.array([x]), **params))[0]), 1.0 / beta)
    want_area = (2.0 if s.shape == "erf" else 1.0) * gamma / beta
    assert area == pytest.approx(want_area, rel=1e-9)
    if s.shape == "q_pseudo_spike":
        assert float(s.tail) == params.get("alpha", 2.0)  # SpikingJelly's alpha is the tail q


def test_case_insensitive_names():
    assert cv.from_spikingjelly("atan") == cv.from_spikingjelly("ATan")
    assert cv.from_stork("customspike:sigmoid").shape == "sigmoid"


@pytest.mark.parametrize("fn,lib", [(cv.from_snntorch, "snntorch"),
                                    (cv.from_spikingjelly, "spikingjelly"),
                                    (cv.from_norse, "norse"), (cv.from_stork, "stork")])
def test_unknown_name_lists_supported(fn, lib):
    with pytest.raises(ValueError) as e:
        fn("no_such_surrogate")
    msg = str(e.value)
    for r in cv.CONVERSION_TABLE:
        if r.library == lib and r.representable:
            assert r.name in msg


@pytest.mark.parametrize("row", [r for r in cv.CONVERSION_TABLE if not r.representable],
                         ids=lambda r: f"{r.library}-{r.name}")
def test_unrepresentable_raise_with_reason(row):
    with pytest.raises(ValueError, match="no sgntk Surrogate"):
        cv.convert(row.library, row.name)


def test_bad_parameters():
    with pytest.raises(ValueError, match="unknown parameter"):
        cv.from_snntorch("atan", slope=3.0)
    with pytest.raises(ValueError, match="c=0"):
        cv.from_spikingjelly("PiecewiseLeakyReLU")  # default c = 0.01 has a floor
    with pytest.raises(ValueError, match="tail"):
        cv.from_spikingjelly("QPseudoSpike", alpha=1.0)
    with pytest.raises(ValueError, match="sharpness"):
        cv.from_snntorch("fast_sigmoid", slope=-1.0)
    with pytest.raises(ValueError, match="unknown library"):
        cv.convert("brian2", "atan")


def test_table_and_markdown():
    assert len({(r.library, r.name) for r in cv.CONVERSION_TABLE}) == len(cv.CONVERSION_TABLE)
    for r in cv.CONVERSION_TABLE:
        assert r.library in cv.LIBRARIES
        assert r.shape is None or r.shape in sg.SHAPES
        assert r.spike and r.formula
        if not r.representable:
            assert r.note  # the reason
    md = cv.conversion_table_markdown()
    lines = md.splitlines()
    assert len(lines) == 2 + len(cv.CONVERSION_TABLE)
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    ncols = lines[0].count(" | ") + 1
    for line in lines[2:]:  # escaped pipes inside cells do not add columns
        assert line.replace("\\|", "").count(" | ") + 1 == ncols
    only = cv.conversion_table_markdown("norse", include_unrepresentable=False).splitlines()
    assert len(only) == 2 + sum(r.library == "norse" and r.representable
                                for r in cv.CONVERSION_TABLE)


# ------------------------------------------------------------------------------------------
# Against the libraries' own autograd: `pip install -e ".[interop]"` and
# `python -m pytest -m interop` (deselected by default; when selected, a missing library is an
# ImportError, i.e. a failure, never a skip).
# ------------------------------------------------------------------------------------------
def _torch_grad(fn, x):
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(xt).sum().backward()
    return xt.grad.detach().numpy()


# Parameters exactly representable in float32 (snnTorch multiplies by its float32 output).
_SNNTORCH_LIVE = [("fast_sigmoid", {}), ("fast_sigmoid", dict(slope=5.0)), ("atan", {}),
                  ("atan", dict(alpha=7.5)), ("sigmoid", {}), ("sigmoid", dict(slope=3.0)),
                  ("straight_through_estimator", {})]


@pytest.mark.interop
@pytest.mark.parametrize("name,params", _SNNTORCH_LIVE)
def test_snntorch_autograd(name, params):
    from snntorch import surrogate

    s = cv.from_snntorch(name, **params)
    x = _points(s)
    _check(np.asarray(s.derivative(x)), _torch_grad(getattr(surrogate, name)(**params), x))


_SJ_LIVE = [(n, p) for (lib, n), (_, ps) in REFERENCE.items() if lib == "spikingjelly"
            for p in [{}] + ps if n != "PiecewiseLeakyReLU" or p]


@pytest.mark.interop
@pytest.mark.parametrize("name,params", _SJ_LIVE)
def test_spikingjelly_autograd(name, params):
    from spikingjelly.activation_based import surrogate

    s = cv.from_spikingjelly(name, **params)
    x = _points(s)
    module = getattr(surrogate, name)(**params)
    _check(np.asarray(s.derivative(x)), _torch_grad(module, x))


_NORSE_LIVE = [("super", {}), ("super", dict(alpha=5.0)), ("triangle", {}),
               ("triangle", dict(alpha=0.3)), ("tanh", {}), ("tanh", dict(alpha=2.0)),
               ("heavi_erfc", {}), ("heavi_erfc", dict(alpha=1.0)), ("logistic", dict(k=1.5))]


@pytest.mark.interop
@pytest.mark.parametrize("name,params", _NORSE_LIVE)
def test_norse_autograd(name, params):
    from importlib.metadata import version

    import torch
    from norse.torch.functional import threshold as th

    if name == "super":  # norse 1.1 dropped alpha from SuperSpike.backward
        params = dict(params, version=".".join(version("norse").split(".")[:2]))
    s = cv.from_norse(name, **params)
    x = _points(s)
    if name == "logistic":
        fn = lambda t: th.logistic_fn(t, params["k"])  # noqa: E731
    else:
        alpha = params.get("alpha", 100.0)
        fn = lambda t: th.threshold(t, name, torch.as_tensor(alpha, dtype=torch.float64))  # noqa: E731
    ours, theirs = np.asarray(s.derivative(x)), _torch_grad(fn, x)
    if name == "heavi_erfc":
        # HeaviErfc divides by torch.as_tensor(np.pi).sqrt(), a float32: relative error
        # |sqrt(pi)_f32 / sqrt(pi) - 1| = 3.0e-8 (float32 spacing 2^-23 = 1.2e-7 at sqrt(pi)).
        np.testing.assert_allclose(ours, theirs, rtol=6e-8)
    else:
        _check(ours, theirs)
