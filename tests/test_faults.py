"""faults.py: a teacher made confidently wrong or uncertain on the first n classes, checked
against a naive loop over clips and classes, and the properties the asymmetry map relies on."""
import pytest
import torch

from datw import confidence
from faults import FLATTEN, apply_fault, rotate_classes


def naive_fault(z, kind, n):
    """The faults from their definitions, one clip and one class at a time (Python floats)."""
    out = []
    for row in z.tolist():
        if kind == "wrong":  # class c in S reads class c + 1 mod n; the rest unchanged
            out.append([row[(c + 1) % n] if c < n else row[c] for c in range(len(row))])
        elif kind == "uncertain":  # flattened where the teacher's own top class is in S
            top = max(range(len(row)), key=lambda c: row[c])
            out.append([x / FLATTEN for x in row] if top < n else row)
        else:
            out.append(row)
    return torch.tensor(out)


@pytest.mark.parametrize("kind", ["none", "wrong", "uncertain"])
@pytest.mark.parametrize("n", [2, 3, 9])
def test_faults_equal_a_naive_loop(kind, n):
    z = torch.randn(32, 9, generator=torch.Generator().manual_seed(n)) * 3
    assert torch.allclose(apply_fault(z, kind, n), naive_fault(z, kind, n), atol=1e-6)


def test_wrong_changes_the_answer_on_the_first_n_classes_only_and_keeps_the_confidence():
    z = 6.0 * torch.eye(9)  # clip b is of class b, the teacher sure and right on each
    zf = apply_fault(z, "wrong", 4)
    assert zf.argmax(-1).tolist() == [3, 0, 1, 2, 4, 5, 6, 7, 8]  # c -> c - 1 mod 4 inside S
    assert torch.allclose(confidence(zf), confidence(z))  # an entropy rule cannot see it


def test_uncertain_keeps_the_answer_and_removes_most_of_the_confidence_on_the_first_n_classes():
    z = 6.0 * torch.eye(9)
    zf = apply_fault(z, "uncertain", 3)
    assert zf.argmax(-1).tolist() == list(range(9))
    c, c0 = confidence(zf), confidence(z)
    assert (c[:3] < 0.05).all() and torch.equal(c[3:], c0[3:])


def test_faults_leave_the_teachers_output_untouched_and_refuse_bad_sizes():
    z = torch.randn(4, 5)
    z0 = z.clone()
    apply_fault(z, "wrong", 3), apply_fault(z, "uncertain", 3)
    assert torch.equal(z, z0)
    with pytest.raises(ValueError, match="2 <= n <= C"):
        rotate_classes(1, 5)
    with pytest.raises(ValueError, match="unknown fault"):
        apply_fault(z, "noisy", 2)
