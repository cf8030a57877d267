"""The spec's losses on hand-computed values."""
import pytest
import torch

from scam_train.losses import feature_matching, hinge_d, hinge_g, person_weights, reconstruction


def out(*logits, feats=()):
    """A discriminator output: one scale per logits tensor, with optional feature maps."""
    return [[*feats, torch.tensor(v, dtype=torch.float32)] for v in logits]


def test_hinge_d_by_hand():
    real = out([2.0, 0.5], [-1.0, 1.0])    # relu(1-x): [0, .5] -> .25 ; [2, 0] -> 1
    fake = out([-2.0, 0.0], [0.5, -0.5])   # relu(1+x): [0, 1] -> .5 ; [1.5, .5] -> 1
    assert hinge_d(real, fake).item() == pytest.approx(((0.25 + 0.5) + (1 + 1)) / 2)


def test_hinge_g_by_hand():
    assert hinge_g(out([1.0, 3.0], [-2.0, 0.0])).item() == pytest.approx((-2.0 + 1.0) / 2)


def test_l1_and_mse_by_hand():
    fake, real = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    assert reconstruction(fake, real).item() == pytest.approx(1.0)               # (1 + 2 + 0) / 3
    assert reconstruction(fake, real, kind="mse").item() == pytest.approx(5 / 3)  # (1 + 4 + 0) / 3


def test_person_weighted_reconstruction_by_hand():
    ids = torch.tensor([[[0, 2]]])                        # one background pixel, one person pixel
    fake, real = torch.zeros(1, 3, 1, 2), torch.tensor([[[[1.0, 0.5]]] * 3]).reshape(1, 3, 1, 2)
    # errors 1 (background) and 0.5 (person); weights 1 and 4 -> (1 + 4 * 0.5) / (1 + 4)
    assert reconstruction(fake, real, person_weights(ids, 4.0)).item() == pytest.approx(3.0 / 5.0)
    assert person_weights(ids, 1.0) is None
    assert reconstruction(fake, real, person_weights(ids, 1.0)).item() == pytest.approx(0.75)
    # squared: (1 + 4 * 0.25) / (1 + 4)
    assert reconstruction(fake, real, person_weights(ids, 4.0), "mse").item() == pytest.approx(2.0 / 5.0)


def test_feature_matching_by_hand_and_real_side_detached():
    r1, r2 = torch.zeros(2), torch.ones(2, requires_grad=True)
    f1, f2 = torch.tensor([1.0, 3.0], requires_grad=True), torch.tensor([1.0, 1.0])
    real = [[r1, r2, torch.zeros(1)]]
    fake = [[f1, f2, torch.zeros(1)]]
    loss = feature_matching(real, fake)      # mean(|[1,3]-0|)=2, mean(|[1,1]-1|)=0 -> 1
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert r2.grad is None and f1.grad is not None
    two_scales = feature_matching(real * 2, [[f1, f2 + 1, torch.zeros(1)], [f1, f2, torch.zeros(1)]])
    assert two_scales.item() == pytest.approx(((2 + 1) / 2 + 1) / 2)
