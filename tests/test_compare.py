"""The comparison engine: NaN never passes, messages name index, expected, got and tolerance."""

import math

import numpy as np
import pytest
import torch

from grader.compare import Tolerance, compare
from grader.diagnose import describe_difference


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def test_equal_tensors_pass():
    assert compare(t([[1.0, 2.0]]), t([[1.0, 2.0]]), Tolerance()).ok


def test_mismatch_message_names_index_values_and_tolerance():
    e = t([[1.0, 2.0], [3.0, 4.0]])
    g = e.clone()
    g[0, 1] = 2.1
    r = compare(e, g, Tolerance(), "dists")
    assert not r.ok
    assert "dists: mismatched elements: 1 / 4 (25.0%)" in r.message
    assert "index (0, 1): expected 2, got 2.1" in r.message
    assert "allowed" in r.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_never_passes_even_with_huge_tolerance(bad):
    e = t([1.0, 2.0])
    g = t([1.0, bad])
    r = compare(e, g, Tolerance(rtol=1e9, atol=1e9))
    assert not r.ok and "not finite" in r.message
    r = compare(e, g, Tolerance(mode="rel_error", bound=1e9))
    assert not r.ok


def test_nan_scalar_fails():
    assert not compare(t(1.0), float("nan"), Tolerance(rtol=1.0, atol=1.0)).ok


def test_expected_nan_passes_only_when_spec_says_so():
    e = t([float("nan"), 1.0])
    assert compare(e, t([float("nan"), 1.0]), Tolerance(expect_nan=True)).ok
    assert not compare(e, t([0.0, 1.0]), Tolerance(expect_nan=True)).ok


def test_shape_mismatch_names_both_shapes_and_suggests_transpose():
    r = compare(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64), Tolerance())
    assert not r.ok
    assert "expected (3, 2), got (2, 3)" in r.message and "transposed" in r.message


def test_dtype_kind_policy_rejects_float_labels():
    r = compare(t([1, 0], torch.int64), t([1.0, 0.0], torch.float32), Tolerance(mode="exact"))
    assert not r.ok and "dtype mismatch" in r.message


def test_dtype_exact_policy_rejects_float32_for_float64():
    r = compare(t([1.0]), t([1.0], torch.float32), Tolerance(dtype="exact"))
    assert not r.ok and "expected float64, got float32" in r.message


def test_python_float_for_tensor_scalar_passes_with_a_note():
    r = compare(t(1.5), 1.5, Tolerance())
    assert r.ok and any("loss.item()" in n for n in r.notes)


def test_non_tensor_for_tensor_fails():
    r = compare(t([1.0, 2.0]), [1.0, 2.0], Tolerance())
    assert not r.ok and "return a torch tensor" in r.message


def test_containers_recurse_and_name_the_item():
    r = compare({1: [0.5, 0.6]}, {1: [0.5, 0.7]}, Tolerance())
    assert not r.ok and r.message.startswith("output[1][1]")
    r = compare({1: [0.5]}, {2: [0.5]}, Tolerance())
    assert not r.ok and "missing keys [1]" in r.message


def test_rel_error_mode_matches_course_formula():
    e = t([1.0, 2.0])
    g = e * (1 + 1e-7)
    assert compare(e, g, Tolerance(mode="rel_error", bound=1e-6)).ok
    assert not compare(e, g * 1.01, Tolerance(mode="rel_error", bound=1e-6)).ok


def test_exact_float_equality_is_not_required_by_default():
    e = t([0.1 + 0.2])
    assert compare(e, t([0.3]), Tolerance()).ok


@pytest.mark.parametrize(
    "factor, words", [(2.0, "2 times"), (-1.0, "opposite sign"), (0.0, "all zeros")]
)
def test_diagnosis_names_constant_factor_sign_and_zero(factor, words):
    e = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert words in describe_difference(e, e * factor)


def test_diagnosis_names_transpose_and_offset():
    e = np.arange(6.0).reshape(2, 3)
    assert "transpose" in describe_difference(e, e.T.copy())
    assert "offset" in describe_difference(e, e + 3.0)
    assert describe_difference(e, e + np.random.default_rng(0).normal(size=e.shape)) is None


def test_scalar_ratio_hint_only_for_classic_factors():
    assert describe_difference(np.array(1.5), np.array(3.0)) is not None
    assert "100" in describe_difference(np.array(0.42), np.array(42.0))
    assert describe_difference(np.array(1.5), np.array(2.055)) is None


# --------------------------------------------------------------------------- dtype-sized tolerance

def test_float32_result_computed_more_accurately_passes():
    """A float32 reference carries its own rounding: the float64 result cast to float32 differs
    from it by ~10 ulps (1.25e-6 relative) here and must not fail a float64-sized rtol."""
    e = t([3.0, -0.75, 12.5], torch.float32)
    g = (e.double() * (1 + 1.25e-6)).float()
    assert (g != e).all()
    r = compare(e, g, Tolerance(rtol=1e-7, atol=1e-9, dtype="exact"))
    assert r.ok, r.message
    # the same relative difference in float64 still fails: float64 is never loosened
    r64 = compare(e.double(), e.double() * (1 + 1.25e-6), Tolerance(rtol=1e-7, atol=1e-9))
    assert not r64.ok and "16" not in r64.message


def test_float32_distances_computed_in_float64_pass_the_knn_tolerance():
    """The knn spec's distance tolerance (rtol 1e-7) vs a float32 two-loop reference."""
    torch.manual_seed(3)
    a, b = torch.randn(9, 6), torch.randn(4, 6)
    ref = torch.zeros(9, 4)
    for i in range(9):
        for j in range(4):
            ref[i, j] = torch.sqrt(torch.sum((a[i] - b[j]) ** 2))
    got = ((a.double()[:, None] - b.double()[None]) ** 2).sum(-1).sqrt().float()
    assert not torch.equal(ref, got)
    assert compare(ref, got, Tolerance(rtol=1e-7, atol=1e-8, dtype="exact")).ok


def test_float32_floor_still_catches_real_errors_and_says_why():
    e = t([1.0, 2.0, 4.0], torch.float32)
    r = compare(e, e * (1 + 1e-5), Tolerance(rtol=1e-7, atol=1e-9))
    assert not r.ok
    assert "float32 ulps" in r.message and "1.90735e-06" in r.message
    # near-zero entries: the atol floor scales with the array's magnitude, not the entry
    e = t([1000.0, 0.0], torch.float32)
    assert compare(e, t([1000.0, 1e-4], torch.float32), Tolerance(rtol=1e-7, atol=1e-9)).ok
    assert not compare(e, t([1000.0, 1e-2], torch.float32), Tolerance(rtol=1e-7, atol=1e-9)).ok


def test_spec_tolerance_wider_than_the_floor_still_applies():
    e = t([1.0], torch.float32)
    assert compare(e, e * 1.001, Tolerance(rtol=1e-2, atol=1e-3)).ok
    r = compare(e, e * 1.1, Tolerance(rtol=1e-2, atol=1e-3))
    assert not r.ok and "ulps" not in r.message  # the spec's own tolerance, not raised


def test_float64_reference_with_float32_student_and_rel_error_mode():
    e = t([1.0, 2.0, 3.0])
    g = (e * (1 + 1e-6)).float()
    assert compare(e, g, Tolerance(rtol=1e-7, atol=1e-9, dtype="kind")).ok  # either side float32
    assert not compare(e, g.double(), Tolerance(rtol=1e-7, atol=1e-9)).ok
    assert compare(e.float(), g, Tolerance(mode="rel_error", bound=1e-7)).ok
    assert not compare(e.double(), g.double(), Tolerance(mode="rel_error", bound=1e-7)).ok


def test_half_precision_sized_by_its_own_eps():
    e = t([1.0, 2.0], torch.bfloat16)
    g = t([1.0, 2.015625], torch.bfloat16)  # one bfloat16 ulp at 2
    assert compare(e, g, Tolerance(rtol=1e-7, atol=1e-9)).ok
    assert not compare(e, t([1.0, 2.5], torch.bfloat16), Tolerance(rtol=1e-7, atol=1e-9)).ok
